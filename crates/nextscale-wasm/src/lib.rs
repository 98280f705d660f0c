//! wasm-bindgen bindings of nextscale. Thin by design: each export deserialises its input,
//! calls the core and serialises the result; every failure becomes a JS `Error` with a
//! stable `code` (`E_MODEL_FORMAT`, `E_BAD_REQUEST`, `E_ABORTED`, `E_BACKEND`,
//! `E_WEBGPU_UNAVAILABLE`).
//!
//! The npm package `nextscale` (in `pkg/`) hosts [`Engine`] in a module Web Worker.

pub mod backend;
pub mod bytes;
pub mod edit;
pub mod error;
#[cfg(feature = "threads")]
pub mod pool;
pub mod request;

#[cfg(all(
    feature = "threads",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
compile_error!(
    "the `threads` build needs `-C target-feature=+atomics,+bulk-memory` (pkg/scripts/build.mjs)"
);

use std::rc::Rc;

use js_sys::{Function, Promise};
use nextscale::weights::WeightFile;
use nextscale::{Error, Event, GenerateRequest, Generation, Model, ModelConfig};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

use crate::backend::{BackendReport, BackendRequest};
use crate::bytes::ModelBytes;
use crate::edit::EditOptions;
use crate::error::BindingError;
use crate::request::{GenerateOptions, PassFrame, frame};

/// Routes Rust panics (which should not happen) to `console.error` with a message.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// Version of the nextscale core.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Bytes of wasm memory the engine holds now (it grows and never shrinks).
#[wasm_bindgen(js_name = wasmMemoryBytes)]
pub fn wasm_memory_bytes() -> f64 {
    // An ArrayBuffer, or a SharedArrayBuffer in the threaded build: read it by name.
    wasm_bindgen::memory()
        .dyn_into::<js_sys::WebAssembly::Memory>()
        .ok()
        .and_then(|m| js_sys::Reflect::get(&m.buffer(), &"byteLength".into()).ok())
        .and_then(|n| n.as_f64())
        .unwrap_or_default()
}

/// Validates a model file's header and config and returns the config as JSON, without
/// loading the weights.
#[wasm_bindgen(js_name = inspectModel)]
pub fn inspect_model(bytes: &[u8]) -> Result<String, JsValue> {
    Ok(model_config(bytes)?.to_json())
}

fn model_config(bytes: &[u8]) -> Result<ModelConfig, BindingError> {
    let file = WeightFile::parse(bytes)?;
    let json = file
        .metadata(nextscale::config::CONFIG_METADATA_KEY)
        .ok_or_else(|| Error::Config("no config in the model file metadata".into()))?;
    Ok(ModelConfig::from_json(json)?)
}

/// What `engine.info` reports.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EngineInfo<'a> {
    #[serde(flatten)]
    backend: &'a BackendReport,
    /// Threads the CPU backend runs on (1 in the single-threaded build and on WebGPU).
    threads: usize,
    config: serde_json::Value,
    /// `var` or `hmar`.
    family: &'static str,
    /// HMAR: the default mask schedule (`null` for VAR).
    mask_schedule: Option<Vec<Vec<usize>>>,
    class_names: Vec<String>,
    scales: usize,
    image_size: usize,
    modes: Vec<&'static str>,
    sampling: SamplingInfo,
}

/// The sampling settings `generate` uses when the options leave them out: the model's
/// recommendation, else the official defaults.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SamplingInfo {
    cfg: f64,
    top_k: usize,
    top_p: f64,
    /// Whether the model file recommends them (else they are the official defaults).
    from_model: bool,
}

/// A model loaded on one backend, ready to generate.
#[wasm_bindgen]
pub struct Engine {
    model: Rc<Model>,
    report: BackendReport,
}

#[wasm_bindgen]
impl Engine {
    /// Loads a model file (safetensors with the config in its metadata, streamed into
    /// `bytes`) on `backend`: `auto` (WebGPU, else CPU), `webgpu` or `cpu`. The file's bytes
    /// are freed once its weights are on the device.
    pub async fn create(bytes: ModelBytes, backend: String) -> Result<Engine, JsValue> {
        let request = BackendRequest::parse(&backend)?;
        let bytes = bytes.into_vec()?;
        // Check the file before touching the GPU, so a bad file never costs a device, and
        // before allocating its weights, so a file too large for wasm32 is an error.
        model_config(&bytes)?;
        let (device, report) = backend::select(request).await?;
        bytes::check_fits(&bytes, report.backend == "cpu")?;
        let model = Model::from_safetensors(&bytes, &device).map_err(BindingError::from)?;
        drop(bytes);
        Ok(Engine {
            model: Rc::new(model),
            report,
        })
    }

