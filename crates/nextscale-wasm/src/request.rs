//! The options of one `generate` call as JS passes them, and the frames handed back.

use js_sys::{Object, Reflect, Uint8ClampedArray, Uint32Array};
use nextscale::pipeline::Mode;
use nextscale::preview::RgbaImage;
use nextscale::{GenerateRequest, Model, PreviewMode, Timings};
use serde::Deserialize;
use wasm_bindgen::JsValue;

use crate::error::BindingError;

/// The modes `model` offers: the VAR teacher and the naive one-pass baseline always, the
/// Distilled-Decoding student in one or two steps when the file carries one; an HMAR model
/// samples scale by scale only (`var`: its next-scale and refinement passes).
pub fn modes(model: &Model) -> Vec<&'static str> {
    if model.config.hmar.is_some() {
        return vec!["var"];
    }
    let steps = match (&model.dd, &model.config.dd) {
        (Some(_), Some(dd)) => dd.t_list.len(),
        _ => 0,
    };
    let mut modes = vec!["var"];
    modes.extend(["dd1", "dd2"].into_iter().take(steps));
    modes.push("parallel");
    modes
}

/// The keys [`GenerateOptions`] reads, as JS spells them.
const OPTION_KEYS: [&str; 10] = [
    "classLabel",
    "seed",
    "cfg",
    "topK",
    "topP",
    "moreSmooth",
    "preview",
    "mode",
    "maskSchedule",
    "passEvents",
];

/// `engine.generate` options (camelCase in JS). Absent cfg, top-k and top-p take the
/// model's default sampling (its recommendation, else the official defaults).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateOptions {
    /// Class label; absent or `null` for unconditional.
    #[serde(default)]
    pub class_label: Option<usize>,
    /// Seed of the token sampler.
    #[serde(default)]
    pub seed: u64,
    /// Classifier-free guidance strength.
    pub cfg: Option<f64>,
    /// Top-k mask (0 keeps every token).
    pub top_k: Option<usize>,
    /// Top-p (nucleus) mask.
    pub top_p: Option<f64>,
    /// Gumbel-softmax smoothing of the next-scale input.
    pub more_smooth: Option<bool>,
    /// `none`, `fast` or `full`.
    pub preview: Option<String>,
    /// `var` (default), `dd1`, `dd2` or `parallel`.
    pub mode: Option<String>,
    /// HMAR models only: per scale, the tokens fixed by the next-scale pass and after each
    /// refinement pass (default: the model's schedule).
    pub mask_schedule: Option<Vec<Vec<usize>>>,
    /// HMAR models only: a frame after every pass that leaves tokens masked, too.
    pub pass_events: Option<bool>,
}

impl GenerateOptions {
    /// Reads the options from a JS object (through [`Self::from_value`]).
    pub fn from_js(value: JsValue) -> Result<Self, BindingError> {
        let value: serde_json::Value = serde_wasm_bindgen::from_value(value)
            .map_err(|e| BindingError::bad_request(format!("generate options: {e}")))?;
        Self::from_value(value)
    }

    /// Reads the options from JSON: `null` or an object of the known keys, where a `null`
    /// value is the same as an absent key.
    pub fn from_value(value: serde_json::Value) -> Result<Self, BindingError> {
        let mut object = match value {
            serde_json::Value::Null => return Ok(Self::default()),
            serde_json::Value::Object(object) => object,
            other => {
                return Err(BindingError::bad_request(format!(
                    "generate options must be an object, not {other}"
                )));
            }
        };
        if let Some(key) = object.keys().find(|k| !OPTION_KEYS.contains(&k.as_str())) {
            return Err(BindingError::bad_request(format!(
                "unknown generate option `{key}`; known: {}",
                OPTION_KEYS.join(", ")
            )));
        }
        object.retain(|_, v| !v.is_null());
        serde_json::from_value(object.into())
            .map_err(|e| BindingError::bad_request(format!("generate options: {e}")))
    }

