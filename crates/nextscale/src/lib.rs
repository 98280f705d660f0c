//! nextscale core: next-scale prediction (VAR) image generation on burn, generic over the
//! runtime device (flex CPU, wgpu, WebGPU), with no file or network I/O.
//!
//! - [`config`]: hyper-parameters and metadata of a model file.
//! - [`weights`]: safetensors loading with typed validation.
//! - [`vqvae`], [`var`]: the official model family.
//! - [`pipeline`]: scale-by-scale generation with streamed events.
//! - [`parity`]: comparison against the official reference fixtures.
//! - [`dataset`], [`train`]: the training data set file and training losses.

pub mod classifier;
pub mod config;
pub mod convert;
#[cfg(not(target_arch = "wasm32"))]
pub mod cpu;
pub mod dataset;
pub mod dd;
pub mod error;
pub mod model;
pub mod nn;
pub mod parity;
pub mod pipeline;
pub mod preview;
pub mod resample;
pub mod sampler;
pub mod train;
pub mod var;
pub mod vqvae;
pub mod weights;

pub use config::{ModelConfig, Sampling};
pub use error::{Error, Result};
pub use model::Model;
pub use pipeline::{Event, GenerateRequest, Generation, PreviewMode, Timings};
pub use sampler::SamplingOptions;
