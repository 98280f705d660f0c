//! `nextscale train-vqvae`: trains the multi-scale VQ-VAE tokenizer on the data set with
//! burn autodiff on flex (CPU), resumable, then reports reconstruction error and codebook
//! usage on the train and held-out splits.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::{Device, Tensor};
use clap::Args;
use nextscale::ModelConfig;
use nextscale::dataset::{BalancedSampler, Dataset, Split};
use nextscale::pipeline::images_of;
use nextscale::readback::read_f32;
use nextscale::train::vqvae::{CodeUsage, vqvae_loss};
use nextscale::train::{LrSchedule, state_dict};
use nextscale::vqvae::Vqvae;
use nextscale::weights::{ParamSource, WeightFile};
use rand::Rng;
use serde::Serialize;

use super::train::{LossLog, RunDir, TrainState, step_rng, write_grid};
use super::{load, progress};

/// Options of `nextscale train-vqvae`.
#[derive(Args, Debug)]
pub struct TrainVqvaeArgs {
    /// Data set file (from `nextscale data`).
    #[arg(long, default_value = "data/emoji32.safetensors")]
    data: PathBuf,
    /// Run directory: checkpoint, loss log, report (resumes from its checkpoint).
    #[arg(long, default_value = "runs/vqvae")]
    out: PathBuf,
    /// Optimizer steps.
    #[arg(long, value_parser = super::positive, default_value_t = 1500)]
    steps: usize,
    /// Stop after this step, with the learning-rate schedule still spanning `--steps`; the
    /// same command without it resumes the run.
    #[arg(long)]
    until: Option<usize>,
    /// Images per step (class-balanced).
    #[arg(long, value_parser = super::positive, default_value_t = 32)]
    batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Seed of the initialisation and of the batches.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 250)]
    checkpoint_every: usize,
    /// Steps between dead-code re-initialisations (codes unused over that window).
    #[arg(long, default_value_t = 100)]
    reinit_every: usize,
    /// Start over even if the run directory holds a checkpoint.
    #[arg(long)]
    fresh: bool,
}

/// Per-split reconstruction quality and codebook use.
#[derive(Serialize, Debug)]
struct SplitReport {
    images: usize,
    l1: f64,
    mse: f64,
    psnr_db: f64,
    codebook_used: f64,
    perplexity: f64,
}

/// Runs `nextscale train-vqvae`.
pub fn run(args: TrainVqvaeArgs) -> Result<ExitCode> {
    let data = Dataset::from_bytes(&load::read(&args.data)?)
        .with_context(|| format!("loading {}", args.data.display()))?;
    let device = Device::flex().autodiff();
    let run = RunDir::create(&args.out)?;
    let optim_config = AdamWConfig::new()
        .with_beta_2(0.99)
        .with_weight_decay(0.0)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(1.0)));
    let mut optim = optim_config.init();
    let checkpoint = if args.fresh { None } else { run.load()? };
    let (config, mut vae, names, start) = match &checkpoint {
        Some(ck) => {
            let config = ModelConfig::from_json(&ck.config_json)?;
            let r = run.resume(ck, "vae.", &device, optim, |src| Vqvae::new(src, &config))?;
            optim = r.optim;
            (config, r.module, r.names, r.step)
        }
        None => {
            let mut config = ModelConfig::emoji32(data.num_classes());
            config.class_names = data.info.class_names.clone();
            config.attribution = Some(data.info.attribution.clone());
            config.validate()?;
            let mut src = ParamSource::random(args.seed, &device).with_prefix("vae.");
            let vae = Vqvae::new(&mut src, &config)?;
            (config, vae, src.names().clone(), 0)
        }
    };
    let sampler = BalancedSampler::new(&data, &data.indices(Split::Train))?;
    let schedule = LrSchedule::warmup_cosine(args.lr, 0.05, args.steps);
    let mut log = LossLog::open(&run, &["total", "l1", "l2", "vq"], start)?;
    let mut usage = CodeUsage::new(config.vocab_size);
    let stop = args.until.map_or(args.steps, |until| until.min(args.steps));
    let bar = progress::bar(stop as u64, "vqvae");
    bar.set_position(start as u64);
    let save = |vae: &Vqvae, step: usize, optim: &burn::optim::ModuleOptimizer| -> Result<()> {
        let state = TrainState {
            step,
            param_ids: names.ids(),
        };
        run.save(&state_dict(vae, &names)?, &config.to_json(), &state, optim)
    };
    for step in start..stop {
        let mut rng = step_rng(args.seed, step);
        let idx = sampler.batch(args.batch, &mut rng);
        let loss = vqvae_loss(&vae, data.images(&idx, &device))?;
        let row: Vec<f64> = [&loss.total, &loss.l1, &loss.l2, &loss.vq]
            .iter()
            .map(|t| (*t).clone().into_scalar::<f32>() as f64)
            .collect();
        if row.iter().any(|v| !v.is_finite()) {
            anyhow::bail!("loss became {row:?} at step {step}; lower --lr and resume");
        }
        for idx_bl in &loss.idx_bl {
            let tokens: Vec<i64> = idx_bl.to_data().iter::<i64>().collect();
            usage.record(&tokens);
        }
        let grads = GradientsParams::from_grads(loss.total.backward(), &vae);
        vae = optim.step(schedule.at(step), vae, grads);
        if (step + 1) % args.reinit_every == 0 {
            let dead = usage.dead();
            progress::note(
                &bar,
                format!(
                    "step {}: codebook used {:.1}%, perplexity {:.0}, re-initialising {} dead codes",
                    step + 1,
                    100.0 * usage.used_fraction(),
                    usage.perplexity(),
                    dead.len()
                ),
            );
            if !dead.is_empty() && step + 1 < args.steps {
                let vectors = random_latent_rows(loss.f_bchw.clone(), dead.len(), &mut rng);
                vae.quantize = vae.quantize.clone().reinit_codes(&dead, vectors);
            }
            usage.reset();
        }
        bar.set_message(format!("l1 {:.3} vq {:.3}", row[1], row[3]));
        log.push(step, row);
        bar.inc(1);
        progress::log_step(&bar);
        if (step + 1) % args.checkpoint_every == 0 || step + 1 == stop {
            save(&vae, step + 1, &optim)?;
            log.write()?;
        }
    }
    bar.finish();
    if start >= stop {
        println!("already trained to step {stop}");
    }
    report(&run, &data)
}

