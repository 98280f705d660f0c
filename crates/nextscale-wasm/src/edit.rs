//! The options of one `edit` call as JS passes them: the image, what to keep, and the
//! generate options for the rest.

use burn::tensor::{Tensor, TensorData};
use js_sys::{Array, Object, Reflect, Uint8Array};
use nextscale::Model;
use nextscale::edit::{Edit, EditBox, keep_from_pixels};
use wasm_bindgen::{JsCast, JsValue};

use crate::error::BindingError;
use crate::request::GenerateOptions;

/// What an edit keeps, at the image's resolution.
#[derive(Debug, Clone, PartialEq)]
pub enum EditMask {
    /// A box in fractions of the image; `outpaint` keeps it, else it is generated.
    Box {
        /// The box.
        edit_box: EditBox,
        /// Keep the box and generate around it.
        outpaint: bool,
    },
    /// One byte per pixel, row-major: 128 and above is generated, below kept.
    Pixels(Vec<u8>),
}

/// `engine.edit` options: `image` (RGBA bytes at the model's resolution, composited on an
/// opaque background by the package), `mask` (`{ box: [y0, x0, y1, x1], mode: 'inpaint' |
/// 'outpaint' }` or `{ pixels: Uint8Array }`, one byte per pixel), and the generate options
/// (`classLabel`, `seed`, `cfg`, `topK`, `topP`, `preview`).
#[derive(Debug)]
pub struct EditOptions {
    /// The rest, as for `generate`.
    pub generate: GenerateOptions,
    /// RGBA, `image_size² · 4` bytes.
    pub image: Vec<u8>,
    /// What to keep.
    pub mask: EditMask,
}

fn bad(message: impl Into<String>) -> BindingError {
    BindingError::bad_request(message)
}

fn get(object: &JsValue, key: &str) -> JsValue {
    Reflect::get(object, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

fn bytes(value: &JsValue, what: &str) -> Result<Vec<u8>, BindingError> {
    if let Some(array) = value.dyn_ref::<Uint8Array>() {
        return Ok(array.to_vec());
    }
    if let Some(array) = value.dyn_ref::<js_sys::Uint8ClampedArray>() {
        return Ok(array.to_vec());
    }
    Err(bad(format!(
        "{what} must be a Uint8Array or Uint8ClampedArray"
    )))
}

impl EditOptions {
    /// Reads the options from a JS object.
    pub fn from_js(value: JsValue) -> Result<Self, BindingError> {
        let object = value
            .dyn_ref::<Object>()
            .ok_or_else(|| bad("edit needs an options object with `image` and `mask`"))?;
        let image = bytes(&get(object, "image"), "edit option `image`")?;
        let mask = get(object, "mask");
        if !mask.is_object() {
            return Err(bad(
                "edit option `mask` must be { box, mode } or { pixels }",
            ));
        }
        let mask = if Reflect::has(&mask, &"box".into()).unwrap_or(false) {
            let edges: Vec<f64> = get(&mask, "box")
                .dyn_into::<Array>()
                .map_err(|_| bad("mask.box must be [y0, x0, y1, x1]"))?
                .iter()
                .map(|v| v.as_f64().unwrap_or(f64::NAN))
                .collect();
            let edges: [f64; 4] = edges
                .try_into()
                .map_err(|_| bad("mask.box must be [y0, x0, y1, x1]"))?;
            let outpaint = match get(&mask, "mode").as_string().as_deref() {
                Some("inpaint") => false,
                Some("outpaint") => true,
                _ => return Err(bad("mask.mode must be 'inpaint' or 'outpaint'")),
            };
            EditMask::Box {
                edit_box: EditBox::new(edges)?,
                outpaint,
            }
        } else {
            EditMask::Pixels(bytes(&get(&mask, "pixels"), "mask.pixels")?)
        };
        // The rest are generate options, checked as `generate` checks them.
        let rest = Object::assign(&Object::new(), object);
        for key in ["image", "mask"] {
            Reflect::delete_property(&rest, &key.into()).map_err(|_| bad("options"))?;
        }
        Ok(Self {
            generate: GenerateOptions::from_js(rest.into())?,
            image,
            mask,
        })
    }

    /// The request's edit: the image encoded with the VQ-VAE (which the model must have)
    /// and the positions to keep at every scale.
    pub async fn to_edit(&self, model: &Model) -> Result<Edit, BindingError> {
        let config = &model.config;
        let size = config.image_size;
        if self.image.len() != size * size * 4 {
            return Err(bad(format!(
                "the image has {} bytes; this model edits {size}×{size} RGBA images ({} bytes)",
                self.image.len(),
                size * size * 4
            )));
        }
        let big = config.latent_size();
        let keep_pp = match &self.mask {
            EditMask::Box { edit_box, outpaint } => edit_box.keep_mask(big, *outpaint),
            EditMask::Pixels(pixels) => {
                let generate: Vec<f32> = pixels
                    .iter()
                    .map(|&p| f32::from(u8::from(p >= 128)))
                    .collect();
                keep_from_pixels(&generate, (size, size), big)?
            }
        };
        let mut values = vec![0.0f32; 3 * size * size];
        for (i, px) in self.image.chunks_exact(4).enumerate() {
            for c in 0..3 {
                values[c * size * size + i] = px[c] as f32 / 127.5 - 1.0;
            }
        }
        let image_b3hw =
            Tensor::from_data(TensorData::new(values, [1, 3, size, size]), model.device());
        let edit = Edit::encode(&model.vae, &config.patch_nums, image_b3hw, &keep_pp).await?;
        if !edit.generates_any() {
            return Err(bad(
                "the mask keeps every token: there is nothing to generate",
            ));
        }
        Ok(edit)
    }
}
