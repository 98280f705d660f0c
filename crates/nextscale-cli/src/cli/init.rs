//! `nextscale init`: a model file of an official architecture with random weights, so that
//! anyone can benchmark a full-size model (natively or in the page) without a checkpoint.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use nextscale::ModelConfig;
use nextscale::model::Model;
use nextscale::train::{StateDict, state_dict};
use nextscale::var::Var;
use nextscale::vqvae::Vqvae;
use nextscale::weights::{ParamSource, VAE_PREFIX, VAR_PREFIX};

use super::convert::{StoreDtype, model_bytes};

/// Options of `nextscale init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Official architecture.
    #[arg(long, value_parser = ["d16", "d20", "d24", "d30"])]
    random: String,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Storage dtype.
    #[arg(long, value_enum, default_value_t = StoreDtype::F16)]
    dtype: StoreDtype,
    /// Leave out the VQ-VAE encoder, which sampling never uses (a smaller download).
    #[arg(long)]
    no_encoder: bool,
    /// Output model file.
    #[arg(long)]
    out: PathBuf,
}

/// The official VAR config of `d16` … `d30`.
pub fn official_config(name: &str) -> Result<ModelConfig> {
    match name.strip_prefix('d').and_then(|d| d.parse().ok()) {
        Some(depth @ (16 | 20 | 24 | 30)) => Ok(ModelConfig::official(depth)),
        _ => bail!("unknown architecture `{name}`: expected d16, d20, d24 or d30"),
    }
}

/// Runs `nextscale init`.
pub fn run(args: InitArgs) -> Result<ExitCode> {
    let mut config = official_config(&args.random)?;
    config.encoder = !args.no_encoder;
    config.attribution = Some(format!(
        "random weights (nextscale init --random {} --seed {}): a benchmark model, not a trained one",
        args.random, args.seed
    ));
    let device = Device::flex();
    let mut vae_src = ParamSource::random(args.seed, &device).with_prefix(VAE_PREFIX);
    let vae = Vqvae::new(&mut vae_src, &config)?;
    let mut state: StateDict = state_dict(&vae, vae_src.names())?;
    let mut var_src =
        ParamSource::random(args.seed.wrapping_add(1), &device).with_prefix(VAR_PREFIX);
    let var = Var::new(&mut var_src, &config)?;
    state.extend(state_dict(&var, var_src.names())?);
    drop((vae, var));
    // Load the tensors back as a model to check them end to end and fit the fast preview.
    let draft = model_bytes(&state, &config.to_json(), StoreDtype::F32)?;
    let model = Model::from_safetensors(&draft, &device)?;
    config.preview = Some(pollster::block_on(model.preview_matrix())?.clone());
    drop((model, draft));
    let bytes = model_bytes(&state, &config.to_json(), args.dtype)?;
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "wrote {} ({:.1} MB, {} tensors, {:?}{}): VAR-{} with random weights",
        args.out.display(),
        bytes.len() as f64 / 1e6,
        state.len(),
        args.dtype,
        if args.no_encoder { ", no encoder" } else { "" },
        args.random
    );
    Ok(ExitCode::SUCCESS)
}
