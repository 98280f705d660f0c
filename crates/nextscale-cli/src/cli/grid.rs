//! `nextscale grid`: one row of samples per class in a single PNG (the training docs'
//! grids), or with `--scales` one row per sample showing it after every scale (the
//! README's picture of an image sharpening from 1×1 tokens to full size).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use burn::tensor::Device;
use clap::Args;
use nextscale::model::Model;
use nextscale::pipeline::{Event, GenerateRequest, Generation, Mode, PreviewMode};
use nextscale::preview::RgbaImage;

use super::train::write_grid;
use super::{DEFAULT_MODEL, SamplingArgs, load};

/// Options of `nextscale grid`.
#[derive(Args, Debug)]
pub struct GridArgs {
    /// Model file (.safetensors) or fixture directory.
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// Samples per class (seeds `seed`, `seed + 1`, …).
    #[arg(long, value_parser = super::positive, default_value_t = 8)]
    per_class: usize,
    /// Seed of the first column.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// One row per sample: its full decode after every scale, coarse to fine, instead of
    /// the final images side by side.
    #[arg(long)]
    scales: bool,
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
    let sampling = args.sampling.resolve(&model.config)?;
    let request = |class: usize| {
        let mut r =
            GenerateRequest::new(Some(class), args.per_class, args.seed).with_sampling(sampling);
        r.mode = args.sampling.mode();
        r
    };
    if args.scales {
        scales_grid(&model, &args.out, args.zoom, request)?;
    } else {
        grid_of(&model, &args.out, args.per_class, args.zoom, request)?;
    }
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

/// Every sample of every class after each scale (full decodes), one row per sample.
fn scales_grid(
    model: &Model,
    path: &Path,
    zoom: usize,
    request: impl Fn(usize) -> GenerateRequest,
) -> Result<()> {
    let mut tiles = Vec::new();
    let mut cols = 0;
    for class in 0..model.config.num_classes {
        let mut r = request(class);
        r.preview = PreviewMode::Full;
        let mut generation = Generation::new(model, r)?;
        let mut rows: Vec<Vec<RgbaImage>> = Vec::new();
        while let Some(event) = pollster::block_on(generation.next_event())? {
            if let Event::Scale {
                preview: Some(previews),
                ..
            } = event
            {
                rows.resize_with(previews.len(), Vec::new);
                for (row, preview) in rows.iter_mut().zip(previews) {
                    row.push(preview);
                }
            }
        }
        for row in rows {
            cols = row.len();
            tiles.extend(row);
        }
    }
    write_grid(path, &tiles, cols.max(1), zoom)
}