/// `n` latent vectors picked at random from a batch's encoder output.
///
/// # Shapes
/// - f: `[B, Cvae, h, w]` → `[n, Cvae]`
fn random_latent_rows(f_bchw: Tensor<4>, n: usize, rng: &mut impl Rng) -> Tensor<2> {
    let [b, c, h, w] = f_bchw.dims();
    let rows = b * h * w;
    let device = f_bchw.device();
    let pick: Vec<i64> = (0..n).map(|_| rng.random_range(0..rows) as i64).collect();
    let pick_n = Tensor::<1, burn::tensor::Int>::from_data(
        burn::tensor::TensorData::new(pick, [n]),
        &device,
    );
    f_bchw
        .permute([0, 2, 3, 1])
        .reshape([rows, c])
        .select(0, pick_n)
}

/// Reconstruction error and codebook usage of the trained tokenizer on each split, written
/// to `report.json`, with a grid of held-out originals over their reconstructions.
fn report(run: &RunDir, data: &Dataset) -> Result<ExitCode> {
    let ck = run.load()?.context("no checkpoint to report on")?;
    let config = ModelConfig::from_json(&ck.config_json)?;
    let device = Device::flex();
    let file = WeightFile::parse(&ck.bytes)?;
    let mut src = ParamSource::load(&file, "vae.", &device);
    let vae = Vqvae::new(&mut src, &config)?;
    src.finish()?;
    let mut reports = Vec::new();
    for (name, split) in [("train", Split::Train), ("held_out", Split::HeldOut)] {
        let indices = data.indices(split);
        let mut usage = CodeUsage::new(config.vocab_size);
        let (mut l1, mut mse) = (0.0f64, 0.0f64);
        for chunk in indices.chunks(64) {
            let img_b3hw = data.images(chunk, &device);
            let f_bchw = vae.img_to_f(img_b3hw.clone())?;
            let (idx_bl, f_hats) = vae.quantize.encode(f_bchw);
            for idx in idx_bl {
                usage.record(&idx.into_data().iter::<i64>().collect::<Vec<_>>());
            }
            let f_hat = f_hats.last().context("no scales")?.clone();
            let diff = (vae.fhat_to_img(f_hat) - img_b3hw) * 0.5;
            l1 += pollster::block_on(read_f32(diff.clone().abs().sum()))?[0] as f64;
            mse += pollster::block_on(read_f32(diff.square().sum()))?[0] as f64;
        }
        let n = (indices.len() * 3 * data.size * data.size) as f64;
        let (l1, mse) = (l1 / n, mse / n);
        reports.push((
            name,
            SplitReport {
                images: indices.len(),
                l1,
                mse,
                psnr_db: -10.0 * mse.log10(),
                codebook_used: usage.used_fraction(),
                perplexity: usage.perplexity(),
            },
        ));
    }
    for (name, r) in &reports {
        println!(
            "{name:>9}: {} images, L1 {:.4}, MSE {:.5}, PSNR {:.2} dB (pixels in [0,1]); codebook used {:.1}%, perplexity {:.0}",
            r.images,
            r.l1,
            r.mse,
            r.psnr_db,
            100.0 * r.codebook_used,
            r.perplexity
        );
    }
    let json: serde_json::Map<String, serde_json::Value> = reports
        .iter()
        .map(|(n, r)| Ok((n.to_string(), serde_json::to_value(r)?)))
        .collect::<Result<_>>()?;
    std::fs::write(
        run.path("report.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    let shown: Vec<usize> = data.indices(Split::HeldOut).into_iter().take(16).collect();
    let img_b3hw = data.images(&shown, &device);
    let recon = vae
        .img_to_recon(img_b3hw.clone())?
        .pop()
        .context("no scales")?;
    let mut tiles = pollster::block_on(images_of((img_b3hw + 1.0) * 0.5))?;
    tiles.extend(pollster::block_on(images_of((recon + 1.0) * 0.5))?);
    write_grid(&run.path("recon.png"), &tiles, shown.len(), 3)?;
    println!("wrote {}", run.path("report.json").display());
    Ok(ExitCode::SUCCESS)
}
