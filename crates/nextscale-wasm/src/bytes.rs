//! A model file's bytes, streamed into wasm memory chunk by chunk as they download (or as
//! the Cache API reads them), so the file exists once, inside the engine, instead of as a
//! JS buffer that is copied in.

use js_sys::Uint8Array;
use nextscale::Error;
use sha2::{Digest, Sha256};
use wasm_bindgen::prelude::*;

use crate::error::BindingError;

/// Largest model file the engine accepts: wasm32 addresses 4 GiB, and the f32 weights need
/// about as much again as an f16 file (twice as much as a bf16 one), so no larger file fits.
pub const MAX_FILE_BYTES: u64 = 2 << 30;

/// The bytes of a model file, filled in chunks (`push`) and then handed to
/// [`Engine::create`](crate::Engine::create).
#[wasm_bindgen]
pub struct ModelBytes {
    bytes: Vec<u8>,
    expected: Option<u64>,
}

#[wasm_bindgen]
impl ModelBytes {
    /// An empty buffer for a file of `expected` bytes (the download's `Content-Length`),
    /// reserved at once, or of unknown size (`undefined`). A size past what wasm32 can hold
    /// is an `E_BACKEND` error that names it.
    #[wasm_bindgen(constructor)]
    pub fn new(expected: Option<f64>) -> Result<ModelBytes, JsValue> {
        let expected = match expected {
            None => None,
            Some(n) if n.is_finite() && n >= 0.0 && n.fract() == 0.0 => Some(n as u64),
            Some(n) => {
                return Err(BindingError::bad_request(format!(
                    "model size {n} is not a byte count"
                ))
                .into());
            }
        };
        let mut bytes = Vec::new();
        if let Some(n) = expected {
            check_size(n)?;
            bytes
                .try_reserve_exact(n as usize)
                .map_err(|_| out_of_memory(n))?;
        }
        Ok(Self { bytes, expected })
    }

    /// Appends a chunk, copied straight from the JS array into wasm memory.
    pub fn push(&mut self, chunk: &Uint8Array) -> Result<(), JsValue> {
        let len = chunk.length() as usize;
        let total = (self.bytes.len() + len) as u64;
        check_size(total)?;
        self.bytes
            .try_reserve(len)
            .map_err(|_| out_of_memory(total))?;
        let start = self.bytes.len();
        self.bytes.resize(start + len, 0);
        chunk.copy_to(&mut self.bytes[start..]);
        Ok(())
    }

    /// Bytes received so far.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> f64 {
        self.bytes.len() as f64
    }

    /// The SHA-256 of the bytes received so far, as 64 lowercase hex digits.
    pub fn sha256(&self) -> String {
        Sha256::digest(&self.bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl ModelBytes {
    /// The whole file; an `E_MODEL_FORMAT` error when fewer bytes came than announced.
    pub fn into_vec(self) -> Result<Vec<u8>, BindingError> {
        if let Some(n) = self.expected
            && (self.bytes.len() as u64) < n
        {
            return Err(Error::Truncated(format!(
                "the download ended after {} of {n} bytes",
                self.bytes.len()
            ))
            .into());
        }
        Ok(self.bytes)
    }
}

fn check_size(n: u64) -> Result<(), BindingError> {
    if n > MAX_FILE_BYTES {
        return Err(Error::Backend(format!(
            "the model file is {:.2} GB; the browser engine holds at most {:.2} GB of file (wasm32 memory is 4 GiB, and the weights expand to f32)",
            n as f64 / 1e9,
            MAX_FILE_BYTES as f64 / 1e9
        ))
        .into());
    }
    Ok(())
}

fn out_of_memory(n: u64) -> BindingError {
    Error::Backend(format!(
        "cannot allocate {:.2} GB in wasm memory for the model file",
        n as f64 / 1e9
    ))
    .into()
}

/// Headroom kept in wasm memory for activations, caches and the allocator (d16's working
/// set at batch 1 with guidance is about 0.3 GB).
const WORKING_BYTES: u64 = 512 << 20;

/// wasm32's address space.
const WASM32_BYTES: u64 = 4 << 30;

/// Checks, from the header alone, that the file and its weights as f32 fit in wasm32's
/// 4 GiB next to a working set; else an `E_BACKEND` error that names the sizes. On the CPU
/// every weight lives in wasm memory; on WebGPU only the largest one passes through it.
pub fn check_fits(bytes: &[u8], on_cpu: bool) -> Result<(), BindingError> {
    let file = nextscale::weights::WeightFile::parse(bytes)?;
    let names = file.names();
    let sizes = names
        .iter()
        .filter_map(|n| file.shape(n))
        .map(|shape| 4 * shape.iter().map(|&d| d as u64).product::<u64>());
    let weights: u64 = if on_cpu {
        sizes.sum()
    } else {
        sizes.max().unwrap_or(0)
    };
    let needed = bytes.len() as u64 + weights + WORKING_BYTES;
    if needed > WASM32_BYTES {
        return Err(Error::Backend(format!(
            "the model needs about {:.2} GB in the browser ({:.2} GB of file, {:.2} GB of f32 weights, {:.2} GB to work in); wasm32 memory is at most {:.2} GB",
            needed as f64 / 1e9,
            bytes.len() as f64 / 1e9,
            weights as f64 / 1e9,
            WORKING_BYTES as f64 / 1e9,
            WASM32_BYTES as f64 / 1e9
        ))
        .into());
    }
    Ok(())
}
