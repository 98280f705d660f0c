//! `nextscale edit`: zero-shot in-painting, out-painting and class editing of an image with
//! the VAR teacher (the official `demo_zero_shot_edit.ipynb` procedure, `nextscale::edit`).
//!
//! The input PNG is composited on white (as the training data was), centre-cropped to a
//! square and resized to the model's resolution with a Catmull-Rom (bicubic) filter; boxes
//! and masks are in that square. `input.png` in the output directory is the image as the
//! model sees it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use burn::tensor::{Tensor, TensorData};
use clap::Args;
use nextscale::edit::{Edit, EditBox, keep_from_pixels};
use nextscale::input_image::{decode_png, on_white, square};
use nextscale::pipeline::{GenerateRequest, Generation};
use nextscale::preview::RgbaImage;

use super::sample::{OutputArgs, label_tag, parse_label, write_generation, write_png};
use super::train::write_grid;
use super::{Backend, SamplingArgs, load, progress};

/// Options of `nextscale edit`.
#[derive(Args, Debug)]
pub struct EditArgs {
    /// Model file (.safetensors) or fixture directory; it needs the VQ-VAE encoder.
    #[arg(long)]
    model: PathBuf,
    /// The image to edit (PNG of any size).
    #[arg(long)]
    image: PathBuf,
    /// The region as fractions of the image, `y0,x0,y1,x1` (as in the official notebook):
    /// generated (in-painting, the default) or kept (`--outpaint`).
    #[arg(long = "box", value_parser = parse_box, conflicts_with = "mask", required_unless_present = "mask")]
    edit_box: Option<EditBox>,
    /// Keep the box and generate everything around it.
    #[arg(long, requires = "edit_box")]
    outpaint: bool,
    /// A per-pixel mask instead of a box (PNG; white or opaque pixels are generated, black
    /// or transparent ones kept); a token is generated when most of its pixels are.
    #[arg(long)]
    mask: Option<PathBuf>,
    /// Class label or name of the generated region; `none` for unconditional.
    #[arg(long, default_value = "none")]
    class: String,
    /// Seed of the first edit; edit i uses seed + i.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Number of edits (different seeds) of the same image, one batch (at most 64).
    #[arg(long, value_parser = super::batch_size, default_value_t = 1)]
    count: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// Device.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    /// Also write one PNG side by side: the input, the input with the generated tokens
    /// tinted, then every edit (the docs' picture).
    #[arg(long)]
    sheet: Option<PathBuf>,
}

/// Parses `y0,x0,y1,x1` in [0, 1].
pub fn parse_box(text: &str) -> Result<EditBox, String> {
    let values: Vec<f64> = text
        .split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("`{text}`: {e}"))?;
    let edges: [f64; 4] = values
        .try_into()
        .map_err(|_| format!("`{text}` must be four numbers y0,x0,y1,x1"))?;
    EditBox::new(edges).map_err(|e| e.to_string())
}

/// A PNG file decoded (under the core's limits), centre-cropped to a square and resized to
/// `size`.
fn load_square(path: &Path, size: usize) -> Result<image::RgbaImage> {
    let bytes = std::fs::read(path).with_context(|| format!("reading image {}", path.display()))?;
    let decoded =
        decode_png(&bytes).with_context(|| format!("reading image {}", path.display()))?;
    Ok(square(&decoded, size)?)
}

/// An opaque image as `[1, 3, H, W]` in [-1, 1].
fn to_tensor(img: &image::RgbaImage, device: &burn::tensor::Device) -> Tensor<4> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut values = vec![0.0f32; 3 * h * w];
    for (i, px) in img.pixels().enumerate() {
        for c in 0..3 {
            values[c * h * w + i] = px[c] as f32 / 127.5 - 1.0;
        }
    }
    Tensor::from_data(TensorData::new(values, [1, 3, h, w]), device)
}

/// The image with the pixels of generated tokens tinted magenta (`keep_pp` is the last
/// scale's `p × p` keep mask).
fn tinted(img: &RgbaImage, keep_pp: &[f32], p: usize) -> RgbaImage {
    let mut out = img.clone();
    for (i, px) in out.pixels.chunks_exact_mut(4).enumerate() {
        let (y, x) = (i / img.width, i % img.width);
        if keep_pp[(y * p / img.height) * p + x * p / img.width] < 0.5 {
            for (c, tint) in px.iter_mut().zip([255u8, 0, 255]) {
                *c = ((*c as u16 + tint as u16) / 2) as u8;
            }
        }
    }
    out
}

/// Runs `nextscale edit`.
pub fn run(args: EditArgs) -> Result<ExitCode> {
    let device = load::device(args.backend);
    let model = load::model(&args.model, &device)?;
    let config = &model.config;
    let label = parse_label(config, &args.class)?;
    let size = config.image_size;
    let input = on_white(load_square(&args.image, size)?);
    let big = config.latent_size();
    let keep_pp = match (&args.edit_box, &args.mask) {
        (Some(b), _) => b.keep_mask(big, args.outpaint),
        (None, Some(path)) => {
            let mask = load_square(path, size)?;
            // Generate where the mask is bright and opaque.
            let generate: Vec<f32> = mask
                .pixels()
                .map(|p| {
                    let luma = (p[0] as f32 + p[1] as f32 + p[2] as f32) / (3.0 * 255.0);
                    luma * p[3] as f32 / 255.0
                })
                .map(|v| if v >= 0.5 { 1.0 } else { 0.0 })
                .collect();
            keep_from_pixels(&generate, (size, size), big)?
        }
        (None, None) => bail!("give --box or --mask"),
    };
    let edit = pollster::block_on(Edit::encode(
        &model.vae,
        &config.patch_nums,
        to_tensor(&input, &device),
        &keep_pp,
    ))?;
    if !edit.generates_any() {
        bail!("the box or mask keeps every token: there is nothing to generate");
    }
    args.output.create_dir()?;
    let as_rgba = RgbaImage {
        width: size,
        height: size,
        pixels: input.into_raw(),
    };
    write_png(&args.output.out.join("input.png"), &as_rgba, size)?;
    let tag = label_tag(config, label);
    let bar = progress::bar(config.patch_nums.len() as u64, "editing");
    let request = GenerateRequest {
        labels: vec![label; args.count],
        preview: args.output.preview(),
        mode: args.sampling.mode(),
        edit: Some(Edit {
            input_idx: vec![edit.input_idx[0].clone(); args.count],
            keep: edit.keep.clone(),
        }),
        ..GenerateRequest::new(None, 1, args.seed).with_sampling(args.sampling.resolve(config)?)
    };
    let generation = Generation::new(&model, request)?;
    let written = write_generation(generation, &args.output.out, &tag, args.seed, &bar)?;
    bar.finish_and_clear();
    if let Some(sheet) = &args.sheet {
        let mut tiles = vec![as_rgba.clone(), tinted(&as_rgba, &keep_pp, big)];
        for path in &written {
            let img = image::open(path)
                .with_context(|| format!("reading {}", path.display()))?
                .to_rgba8();
            tiles.push(RgbaImage {
                width: img.width() as usize,
                height: img.height() as usize,
                pixels: img.into_raw(),
            });
        }
        let cols = tiles.len();
        write_grid(sheet, &tiles, cols, 4)?;
    }
    println!(
        "wrote {} edits of {} to {} (tokens generated per scale: {:?})",
        written.len(),
        args.image.display(),
        args.output.out.display(),
        edit.generated_per_scale()
    );
    Ok(ExitCode::SUCCESS)
}