    /// Backend, reason, adapter, model config, family (`var` or `hmar`) and HMAR mask
    /// schedule, class names, number of scales, image size, the modes this model offers and
    /// its default sampling.
    #[wasm_bindgen(getter)]
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let config = &self.model.config;
        let config_json: serde_json::Value = serde_json::from_str(&config.to_json())
            .map_err(|e| BindingError::from(Error::Config(e.to_string())))?;
        let info = EngineInfo {
            backend: &self.report,
            threads: threads(&self.report),
            config: config_json,
            family: self.model.family(),
            mask_schedule: config.hmar.as_ref().map(|h| h.mask_schedule.clone()),
            class_names: (0..config.num_classes)
                .map(|c| config.class_name(c))
                .collect(),
            scales: config.patch_nums.len(),
            image_size: config.image_size,
            modes: request::modes(&self.model),
            sampling: {
                let s = config.default_sampling();
                SamplingInfo {
                    cfg: s.cfg,
                    top_k: s.top_k,
                    top_p: s.top_p,
                    from_model: config.sampling.is_some(),
                }
            },
        };
        info.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .map_err(|e| BindingError::from(Error::Backend(e.to_string())).into())
    }

    /// Generates one image. `on_frame(frame)` is called after every scale (every student
    /// pass in the `dd1`/`dd2` modes; with the preview the options ask for, or
    /// `pixels: null`) and once with the final image
    /// (`final: true`). It may return a promise; a result of `false` aborts the generation
    /// with `E_ABORTED`. The returned promise settles when the generation ends.
    pub fn generate(&self, options: JsValue, on_frame: Function) -> Promise {
        let model = Rc::clone(&self.model);
        future_to_promise(async move {
            let request = GenerateOptions::from_js(options).and_then(|o| o.to_request(&model));
            let result = match request {
                Ok(request) => run(&model, request, &on_frame).await,
                Err(e) => Err(e),
            };
            result.map(|()| JsValue::UNDEFINED).map_err(JsValue::from)
        })
    }

    /// Edits an image with no training (zero-shot in-painting, out-painting or class
    /// editing): its tokens where `mask` keeps them, the model's elsewhere, scale by scale,
    /// with frames as `generate` streams them. The options are `generate`'s (`mode` `var`
    /// only) plus `image` (RGBA bytes at the model's resolution) and `mask` (`{ box:
    /// [y0, x0, y1, x1], mode: 'inpaint' | 'outpaint' }` or `{ pixels }`, one byte per pixel,
    /// 128 and above generated). The model file needs the VQ-VAE encoder.
    pub fn edit(&self, options: JsValue, on_frame: Function) -> Promise {
        let model = Rc::clone(&self.model);
        future_to_promise(async move {
            let result = async {
                let options = EditOptions::from_js(options)?;
                let mut request = options.generate.to_request(&model)?;
                request.edit = Some(options.to_edit(&model).await?);
                request.validate(&model)?;
                run(&model, request, &on_frame).await
            };
            result
                .await
                .map(|()| JsValue::UNDEFINED)
                .map_err(JsValue::from)
        })
    }
}

/// Threads of the CPU backend: rayon's pool in the threaded build, else one.
fn threads(report: &BackendReport) -> usize {
    if report.backend != "cpu" {
        return 1;
    }
    #[cfg(feature = "threads")]
    return rayon::current_num_threads();
    #[cfg(not(feature = "threads"))]
    1
}

/// Runs a request, handing every frame to `on_frame`.
async fn run(
    model: &Model,
    request: GenerateRequest,
    on_frame: &Function,
) -> Result<(), BindingError> {
    let mut generation = Generation::new(model, request)?;
    let scales = generation.num_scales();
    let mut last_tokens = None;
    while let Some(event) = generation.next_event().await? {
        let frame = match event {
            // The final image stands for the last scale, and carries its tokens.
            Event::Scale { index, tokens, .. } if index + 1 == scales => {
                last_tokens = tokens.into_iter().next();
                continue;
            }
            Event::Scale {
                index,
                preview,
                tokens,
                elapsed_ms,
                ..
            } => frame(
                index + 1,
                scales,
                preview.as_ref().and_then(|p| p.first()),
                tokens.first().map(Vec::as_slice),
                elapsed_ms,
                None,
                None,
            ),
            Event::Pass {
                scale,
                pass,
                passes,
                tokens,
                masked,
                preview,
                elapsed_ms,
            } => frame(
                scale + 1,
                scales,
                preview.as_ref().and_then(|p| p.first()),
                tokens.first().map(Vec::as_slice),
                elapsed_ms,
                None,
                masked.first().map(|m| PassFrame {
                    index: pass,
                    of: passes,
                    masked: m,
                }),
            ),
            Event::Done {
                images, timings, ..
            } => frame(
                scales,
                scales,
                images.first(),
                last_tokens.as_deref(),
                timings.total_ms,
                Some(&timings),
                None,
            ),
        };
        if !deliver(on_frame, &frame).await? {
            return Err(Error::Aborted.into());
        }
    }
    Ok(())
}

/// Calls `on_frame` and awaits its promise, if any; `false` means stop.
async fn deliver(on_frame: &Function, frame: &JsValue) -> Result<bool, BindingError> {
    let mut answer = on_frame
        .call1(&JsValue::NULL, frame)
        .map_err(|e| callback_error(&e))?;
    if let Some(promise) = answer.dyn_ref::<Promise>() {
        answer = JsFuture::from(promise.clone())
            .await
            .map_err(|e| callback_error(&e))?;
    }
    Ok(answer.as_bool() != Some(false))
}

fn callback_error(e: &JsValue) -> BindingError {
    BindingError::Core(Error::Backend(format!("the frame callback failed: {e:?}")))
}
