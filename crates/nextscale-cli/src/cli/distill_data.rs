//! `nextscale distill-data`: runs the VAR teacher with the flow map Ψ instead of
//! multinomial sampling and stores (noise, tokens, class) pairs, the training set of
//! `nextscale distill`. Pair i is class `i mod K` with the noise of seed `seed + i`; a
//! partial file is extended, so the command resumes.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use nextscale::Sampling;
use nextscale::pipeline::{Event, GenerateRequest, Generation, PreviewMode};
use nextscale::sampler::SamplingOptions;
use nextscale::train::distill::{DistillInfo, DistillPairs};

use super::{DEFAULT_MODEL, load, progress};

/// Options of `nextscale distill-data`.
#[derive(Args, Debug)]
pub struct DistillDataArgs {
    /// The teacher's model file.
    #[arg(long, default_value = DEFAULT_MODEL)]
    model: PathBuf,
    /// Pairs file (extended if it exists).
    #[arg(long, default_value = "data/distill.safetensors")]
    out: PathBuf,
    /// Pairs in total.
    #[arg(long, value_parser = super::positive, default_value_t = 8192)]
    count: usize,
    /// Noise seed of the first pair.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Classifier-free guidance strength of the teacher (default: the official VAR sampling,
    /// the one Distilled Decoding distils, not the file's recommendation).
    #[arg(long, default_value_t = Sampling::OFFICIAL.cfg)]
    cfg: f64,
    /// Top-k mask of the teacher's distributions (0: all).
    #[arg(long, default_value_t = Sampling::OFFICIAL.top_k)]
    top_k: usize,
    /// Top-p mask of the teacher's distributions (0: off).
    #[arg(long, default_value_t = Sampling::OFFICIAL.top_p)]
    top_p: f64,
    /// Draw with the sampling the teacher file recommends (`tune-sampling --write`), the
    /// one the page samples the teacher with, instead of --cfg, --top-k and --top-p.
    #[arg(long, conflicts_with_all = ["cfg", "top_k", "top_p"])]
    model_sampling: bool,
    /// Euler steps of Ψ.
    #[arg(long, default_value_t = 32)]
    flow_steps: usize,
    /// Sequences per teacher pass.
    #[arg(long, value_parser = super::batch_size, default_value_t = 32)]
    batch: usize,
    /// Pairs between saves.
    #[arg(long, default_value_t = 1024)]
    save_every: usize,
}

fn save(pairs: &DistillPairs, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, pairs.to_bytes()?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Runs `nextscale distill-data`.
pub fn run(args: DistillDataArgs) -> Result<ExitCode> {
    anyhow::ensure!(args.batch > 0, "--batch must be at least 1");
    let model = load::model(&args.model, &Device::flex())?;
    let config = &model.config;
    let sampling = if args.model_sampling {
        config.sampling.with_context(|| {
            format!(
                "{} recommends no sampling; run `nextscale tune-sampling --model {} --write` first",
                args.model.display(),
                args.model.display()
            )
        })?
    } else {
        Sampling {
            cfg: args.cfg,
            top_k: args.top_k,
            top_p: args.top_p,
        }
    };
    let mut teacher = config.clone();
    // The teacher's identity is its weights' config: not the student, the preview matrix or
    // a recommended sampling (this command takes its sampling from the options), so that
    // storing one later (`tune-sampling --write`) does not orphan a partial pairs file.
    teacher.dd = None;
    teacher.preview = None;
    teacher.sampling = None;
    let info = DistillInfo {
        cfg: sampling.cfg,
        top_k: sampling.top_k,
        top_p: sampling.top_p,
        flow_steps: args.flow_steps,
        seed: args.seed,
        teacher_config: teacher.to_json(),
    };
    let (l, cvae, k) = (config.seq_len(), config.cvae, config.num_classes);
    let mut pairs = if args.out.exists() {
        let pairs = DistillPairs::from_bytes(&load::read(&args.out)?)
            .with_context(|| format!("loading {}", args.out.display()))?;
        if pairs.info != info {
            bail!(
                "{} was made with other settings or another teacher; choose another --out",
                args.out.display()
            );
        }
        println!(
            "extending {} from {} pairs",
            args.out.display(),
            pairs.len()
        );
        pairs
    } else {
        DistillPairs::new(l, cvae, info)
    };
    let bar = progress::bar(args.count as u64, "distill-data");
    bar.set_position(pairs.len().min(args.count) as u64);
    let mut since_save = 0;
    while pairs.len() < args.count {
        let start = pairs.len();
        let n = args.batch.min(args.count - start);
        let seed = args.seed + start as u64;
        let request = GenerateRequest {
            labels: (start..start + n).map(|i| Some(i % k)).collect(),
            seed,
            cfg: sampling.cfg,
            sampling: SamplingOptions {
                top_k: sampling.top_k,
                top_p: sampling.top_p,
                more_smooth: false,
            },
            preview: PreviewMode::None,
            mode: nextscale::pipeline::Mode::Var,
            edit: None,
            mask_schedule: None,
            pass_events: false,
        };
        // The student learns under the rows the teacher ran under (subclasses, if any).
        let conditions = request.conditions(config)?;
        let mut generation =
            pollster::block_on(Generation::new(&model, request)?.with_flow(args.flow_steps))?;
        let mut tokens: Vec<Vec<u32>> = vec![Vec::with_capacity(l); n];
        while let Some(event) = pollster::block_on(generation.next_event())? {
            if let Event::Scale { tokens: scale, .. } = event {
                for (seq, part) in tokens.iter_mut().zip(scale) {
                    seq.extend(part);
                }
            }
        }
        let noise = generation
            .flow_noise()
            .context("the teacher ran without Ψ")?;
        for ((seq, noise), &row) in tokens.iter().zip(noise).zip(&conditions) {
            pairs.push(noise, seq, row as usize)?;
        }
        bar.inc(n as u64);
        progress::log_step(&bar);
        since_save += n;
        if since_save >= args.save_every || pairs.len() >= args.count {
            save(&pairs, &args.out)?;
            since_save = 0;
        }
    }
    bar.finish();
    println!("{} pairs in {}", pairs.len(), args.out.display());
    Ok(ExitCode::SUCCESS)
}
