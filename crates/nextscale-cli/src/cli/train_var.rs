//! `nextscale train-var`: trains the VAR teacher on the tokens of a trained VQ-VAE —
//! teacher forcing under the block-causal mask, cross-entropy, 10% class drop for
//! classifier-free guidance, AdamW with warm-up and cosine decay, gradient clipping —
//! resumable, with periodic sample grids; then exports the model file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::Args;
use nextscale::ModelConfig;
use nextscale::config::CONFIG_METADATA_KEY;
use nextscale::dataset::{BalancedSampler, Dataset, Split};
use nextscale::model::Model;
use nextscale::pipeline::Mode;
use nextscale::preview::fit_preview_from;
use nextscale::train::var::{TokenCache, var_loss};
use nextscale::train::{LrSchedule, StateDict, state_dict};
use nextscale::var::Var;
use nextscale::vqvae::Vqvae;
use nextscale::weights::{ParamSource, VAE_PREFIX, VAR_PREFIX, WeightFile};
use rand::Rng;

use super::convert::{StoreDtype, host_model, merged_model_bytes};
use super::grid::sample_grid;
use super::train::{
    LossLog, RunArgs, RunDir, TrainState, read_state, record_step, step_rng, transformer_optimizer,
};
use super::{load, progress};

/// Options of `nextscale train-var`.
#[derive(Args, Debug)]
pub struct TrainVarArgs {
    /// Data set file (from `nextscale data`).
    #[arg(long, default_value = "data/emoji32.safetensors")]
    data: PathBuf,
    /// The tokenizer: a `train-vqvae` checkpoint.
    #[arg(long, default_value = "runs/vqvae/checkpoint.safetensors")]
    vqvae: PathBuf,
    /// Run directory: checkpoint, loss log, sample grids (resumes from its checkpoint).
    #[arg(long, default_value = "runs/var")]
    out: PathBuf,
    /// Optimizer steps.
    #[arg(long, value_parser = super::positive, default_value_t = 1500)]
    steps: usize,
    /// Sequences per step (class-balanced).
    #[arg(long, value_parser = super::positive, default_value_t = 32)]
    batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 6e-4)]
    lr: f64,
    /// Share of labels replaced by the null class (for classifier-free guidance).
    #[arg(long, default_value_t = 0.1)]
    label_drop: f64,
    #[command(flatten)]
    run: RunArgs,
}

