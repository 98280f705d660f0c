//! wasm-bindgen bindings of nextscale. Thin by design: each export deserialises its input,
//! calls the core and serialises the result; core errors become JS `Error`s with a `code`.

use nextscale::weights::WeightFile;
use nextscale::{Error, ModelConfig};
use wasm_bindgen::prelude::*;

/// Turns a core error into a JS `Error` carrying the stable `code` (e.g. `E_MODEL_FORMAT`).
fn js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(&e.to_string());
    // Setting a property on a fresh Error object cannot fail.
    let _ = js_sys::Reflect::set(&err, &"code".into(), &e.code().into());
    err.into()
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
    let file = WeightFile::parse(bytes).map_err(js_error)?;
    let json = file
        .metadata(nextscale::config::CONFIG_METADATA_KEY)
        .ok_or_else(|| js_error(Error::Config("no config in the model file metadata".into())))?;
    let config = ModelConfig::from_json(json).map_err(js_error)?;
    Ok(config.to_json())
}
