//! nextscale core: next-scale prediction (VAR, HMAR) image generation on burn, generic over the
//! runtime device (flex CPU, wgpu, WebGPU), with no file or network I/O.
//!
//! # Layers
//!
//! Each module imports only modules on lower layers (`tests/layering.rs` reads this table
//! and checks every `crate::` path in `src/` against it):
//!
//! ```text
//! 8 | parity convert train                                          | reference checks, checkpoint conversion, training
//! 7 | pipeline                                                      | generation scale by scale, as a stream of events
//! 6 | model                                                         | one model file: tokenizer, transformer, student
//! 5 | dd hmar preview edit                                          | the distilled student; HMAR; previews of f_hat; zero-shot edit masks
//! 4 | vqvae var classifier                                          | the networks
//! 3 | nn                                                            | the layers the networks share
//! 2 | cpu dataset                                                   | host kernels for the flex CPU device; the training data set file
//! 1 | config weights sampler resample readback input_image          | config, tensor files, sampling, resampling, host reads, input images
//! 0 | error activation                                              | typed errors, activation constants
//! ```
//!
//! - [`config`]: hyper-parameters and metadata of a model file.
//! - [`weights`]: safetensors loading with typed validation, and the tensor-name prefixes.
//! - [`vqvae`], [`var`]: the official model family; [`hmar`] the Markovian one with
//!   masked refinement; [`dd`] the distilled student.
//! - [`model`]: a loaded model file and the layout a config implies.
//! - [`edit`]: zero-shot in-painting, out-painting and class editing.
//! - [`pipeline`]: scale-by-scale generation with streamed events.
//! - [`parity`]: comparison against the official reference fixtures.
//! - `input_image` (feature `image`): PNG input decoded under limits, squared, on white.
//! - [`dataset`], [`train`]: the training data set file and training losses.

pub mod activation;
pub mod classifier;
pub mod config;
pub mod convert;
pub mod cpu;
pub mod dataset;
pub mod dd;
pub mod edit;
pub mod error;
pub mod hmar;
#[cfg(feature = "image")]
pub mod input_image;
pub mod model;
pub mod nn;
pub mod parity;
pub mod pipeline;
pub mod preview;
pub mod readback;
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
