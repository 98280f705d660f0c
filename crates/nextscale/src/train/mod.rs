//! Training building blocks, device-generic and free of I/O: the losses of the VQ-VAE
//! tokenizer, the VAR teacher, HMAR's two stages and the Distilled-Decoding student, the
//! learning-rate schedule, codebook-usage tracking and export of trained parameters under
//! their official names. The optimizer loop, files and progress bars live in the CLI.

pub mod distill;
pub mod hmar;
pub mod schedule;
pub mod state;
pub mod var;
pub mod vqvae;

pub use schedule::LrSchedule;
pub use state::{StateDict, state_dict};
