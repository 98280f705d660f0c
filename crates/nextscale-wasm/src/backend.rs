//! Backend choice in the browser: WebGPU through burn's webgpu device, or the flex CPU
//! backend inside wasm, with a report of what was picked and why.
//!
//! The threaded build (feature `threads`, without `webgpu`) is CPU-only: wgpu's web types
//! are not `Send` under `+atomics`, so WebGPU lives in the single-threaded build.

#[cfg(feature = "webgpu")]
use std::cell::RefCell;

use burn::tensor::Device;
#[cfg(feature = "webgpu")]
use burn::tensor::wgpu::WgpuBackend;
#[cfg(feature = "webgpu")]
use js_sys::{Function, Promise, Reflect};
use serde::Serialize;
#[cfg(feature = "webgpu")]
use wasm_bindgen::{JsCast, JsValue};
#[cfg(feature = "webgpu")]
use wasm_bindgen_futures::JsFuture;

use crate::error::BindingError;

/// What the caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendRequest {
    /// WebGPU when an adapter and a device can be had, else the CPU.
    Auto,
    /// WebGPU or an `E_WEBGPU_UNAVAILABLE` error.
    WebGpu,
    /// The flex CPU backend in wasm.
    Cpu,
}

impl BackendRequest {
    /// Parses `auto`, `webgpu` or `cpu`.
    pub fn parse(name: &str) -> Result<Self, BindingError> {
        match name {
            "auto" => Ok(Self::Auto),
            "webgpu" => Ok(Self::WebGpu),
            "cpu" => Ok(Self::Cpu),
            other => Err(BindingError::bad_request(format!(
                "backend `{other}` must be one of auto, webgpu, cpu"
            ))),
        }
    }
}

/// The WebGPU adapter as the browser describes it (`GPUAdapter.info`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterInfo {
    /// Vendor, e.g. `google`.
    pub vendor: String,
    /// Architecture, e.g. `swiftshader`.
    pub architecture: String,
    /// Device name, often empty for privacy.
    pub device: String,
    /// Free-form description.
    pub description: String,
    /// Whether the browser marks it as a software fallback adapter.
    pub is_fallback_adapter: bool,
}

impl AdapterInfo {
    /// A short human name: description, else vendor and architecture.
    pub fn name(&self) -> String {
        if !self.description.is_empty() {
            return self.description.clone();
        }
        let name = format!("{} {}", self.vendor, self.architecture);
        match name.trim() {
            "" => "unknown adapter".into(),
            n => n.into(),
        }
    }
}

/// Which backend runs the model and why.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendReport {
    /// `webgpu` or `cpu`.
    pub backend: &'static str,
    /// Why this one.
    pub reason: String,
    /// The WebGPU adapter, when WebGPU runs the model.
    pub adapter: Option<AdapterInfo>,
}

#[cfg(feature = "webgpu")]
thread_local! {
    /// burn's webgpu runtime can be initialised once per thread; later engines reuse it.
    static WEBGPU: RefCell<Option<(Device, AdapterInfo)>> = const { RefCell::new(None) };
}

/// Picks the device for `request`. `auto` falls back to the CPU with the reason, and also
/// passes over a software fallback adapter (such as SwiftShader, a CPU rasteriser: about
/// 85× slower than the wasm CPU backend on the bundled model); `webgpu` takes any adapter
/// or fails with `E_WEBGPU_UNAVAILABLE`.
pub async fn select(request: BackendRequest) -> Result<(Device, BackendReport), BindingError> {
    if request == BackendRequest::Cpu {
        return Ok(cpu("the CPU backend was requested".into()));
    }
    gpu_or_cpu(request).await
}

/// The flex CPU device with the reason it was picked.
fn cpu(reason: String) -> (Device, BackendReport) {
    (
        Device::flex(),
        BackendReport {
            backend: "cpu",
            reason,
            adapter: None,
        },
    )
}

