//! Command-line definitions and dispatch.

mod bench;
mod convert;
mod inspect;
mod load;
mod parity;
mod progress;
mod sample;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// The model `sample` uses when `--model` is not given.
pub const DEFAULT_MODEL: &str = "web/public/models/emoji32.safetensors";

/// Next-scale (VAR) image generation on burn.
#[derive(Parser, Debug)]
#[command(name = "nextscale", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which burn device runs the model.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The flex CPU backend.
    Flex,
    /// wgpu with the graphics API it picks (Vulkan via lavapipe here).
    Wgpu,
}

/// Preview computed for each scale.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreviewArg {
    /// Linear Cvae → RGB map at latent resolution.
    Fast,
    /// Full VQ-VAE decode.
    Full,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate images of a class and write them as PNG.
    Sample(sample::SampleArgs),
    /// Print a model's config, parameter counts and classes.
    Inspect {
        /// Model file (.safetensors) or fixture directory.
        path: PathBuf,
    },
    /// Check a fixture directory (shared/fixtures format) against the core.
    Parity {
        /// Fixture directory with config.json, weights.safetensors and cases.safetensors.
        dir: PathBuf,
    },
    /// Time generation per scale, transformer against decoder.
    Bench(bench::BenchArgs),
    /// Convert official VAR checkpoints (.pth or .safetensors state dicts) to a model file.
    Convert(convert::ConvertArgs),
}

/// Parses the command line and runs it; errors print their chain and exit non-zero.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sample(args) => sample::run(args),
        Command::Inspect { path } => inspect::run(&path),
        Command::Parity { dir } => parity::run(&dir),
        Command::Bench(args) => bench::run(args),
        Command::Convert(args) => convert::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
