//! wasm-bindgen bindings of nextscale. Thin by design: each export deserialises its input,
//! calls the core and serialises the result; every failure becomes a JS `Error` with a
//! stable `code` (`E_MODEL_FORMAT`, `E_BAD_REQUEST`, `E_ABORTED`, `E_BACKEND`,
//! `E_WEBGPU_UNAVAILABLE`).
//!
//! The npm package `nextscale` (in `pkg/`) hosts [`Engine`] in a module Web Worker.

pub mod backend;
pub mod error;
pub mod request;

use std::rc::Rc;

use js_sys::{Function, Promise, Uint8Array};
use nextscale::weights::WeightFile;
use nextscale::{Error, Event, Generation, Model, ModelConfig};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, future_to_promise};

use crate::backend::{BackendReport, BackendRequest};
use crate::error::BindingError;
use crate::request::{GenerateOptions, frame};

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
    config: serde_json::Value,
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
    /// Loads a model file (safetensors with the config in its metadata) on `backend`:
    /// `auto` (WebGPU, else CPU), `webgpu` or `cpu`.
    pub async fn create(bytes: Uint8Array, backend: String) -> Result<Engine, JsValue> {
        let request = BackendRequest::parse(&backend)?;
        let bytes = bytes.to_vec();
        // Check the file before touching the GPU, so a bad file never costs a device.
        model_config(&bytes)?;
        let (device, report) = backend::select(request).await?;
        let model = Model::from_safetensors(&bytes, &device).map_err(BindingError::from)?;
        Ok(Engine {
            model: Rc::new(model),
            report,
        })
    }

    /// Backend, reason, adapter, model config, class names, number of scales, image size,
    /// the modes this model offers and its default sampling.
    #[wasm_bindgen(getter)]
    pub fn info(&self) -> Result<JsValue, JsValue> {
        let config = &self.model.config;
        let config_json: serde_json::Value = serde_json::from_str(&config.to_json())
            .map_err(|e| BindingError::from(Error::Config(e.to_string())))?;
        let info = EngineInfo {
            backend: &self.report,
            config: config_json,
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
            run(&model, options, &on_frame)
                .await
                .map(|()| JsValue::UNDEFINED)
                .map_err(JsValue::from)
        })
    }
}

async fn run(model: &Model, options: JsValue, on_frame: &Function) -> Result<(), BindingError> {
    let request = GenerateOptions::from_js(options)?.to_request(model)?;
    let mut generation = Generation::new(model, request)?;
    let scales = generation.num_scales();
    while let Some(event) = generation.next_event().await? {
        let frame = match event {
            // The final image stands for the last scale.
            Event::Scale { index, .. } if index + 1 == scales => continue,
            Event::Scale {
                index,
                preview,
                elapsed_ms,
                ..
            } => frame(
                index + 1,
                scales,
                preview.as_ref().and_then(|p| p.first()),
                elapsed_ms,
                None,
            ),
            Event::Done {
                images, timings, ..
            } => frame(
                scales,
                scales,
                images.first(),
                timings.total_ms,
                Some(&timings),
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