/// `auto` or `webgpu` in the build with WebGPU.
#[cfg(feature = "webgpu")]
async fn gpu_or_cpu(request: BackendRequest) -> Result<(Device, BackendReport), BindingError> {
    if request == BackendRequest::Auto {
        let cached = WEBGPU.with(|w| w.borrow().as_ref().map(|(_, a)| a.clone()));
        let adapter = match cached {
            Some(adapter) => Ok(adapter),
            None => probe_adapter().await,
        };
        match adapter {
            Err(why) => return Ok(cpu(why)),
            Ok(a) if a.is_fallback_adapter => {
                return Ok(cpu(format!(
                    "the only WebGPU adapter ({}) is a software fallback, slower than the CPU backend; ask for webgpu to use it anyway",
                    a.name()
                )));
            }
            Ok(_) => {}
        }
    }
    match webgpu().await {
        Ok((device, adapter)) => {
            let reason = format!("WebGPU adapter: {}", adapter.name());
            Ok((
                device,
                BackendReport {
                    backend: "webgpu",
                    reason,
                    adapter: Some(adapter),
                },
            ))
        }
        Err(why) if request == BackendRequest::Auto => Ok(cpu(why)),
        Err(why) => Err(BindingError::WebGpuUnavailable(why)),
    }
}

/// `auto` or `webgpu` in the threaded CPU-only build.
#[cfg(not(feature = "webgpu"))]
async fn gpu_or_cpu(request: BackendRequest) -> Result<(Device, BackendReport), BindingError> {
    match request {
        BackendRequest::WebGpu => Err(BindingError::WebGpuUnavailable(
            "this is the threaded CPU build of the engine; WebGPU runs in the single-threaded one"
                .into(),
        )),
        _ => Ok(cpu(
            "the threaded CPU build of the engine has no WebGPU".into()
        )),
    }
}

/// The shared WebGPU device, initialised on first use. `Err` says why there is none.
#[cfg(feature = "webgpu")]
async fn webgpu() -> Result<(Device, AdapterInfo), String> {
    if let Some(ready) = WEBGPU.with(|w| w.borrow().clone()) {
        return Ok(ready);
    }
    // cubecl panics on some paths without an adapter, so ask the browser first.
    let adapter = probe_adapter().await?;
    let device = Device::wgpu_options()
        .graphics_api(WgpuBackend::WebGpu)
        .init_async()
        .await
        .map_err(|e| format!("WebGPU device creation failed: {e}"))?;
    WEBGPU.with(|w| *w.borrow_mut() = Some((device.clone(), adapter.clone())));
    Ok((device, adapter))
}

/// Asks `navigator.gpu.requestAdapter()` for an adapter and reads its info.
#[cfg(feature = "webgpu")]
async fn probe_adapter() -> Result<AdapterInfo, String> {
    let get = |target: &JsValue, key: &str| Reflect::get(target, &key.into()).ok();
    let gpu = get(&js_sys::global(), "navigator")
        .and_then(|nav| get(&nav, "gpu"))
        .filter(|gpu| !gpu.is_undefined() && !gpu.is_null())
        .ok_or("WebGPU is not available (no navigator.gpu)")?;
    let request: Function = get(&gpu, "requestAdapter")
        .and_then(|f| f.dyn_into().ok())
        .ok_or("navigator.gpu.requestAdapter is not a function")?;
    let promise: Promise = request
        .call0(&gpu)
        .ok()
        .and_then(|p| p.dyn_into().ok())
        .ok_or("navigator.gpu.requestAdapter() failed")?;
    let adapter = JsFuture::from(promise)
        .await
        .map_err(|e| format!("navigator.gpu.requestAdapter() failed: {e:?}"))?;
    if adapter.is_null() || adapter.is_undefined() {
        return Err("no WebGPU adapter (requestAdapter() returned null)".into());
    }
    let info = get(&adapter, "info").unwrap_or(JsValue::UNDEFINED);
    let text = |key: &str| {
        get(&info, key)
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    let flag = |target: &JsValue, key: &str| get(target, key).and_then(|v| v.as_bool());
    Ok(AdapterInfo {
        vendor: text("vendor"),
        architecture: text("architecture"),
        device: text("device"),
        description: text("description"),
        is_fallback_adapter: flag(&info, "isFallbackAdapter")
            .or_else(|| flag(&adapter, "isFallbackAdapter"))
            .unwrap_or(false),
    })
}
