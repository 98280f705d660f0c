//! `nextscale grid`: one row of samples per class in a single PNG (the README's grid).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use burn::tensor::Device;
use clap::Args;
use nextscale::model::Model;
use nextscale::pipeline::{Event, GenerateRequest, Generation, Mode, PreviewMode};

use super::train::write_grid;
use super::{DEFAULT_MODEL, SamplingArgs, load};

/// Options of `nextscale grid`.
#[derive(Args, Debug)]
pub struct GridArgs {
    /// Model file (.safetensors) or fixture directory.
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// Samples per class (seeds `seed`, `seed + 1`, …).
    #[arg(long, default_value_t = 8)]
    per_class: usize,
    /// Seed of the first column.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Pixel zoom of each tile.
    #[arg(long, default_value_t = 2)]
    zoom: usize,
    /// Output PNG.
    #[arg(long)]
    out: PathBuf,
}

/// Runs `nextscale grid`.
pub fn run(args: GridArgs) -> Result<ExitCode> {
    let model = load::model(&args.model, &Device::flex())?;
    let request = |class: usize| {
        let mut r = GenerateRequest::new(Some(class), args.per_class, args.seed)
            .with_sampling(args.sampling.resolve(&model.config));
        r.mode = args.sampling.mode();
        r
    };
    grid_of(&model, &args.out, args.per_class, args.zoom, request)?;
    println!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// `per_class` samples of every class with the model's default sampling in `mode`, one
/// row per class.
pub fn sample_grid(model: &Model, path: &Path, per_class: usize, mode: Mode) -> Result<()> {
    grid_of(model, path, per_class, 2, |class| {
        let mut r = GenerateRequest::new(Some(class), per_class, 0)
            .with_sampling(model.config.default_sampling());
        r.mode = mode;
        r
    })
}

fn grid_of(
    model: &Model,
    path: &Path,
    per_class: usize,
    zoom: usize,
    request: impl Fn(usize) -> GenerateRequest,
) -> Result<()> {
    let mut tiles = Vec::new();
    for class in 0..model.config.num_classes {
        let mut r = request(class);
        r.preview = PreviewMode::None;
        let mut generation = Generation::new(model, r)?;
        while let Some(event) = pollster::block_on(generation.next_event())? {
            if let Event::Done { images, .. } = event {
                tiles.extend(images);
            }
        }
    }
    write_grid(path, &tiles, per_class, zoom)
}