/// Runs `nextscale train-var`.
pub fn run(args: TrainVarArgs) -> Result<ExitCode> {
    let data = Dataset::from_bytes(&load::read(&args.data)?)
        .with_context(|| format!("loading {}", args.data.display()))?;
    let vq_bytes = load::read(&args.vqvae)?;
    let vq_file = WeightFile::parse(&vq_bytes)?;
    let config = ModelConfig::from_json(
        vq_file
            .metadata(CONFIG_METADATA_KEY)
            .context("the VQ-VAE checkpoint has no config")?,
    )?;
    let vae_state = read_state(&vq_bytes, VAE_PREFIX)?;
    let host = Device::flex();
    let mut src = ParamSource::load(&vq_file, VAE_PREFIX, &host);
    let vae = Vqvae::new(&mut src, &config)?;
    src.finish()?;

    // Every image is tokenized once, so cache rows are data-set indices; only the
    // training split is sampled.
    let all: Vec<usize> = (0..data.len()).collect();
    let bar = progress::bar(all.len() as u64, "tokenize");
    let mut tokens: Option<TokenCache> = None;
    for chunk in all.chunks(128) {
        let part = pollster::block_on(TokenCache::build(&vae, data.images(chunk, &host)))?;
        match &mut tokens {
            Some(t) => t.extend(part),
            None => tokens = Some(part),
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let tokens = tokens.context("no images")?;
    let sampler = BalancedSampler::new(&data, &data.indices(Split::Train))?;

    let device = Device::flex().autodiff();
    let run = RunDir::create(&args.out)?;
    let mut optim = transformer_optimizer();
    let checkpoint = if args.run.fresh { None } else { run.load()? };
    let (mut var, names, start) = match &checkpoint {
        Some(ck) => {
            let r = run.resume(ck, VAR_PREFIX, &device, optim, |src| Var::new(src, &config))?;
            optim = r.optim;
            (r.module, r.names, r.step)
        }
        None => {
            let mut src = ParamSource::random(args.run.seed, &device).with_prefix(VAR_PREFIX);
            let var = Var::new(&mut src, &config)?;
            (var, src.names().clone(), 0)
        }
    };
    let schedule = LrSchedule::warmup_cosine(args.lr, 0.02, args.steps);
    let null = config.num_classes as i64;
    let mut log = LossLog::open(&run, &["loss", "accuracy"], start)?;
    let bar = progress::bar(args.steps as u64, "var");
    bar.set_position(start as u64);
    let save = |var: &Var, step: usize, optim: &ModuleOptimizer| -> Result<()> {
        let state = TrainState {
            step,
            param_ids: names.ids(),
        };
        run.save(&state_dict(var, &names)?, &config.to_json(), &state, optim)
    };
    for step in start..args.steps {
        let mut rng = step_rng(args.run.seed, step);
        let idx = sampler.batch(args.batch, &mut rng);
        let labels: Vec<i64> = idx
            .iter()
            .map(|&i| {
                if rng.random_bool(args.label_drop) {
                    null
                } else {
                    data.labels[i] as i64
                }
            })
            .collect();
        let labels_b = Tensor::<1, Int>::from_data(TensorData::new(labels, [idx.len()]), &device);
        let (x_blcv, target_bl) = tokens.batch(&idx, &device);
        let (loss, accuracy) = var_loss(&var, labels_b, x_blcv, target_bl);
        let row = vec![
            loss.clone().into_scalar::<f32>() as f64,
            accuracy.into_scalar::<f32>() as f64,
        ];
        if !row[0].is_finite() {
            anyhow::bail!(
                "loss became {} at step {step}; lower --lr and resume",
                row[0]
            );
        }
        let grads = GradientsParams::from_grads(loss.backward(), &var);
        var = optim.step(schedule.at(step), var, grads);
        let message = format!("ce {:.3} acc {:.3}", row[0], row[1]);
        record_step(&bar, &mut log, step, message, row);
        let done = step + 1;
        if args.run.checkpoint_due(done, args.steps) {
            save(&var, done, &optim)?;
            log.write()?;
        }
        if args.run.samples_due(done, args.steps) {
            let model = host_model(&config, &[&vae_state, &state_dict(&var, &names)?])?;
            let grid = run.path(&format!("samples_{done:06}.png"));
            sample_grid(&model, &grid, 8, Mode::Var)?;
            progress::note(&bar, format!("step {done}: wrote {}", grid.display()));
        }
    }
    bar.finish();
    if let Some(path) = &args.run.export {
        let ck = run.load()?.context("no checkpoint to export")?;
        let var_state = read_state(&ck.bytes, VAR_PREFIX)?;
        export(
            &config,
            &vae,
            &data,
            &vae_state,
            &var_state,
            path,
            args.run.dtype,
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the model file: both state dicts, the config with class names and attribution,
/// and a fast-preview matrix fitted on f_hat of training images.
fn export(
    config: &ModelConfig,
    vae: &Vqvae,
    data: &Dataset,
    vae_state: &StateDict,
    var_state: &StateDict,
    path: &std::path::Path,
    dtype: StoreDtype,
) -> Result<()> {
    let host = Device::flex();
    let mut config = config.clone();
    let mut pairs = Vec::new();
    for chunk in data.indices(Split::Train).chunks(128) {
        let img_b3hw = data.images(chunk, &host);
        let (_, f_hats) = vae.quantize.encode(vae.img_to_f(img_b3hw.clone())?);
        let f_hat = f_hats.last().context("no scales")?.clone();
        pairs.push((f_hat, img_b3hw));
    }
    config.preview = pollster::block_on(fit_preview_from(&pairs, config.derived_downsample()))?;
    let bytes = merged_model_bytes(&config, &[vae_state, var_state], dtype)?;
    // Round trip: the written file must load.
    Model::from_safetensors(&bytes, &host)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "wrote {} ({:.2} MB, {:?})",
        path.display(),
        bytes.len() as f64 / 1e6,
        dtype
    );
    Ok(())
}
