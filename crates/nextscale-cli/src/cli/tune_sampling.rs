//! `nextscale tune-sampling`: scores a grid of sampling settings (cfg × top-k × top-p) with
//! the evaluator and can store the one with the lowest FD in the model file, where every
//! request that leaves those settings unset picks it up (CLI, npm package and demo page).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use nextscale::config::CONFIG_METADATA_KEY;
use nextscale::pipeline::Mode;
use nextscale::{Model, ModelConfig, Sampling};
use safetensors::SafeTensors;

use super::eval::{EvalReport, Reference, ScoringArgs};
use super::load;

/// Options of `nextscale tune-sampling`.
#[derive(Args, Debug)]
pub struct TuneSamplingArgs {
    #[command(flatten)]
    scoring: ScoringArgs,
    /// Guidance strengths to try.
    #[arg(long, value_delimiter = ',', default_values_t = [1.5, 3.0, 4.0])]
    cfg: Vec<f64>,
    /// top-k values to try, each at most V (0: all) [default: 900, capped at V].
    #[arg(long, value_delimiter = ',')]
    top_k: Vec<usize>,
    /// top-p values to try (0: off).
    #[arg(long, value_delimiter = ',', default_values_t = [0.96, 0.8, 0.6, 0.5])]
    top_p: Vec<f64>,
    /// Seed of the first sample of each class; away from `eval`'s default, so that `eval`
    /// then scores the chosen setting on samples it was not chosen on.
    #[arg(long, default_value_t = 2_000_000)]
    seed: u64,
    /// Store the setting with the lowest FD in the model file as its default sampling.
    #[arg(long)]
    write: bool,
    /// Also write every setting's report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// Runs `nextscale tune-sampling`.
pub fn run(args: TuneSamplingArgs) -> Result<ExitCode> {
    let scoring = &args.scoring;
    let device = Device::flex();
    let model = load::model(&scoring.model, &device)?;
    let config = &model.config;
    let top_ks = if args.top_k.is_empty() {
        vec![Sampling::OFFICIAL.top_k.min(config.vocab_size)]
    } else {
        args.top_k
            .iter()
            .map(|&k| config.check_top_k(k))
            .collect::<nextscale::Result<_>>()?
    };
    let mut grid = Vec::new();
    for &cfg in &args.cfg {
        for &top_k in &top_ks {
            for &top_p in &args.top_p {
                grid.push(Sampling { cfg, top_k, top_p });
            }
        }
    }
    if grid.is_empty() {
        bail!("the grid is empty: give at least one --cfg, --top-k and --top-p");
    }
    if let Some(problem) = grid.iter().find_map(Sampling::problem) {
        bail!("bad grid point: {problem}");
    }
    let name = scoring.model.display().to_string();
    // The file to rewrite, read and checked before the grid runs.
    let bytes = if args.write {
        let not_a_file = || format!("--write needs a .safetensors model file, not {name}");
        if !scoring.model.is_file() {
            bail!(not_a_file());
        }
        let bytes = load::read(&scoring.model)?;
        if SafeTensors::read_metadata(&bytes).is_err() {
            bail!(not_a_file());
        }
        Some(bytes)
    } else {
        None
    };
    let reference = Reference::load(&scoring.data, &scoring.classifier, &device)?;

    let mut reports: Vec<EvalReport> = Vec::with_capacity(grid.len());
    println!("| cfg | top-k | top-p | FD | KID ×10³ | cond. acc | precision | recall |");
    println!("|---|---|---|---|---|---|---|---|");
    for sampling in grid {
        let r = reference.score(
            &model,
            &name,
            sampling,
            Mode::Var,
            scoring.per_class,
            args.seed,
            scoring.batch,
        )?;
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {:.3} | {:.2} | {:.2} |",
            sampling.cfg,
            sampling.top_k,
            sampling.top_p,
            r.fd,
            r.kid * 1e3,
            r.conditional_accuracy,
            r.precision,
            r.recall
        );
        reports.push(r);
    }
    let best = reports
        .iter()
        .min_by(|a, b| a.fd.total_cmp(&b.fd))
        .expect("the grid is not empty");
    let s = best.sampling;
    println!(
        "lowest FD {:.1} (real-vs-real floor {:.1}) at cfg {}, top-k {}, top-p {}",
        best.fd, best.fd_real_floor, s.cfg, s.top_k, s.top_p
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&reports)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(bytes) = bytes {
        let out = with_default_sampling(&bytes, s)?;
        // Load what will be written before replacing the file.
        Model::from_safetensors(&out, &device).context("checking the rewritten model")?;
        let tmp = scoring.model.with_extension("safetensors.tmp");
        std::fs::write(&tmp, &out).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &scoring.model)
            .with_context(|| format!("replacing {}", scoring.model.display()))?;
        println!("stored it as the default sampling of {name}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The model file `bytes` with `sampling` as its config's default sampling; tensors and
/// other metadata unchanged.
fn with_default_sampling(bytes: &[u8], sampling: Sampling) -> Result<Vec<u8>> {
    let (_, header) = SafeTensors::read_metadata(bytes)?;
    let mut metadata: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
    let json = metadata
        .get(CONFIG_METADATA_KEY)
        .with_context(|| format!("the model file has no {CONFIG_METADATA_KEY} metadata"))?;
    let mut config = ModelConfig::from_json(json)?;
    config.sampling = Some(sampling);
    metadata.insert(CONFIG_METADATA_KEY.to_string(), config.to_json());
    let tensors = SafeTensors::deserialize(bytes)?;
    Ok(safetensors::serialize(tensors.tensors(), Some(metadata))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_sampling_becomes_the_default_and_tensors_stay_identical() {
        let device = Device::flex();
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../web/public/models/emoji32.safetensors"
        );
        let bytes = std::fs::read(path).unwrap();
        let sampling = Sampling {
            cfg: 4.0,
            top_k: 50,
            top_p: 0.5,
        };
        let out = with_default_sampling(&bytes, sampling).unwrap();
        let reloaded = Model::from_safetensors(&out, &device).unwrap();
        assert_eq!(reloaded.config.default_sampling(), sampling);
        let (a, b) = (
            SafeTensors::deserialize(&bytes).unwrap(),
            SafeTensors::deserialize(&out).unwrap(),
        );
        let mut names = a.names();
        names.sort();
        assert_eq!(names.len(), b.names().len());
        for name in names {
            let (ta, tb) = (a.tensor(name).unwrap(), b.tensor(name).unwrap());
            assert_eq!(
                (ta.dtype(), ta.shape(), ta.data()),
                (tb.dtype(), tb.shape(), tb.data())
            );
        }
    }
}
