//! `nextscale init`: a model file of an official architecture (or of any config, with its
//! distilled student when the config has one) with random weights, so that anyone can
//! benchmark a full-size model (natively or in the page) without a checkpoint.

use std::io::Write;
use std::path::Path;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use nextscale::ModelConfig;
use nextscale::dd::DdModel;
use nextscale::hmar::Hmar;
use nextscale::model::Model;
use nextscale::train::{StateDict, state_dict};
use nextscale::var::Var;
use nextscale::vqvae::Vqvae;
use nextscale::weights::{DD_PREFIX, HMAR_PREFIX, ParamSource, VAE_PREFIX, VAR_PREFIX};

use super::convert::{StoreDtype, model_bytes};

/// Options of `nextscale init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Official architecture: VAR `d16` … `d30`, or HMAR `hmar-d16` … `hmar-d30`.
    #[arg(long, value_parser = ["d16", "d20", "d24", "d30", "hmar-d16", "hmar-d20", "hmar-d24", "hmar-d30"], required_unless_present = "config", conflicts_with = "config")]
    random: Option<String>,
    /// Any architecture instead, as a model config JSON file (the `nextscale.config`
    /// metadata of a model file), for instance a tiny one for tests and fuzzing.
    #[arg(long)]
    config: Option<PathBuf>,
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

/// The official config of VAR `d16` … `d30` or HMAR `hmar-d16` … `hmar-d30`, and its name.
pub fn official_config(name: &str) -> Result<(ModelConfig, String)> {
    let (hmar, var_name) = match name.strip_prefix("hmar-") {
        Some(rest) => (true, rest),
        None => (false, name),
    };
    match var_name.strip_prefix('d').and_then(|d| d.parse().ok()) {
        Some(depth @ (16 | 20 | 24 | 30)) if hmar => Ok((
            ModelConfig::official_hmar(depth),
            format!("HMAR-{var_name}"),
        )),
        Some(depth @ (16 | 20 | 24 | 30)) => {
            Ok((ModelConfig::official(depth), format!("VAR-{var_name}")))
        }
        _ => {
            bail!("unknown architecture `{name}`: expected d16, d20, d24, d30 or hmar- before one")
        }
    }
}

/// Runs `nextscale init`.
pub fn run(args: InitArgs) -> Result<ExitCode> {
    let (mut config, name) = match (&args.random, &args.config) {
        (Some(name), _) => official_config(name)?,
        (None, Some(path)) => {
            let json = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let config = ModelConfig::from_json(&json)
                .with_context(|| format!("config {}", path.display()))?;
            (config, format!("the architecture of {}", path.display()))
        }
        (None, None) => bail!("give --random or --config"),
    };
    // An unwritable path fails before minutes of random weights, and a failed run leaves
    // any file already at `--out` as it was.
    let out = Partial::create(&args.out)?;
    config.encoder = !args.no_encoder;
    config.attribution = Some(format!(
        "random weights (nextscale init, {name}, seed {}): a benchmark model, not a trained one",
        args.seed
    ));
    let device = Device::flex();
    let mut vae_src = ParamSource::random(args.seed, &device).with_prefix(VAE_PREFIX);
    let vae = Vqvae::new(&mut vae_src, &config)?;
    let mut state: StateDict = state_dict(&vae, vae_src.names())?;
    let seed = args.seed.wrapping_add(1);
    if config.hmar.is_some() {
        let mut src = ParamSource::random(seed, &device).with_prefix(HMAR_PREFIX);
        let hmar = Hmar::new(&mut src, &config)?;
        state.extend(state_dict(&hmar, src.names())?);
    } else {
        let mut src = ParamSource::random(seed, &device).with_prefix(VAR_PREFIX);
        let var = Var::new(&mut src, &config)?;
        state.extend(state_dict(&var, src.names())?);
    }
    drop(vae);
    if let Some(dd) = &config.dd {
        let mut dd_src =
            ParamSource::random(args.seed.wrapping_add(2), &device).with_prefix(DD_PREFIX);
        let student = DdModel::new(&mut dd_src, &config, dd.loss_split_t)?;
        state.extend(state_dict(&student, dd_src.names())?);
    }
    // Load the tensors back as a model to check them end to end and fit the fast preview.
    let draft = model_bytes(&state, &config.to_json(), StoreDtype::F32)?;
    let model = Model::from_safetensors(&draft, &device)?;
    config.preview = Some(pollster::block_on(model.preview_matrix())?.clone());
    drop((model, draft));
    let bytes = model_bytes(&state, &config.to_json(), args.dtype)?;
    out.finish(&bytes)?;
    println!(
        "wrote {} ({:.1} MB, {} tensors, {:?}{}): {} with random weights",
        args.out.display(),
        bytes.len() as f64 / 1e6,
        state.len(),
        args.dtype,
        if args.no_encoder { ", no encoder" } else { "" },
        name
    );
    Ok(ExitCode::SUCCESS)
}

/// An output file written beside its path (`<out>.partial`) and renamed over it when
/// complete; dropped unfinished, it is removed.
struct Partial {
    file: std::fs::File,
    partial: PathBuf,
    out: PathBuf,
    done: bool,
}

impl Partial {
    /// Creates `<out>.partial`.
    fn create(out: &Path) -> Result<Self> {
        let mut partial = out.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = std::fs::File::create(&partial)
            .with_context(|| format!("writing {}", out.display()))?;
        Ok(Self {
            file,
            partial,
            out: out.to_path_buf(),
            done: false,
        })
    }

    /// Writes `bytes` and renames the file to its path.
    fn finish(mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .and_then(|()| self.file.sync_all())
            .and_then(|()| std::fs::rename(&self.partial, &self.out))
            .with_context(|| format!("writing {}", self.out.display()))?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}
