//! `nextscale sample`: generate images of a class and write PNGs (and per-scale previews).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use image::imageops::FilterType;
use nextscale::ModelConfig;
use nextscale::pipeline::{Event, GenerateRequest, Generation, PreviewMode};
use nextscale::preview::RgbaImage;

use super::{Backend, DEFAULT_MODEL, PreviewArg, SamplingArgs, load, progress};

/// Options of `nextscale sample`.
#[derive(Args, Debug)]
pub struct SampleArgs {
    /// Model file (.safetensors) or fixture directory.
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// Class label or name; `none` for unconditional.
    #[arg(long)]
    class: String,
    /// Seed of the first image; image i uses seed + i.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of images.
    #[arg(long, value_parser = super::positive, default_value_t = 1)]
    count: usize,
    /// Images per forward pass (default: all, at most 16).
    #[arg(long, value_parser = super::batch_size)]
    batch: Option<usize>,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Gumbel-smoothed soft tokens (visualisation only).
    #[arg(long)]
    more_smooth: bool,
    #[command(flatten)]
    output: OutputArgs,
    /// Device.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
}

/// Where `sample` and `edit` write their images, and which previews.
#[derive(Args, Debug)]
pub struct OutputArgs {
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write every scale's preview (and, for HMAR, every pass's that leaves tokens
    /// masked).
    #[arg(long)]
    previews: bool,
    /// How previews are computed.
    #[arg(long, value_enum, default_value_t = PreviewArg::Full)]
    preview_mode: PreviewArg,
}

impl OutputArgs {
    /// The previews the generation computes.
    pub fn preview(&self) -> PreviewMode {
        match (self.previews, self.preview_mode) {
            (false, _) => PreviewMode::None,
            (true, PreviewArg::Fast) => PreviewMode::Fast,
            (true, PreviewArg::Full) => PreviewMode::Full,
        }
    }

    /// Creates the output directory.
    pub fn create_dir(&self) -> Result<()> {
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("creating {}", self.out.display()))
    }
}

/// Writes an RGBA image as PNG, upscaled (nearest) to `size` when smaller.
pub fn write_png(path: &Path, img: &RgbaImage, size: usize) -> Result<()> {
    let buf = image::RgbaImage::from_raw(img.width as u32, img.height as u32, img.pixels.clone())
        .context("image buffer has the wrong length")?;
    let buf = if img.width != size {
        image::imageops::resize(&buf, size as u32, size as u32, FilterType::Nearest)
    } else {
        buf
    };
    buf.save(path)
        .with_context(|| format!("writing {}", path.display()))
}

/// Runs `nextscale sample`.
pub fn run(args: SampleArgs) -> Result<ExitCode> {
    let device = load::device(args.backend);
    let model = load::model(&args.model, &device)?;
    let config = &model.config;
    let label = parse_label(config, &args.class)?;
    let tag = label_tag(config, label);
    anyhow::ensure!(
        args.seed.checked_add(args.count as u64).is_some(),
        "--seed {} with --count {} runs past the largest seed",
        args.seed,
        args.count
    );
    let batch = args.batch.unwrap_or(args.count.min(16));
    args.output.create_dir()?;
    let scales = config.patch_nums.len();
    let bar = progress::bar((args.count.div_ceil(batch) * scales) as u64, "sampling");
    let mut written = Vec::new();
    for start in (0..args.count).step_by(batch) {
        let n = batch.min(args.count - start);
        let seed = args.seed + start as u64;
        let mut request = GenerateRequest {
            labels: vec![label; n],
            seed,
            preview: args.output.preview(),
            mode: args.sampling.mode(),
            pass_events: args.output.previews && config.hmar.is_some(),
            ..GenerateRequest::new(None, 1, 0).with_sampling(args.sampling.resolve(config)?)
        };
        request.sampling.more_smooth = args.more_smooth;
        let generation = Generation::new(&model, request)?;
        written.extend(write_generation(
            generation,
            &args.output.out,
            &tag,
            seed,
            &bar,
        )?);
    }
    bar.finish_and_clear();
    println!(
        "wrote {} images to {}",
        written.len(),
        args.output.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs a generation to its end, writing each image as `{tag}_{seed}.png` under `out` and
/// each scale's preview (when the request asks for them) as `{tag}_{seed}.scaleNN.png`,
/// and each HMAR pass's that leaves tokens masked as `{tag}_{seed}.scaleNN.passM.png`,
/// upscaled to the image size; returns the images' paths.
pub fn write_generation(
    mut generation: Generation,
    out: &Path,
    tag: &str,
    seed: u64,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    while let Some(event) = pollster::block_on(generation.next_event())? {
        match event {
            Event::Scale { index, preview, .. } => {
                bar.inc(1);
                for (i, img) in preview.iter().flatten().enumerate() {
                    let name = format!("{tag}_{}.scale{:02}.png", seed + i as u64, index + 1);
                    write_png(&out.join(name), img, generation.image_size())?;
                }
            }
            Event::Pass {
                scale,
                pass,
                preview,
                ..
            } => {
                for (i, img) in preview.iter().flatten().enumerate() {
                    let name = format!(
                        "{tag}_{}.scale{:02}.pass{pass}.png",
                        seed + i as u64,
                        scale + 1
                    );
                    write_png(&out.join(name), img, generation.image_size())?;
                }
            }
            Event::Done { images, .. } => {
                for (i, img) in images.iter().enumerate() {
                    let path = out.join(format!("{tag}_{}.png", seed + i as u64));
                    write_png(&path, img, img.width)?;
                    written.push(path);
                }
            }
        }
    }
    Ok(written)
}

/// A class given as a number, a name, or `none` (unconditional).
pub fn parse_label(config: &ModelConfig, class: &str) -> Result<Option<usize>> {
    Ok(match class.to_ascii_lowercase().as_str() {
        "none" | "null" | "uncond" => None,
        _ => Some(config.resolve_class(class)?),
    })
}

/// A label as a file-name component: its class name, or `uncond`.
pub fn label_tag(config: &ModelConfig, label: Option<usize>) -> String {
    label.map_or_else(|| "uncond".to_string(), |l| sanitize(&config.class_name(l)))
}

/// A class name as a file-name component.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
