//! `nextscale bench`: per-scale and total generation time, transformer against decoder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use nextscale::model::Model;
use nextscale::pipeline::{Event, GenerateRequest, Generation, Mode, PreviewMode, Timings};
use serde::Serialize;

use super::{Backend, SamplingArgs, load, progress};

/// Options of `nextscale bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Model file (.safetensors) or fixture directory.
    #[arg(long, conflicts_with = "random")]
    model: Option<PathBuf>,
    /// Official architecture with random weights: d16, d20, d24 or d30 (VAR), or hmar-d16 …
    /// hmar-d30.
    #[arg(long)]
    random: Option<String>,
    /// Timed runs.
    #[arg(long, value_parser = super::positive, default_value_t = 3)]
    runs: usize,
    /// Untimed warm-up runs.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Images per run.
    #[arg(long, value_parser = super::batch_size, default_value_t = 1)]
    batch: usize,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Device.
    #[arg(long, value_enum, default_value_t = Backend::Flex)]
    backend: Backend,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Report {
    model: String,
    backend: String,
    mode: String,
    batch: usize,
    runs: usize,
    /// Median per scale (transformer + sampling + f_hat update), ms; per network pass in the
    /// one/two-step modes.
    scale_ms: Vec<f64>,
    /// Median of the summed scales, ms.
    transformer_ms: f64,
    /// Median final decode, ms.
    decode_ms: f64,
    /// Median total, ms.
    total_ms: f64,
    /// Every run's total, ms.
    totals_ms: Vec<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `nextscale bench`.
pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let device = load::device(args.backend);
    let (model, name) = match (&args.model, &args.random) {
        (Some(path), None) => (load::model(path, &device)?, path.display().to_string()),
        (None, Some(size)) => {
            let (config, name) = super::init::official_config(size)?;
            eprintln!("building {name} with random weights …");
            (Model::random(config, 0, &device)?, format!("random {size}"))
        }
        _ => bail!("give --model PATH or --random [hmar-]dNN"),
    };
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    let sampling = args.sampling.resolve(&model.config)?;
    let request = GenerateRequest {
        labels: (0..args.batch)
            .map(|i| Some(i % model.config.num_classes))
            .collect(),
        preview: PreviewMode::None,
        mode: args.sampling.mode(),
        ..GenerateRequest::new(None, 1, 0).with_sampling(sampling)
    };
    let bar = progress::bar((args.warmup + args.runs) as u64, "benchmark");
    let mut timings: Vec<Timings> = Vec::new();
    for run in 0..args.warmup + args.runs {
        let generation = Generation::new(&model, request.clone())?;
        let Event::Done { timings: t, .. } = pollster::block_on(generation.run_to_end())? else {
            bail!("generation ended without a final image");
        };
        if run >= args.warmup {
            timings.push(t);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let scales = timings.first().map_or(0, |t| t.scale_ms.len());
    let mode = args.sampling.mode();
    let report = Report {
        model: name,
        backend: format!("{:?}", args.backend).to_lowercase(),
        mode: format!("{mode:?}").to_lowercase(),
        batch: args.batch,
        runs: args.runs,
        scale_ms: (0..scales)
            .map(|si| median(timings.iter().map(|t| t.scale_ms[si]).collect()))
            .collect(),
        transformer_ms: median(timings.iter().map(|t| t.scale_ms.iter().sum()).collect()),
        decode_ms: median(timings.iter().map(|t| t.decode_ms).collect()),
        total_ms: median(timings.iter().map(|t| t.total_ms).collect()),
        totals_ms: timings.iter().map(|t| t.total_ms).collect(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} on {}, mode {} — batch {}, cfg {}, top-k {}, top-p {}, median of {} runs after {} warm-up",
            report.model,
            report.backend,
            report.mode,
            args.batch,
            sampling.cfg,
            sampling.top_k,
            sampling.top_p,
            args.runs,
            args.warmup
        );
        for (si, ms) in report.scale_ms.iter().enumerate() {
            match (mode, model.config.patch_nums.get(si)) {
                (Mode::Var, Some(pn)) => {
                    println!("  scale {:>2} ({pn:>2}×{pn:<2}) {ms:>9.1} ms", si + 1)
                }
                _ => println!("  pass {:>2}             {ms:>9.1} ms", si + 1),
            }
        }
        let total = report.total_ms;
        println!(
            "  transformer+sampling {:>9.1} ms ({:.0}%)",
            report.transformer_ms,
            100.0 * report.transformer_ms / total
        );
        println!(
            "  decoder              {:>9.1} ms ({:.0}%)",
            report.decode_ms,
            100.0 * report.decode_ms / total
        );
        println!("  total                {total:>9.1} ms");
    }
    Ok(ExitCode::SUCCESS)
}
