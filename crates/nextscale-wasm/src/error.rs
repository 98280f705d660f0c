//! Every failure of the bindings, turned into a JS `Error` with a stable `code`.

use wasm_bindgen::JsValue;

/// A core error or one the bindings add.
#[derive(Debug)]
pub enum BindingError {
    /// From the core; keeps its code (`E_MODEL_FORMAT`, `E_BAD_REQUEST`, `E_ABORTED`, …).
    Core(nextscale::Error),
    /// `webgpu` was requested and there is no usable adapter or device.
    WebGpuUnavailable(String),
}

impl BindingError {
    /// An `E_BAD_REQUEST` error.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::Core(nextscale::Error::BadRequest(message.into()))
    }

    /// The stable code shared with the TypeScript API.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Core(e) => e.code(),
            Self::WebGpuUnavailable(_) => "E_WEBGPU_UNAVAILABLE",
        }
    }

    /// The human message.
    pub fn message(&self) -> String {
        match self {
            Self::Core(e) => e.to_string(),
            Self::WebGpuUnavailable(why) => format!("WebGPU is unavailable: {why}"),
        }
    }
}

impl From<nextscale::Error> for BindingError {
    fn from(e: nextscale::Error) -> Self {
        Self::Core(e)
    }
}

impl From<BindingError> for JsValue {
    fn from(e: BindingError) -> Self {
        let err = js_sys::Error::new(&e.message());
        // Setting a property on a fresh Error object cannot fail.
        let _ = js_sys::Reflect::set(&err, &"code".into(), &e.code().into());
        err.into()
    }
}