    /// The core request for one image, checked against the model.
    pub fn to_request(&self, model: &Model) -> Result<GenerateRequest, BindingError> {
        let mut request = GenerateRequest::new(self.class_label, 1, self.seed)
            .with_sampling(model.config.default_sampling());
        request.mode = Mode::parse(self.mode.as_deref().unwrap_or("var"))?;
        if let Some(cfg) = self.cfg {
            request.cfg = cfg;
        }
        if let Some(top_k) = self.top_k {
            request.sampling.top_k = model.config.check_top_k(top_k)?;
        }
        if let Some(top_p) = self.top_p {
            request.sampling.top_p = top_p;
        }
        if let Some(more_smooth) = self.more_smooth {
            request.sampling.more_smooth = more_smooth;
        }
        request.mask_schedule = self.mask_schedule.clone();
        request.pass_events = self.pass_events.unwrap_or(false);
        request.preview = match self.preview.as_deref().unwrap_or("fast") {
            "none" => PreviewMode::None,
            "fast" => PreviewMode::Fast,
            "full" => PreviewMode::Full,
            other => {
                return Err(BindingError::bad_request(format!(
                    "preview `{other}` must be one of none, fast, full"
                )));
            }
        };
        request.validate(model)?;
        Ok(request)
    }
}

/// An HMAR pass that leaves tokens masked: its index (0 the next-scale pass), the scale's
/// number of passes, and the positions the next pass re-predicts.
pub struct PassFrame<'a> {
    /// Pass index within the scale.
    pub index: usize,
    /// Passes of the scale.
    pub of: usize,
    /// Raster positions within the scale still masked.
    pub masked: &'a [usize],
}

/// One frame for JS: `{scale, scales, width, height, pixels, tokens, final, elapsedMs,
/// timings?, pass?}`. `pixels` is a fresh `Uint8ClampedArray` (RGBA) that JS may transfer,
/// or `null` for a scale without a preview; `tokens` a fresh `Uint32Array` of the token
/// indices the step chose (row-major), or `null`; `pass` (`{index, of, masked}`, `masked`
/// a `Uint32Array`) marks a frame between the passes of scale `scale`.
pub fn frame(
    scale: usize,
    scales: usize,
    image: Option<&RgbaImage>,
    tokens: Option<&[u32]>,
    elapsed_ms: f64,
    timings: Option<&Timings>,
    pass: Option<PassFrame>,
) -> JsValue {
    let frame = Object::new();
    let set = |key: &str, value: JsValue| {
        // Setting a property on a fresh plain object cannot fail.
        let _ = Reflect::set(&frame, &key.into(), &value);
    };
    set("scale", (scale as f64).into());
    set("scales", (scales as f64).into());
    set("final", timings.is_some().into());
    set("elapsedMs", elapsed_ms.into());
    set(
        "tokens",
        tokens.map_or(JsValue::NULL, |t| Uint32Array::from(t).into()),
    );
    match image {
        Some(img) => {
            set("width", (img.width as f64).into());
            set("height", (img.height as f64).into());
            set("pixels", Uint8ClampedArray::from(&img.pixels[..]).into());
        }
        None => {
            set("width", 0.into());
            set("height", 0.into());
            set("pixels", JsValue::NULL);
        }
    }
    if let Some(t) = timings {
        let timings = Object::new();
        let list = |v: &[f64]| -> JsValue {
            v.iter()
                .map(|&x| JsValue::from(x))
                .collect::<js_sys::Array>()
                .into()
        };
        for (key, value) in [
            ("scaleMs", list(&t.scale_ms)),
            ("previewMs", list(&t.preview_ms)),
            ("decodeMs", t.decode_ms.into()),
            ("totalMs", t.total_ms.into()),
        ] {
            let _ = Reflect::set(&timings, &key.into(), &value);
        }
        set("timings", timings.into());
    }
    if let Some(p) = pass {
        let info = Object::new();
        let masked: Vec<u32> = p.masked.iter().map(|&i| i as u32).collect();
        for (key, value) in [
            ("index", JsValue::from(p.index as f64)),
            ("of", JsValue::from(p.of as f64)),
            ("masked", Uint32Array::from(&masked[..]).into()),
        ] {
            let _ = Reflect::set(&info, &key.into(), &value);
        }
        set("pass", info.into());
    }
    frame.into()
}
