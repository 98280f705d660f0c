//! `nextscale train-hmar`: trains an HMAR model on the tokens of a trained VQ-VAE in the
//! official two stages — the next-scale stage (teacher forcing under the block-diagonal
//! mask, cross-entropy on every token), then the masked fine-tune (the refinement stack
//! starts as a copy of the next-scale stack; only `mask_embed`, the mask blocks and the mask
//! head train, on positions masked at a ratio drawn every step) — each resumable, with
//! sample grids; then exports the model file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use nextscale::ModelConfig;
use nextscale::config::HmarConfig;
use nextscale::hmar::Hmar;
use nextscale::pipeline::Mode;
use nextscale::train::hmar::{
    draw_mask_idx, next_scale_loss, refine_loss, refinement_from_next_scale,
};
use nextscale::train::{StateDict, state_dict};
use nextscale::weights::{HMAR_PREFIX, ParamSource};
use rand::Rng;

use super::convert::host_model;
use super::grid::sample_grid;
use super::train::{Init, RunArgs, RunDir, TeacherStage, read_state, transformer_optimizer};
use super::train_var::{TeacherArgs, TeacherData};

/// Options of `nextscale train-hmar`.
#[derive(Args, Debug)]
pub struct TrainHmarArgs {
    #[command(flatten)]
    teacher: TeacherArgs,
    /// Run directory: `ns/` and `mask/`, each with its checkpoint, loss log and sample grids
    /// (each stage resumes from its checkpoint).
    #[arg(long, default_value = "runs/hmar")]
    out: PathBuf,
    /// Next-scale and mask blocks (the rest of the depth are base blocks shared by both
    /// passes); default half the depth (the released models use 8 of 16–30).
    #[arg(long, value_parser = super::positive)]
    n_layers_train: Option<usize>,
    /// Optimizer steps of the next-scale stage.
    #[arg(long, value_parser = super::positive, default_value_t = 1500)]
    steps: usize,
    /// Optimizer steps of the masked fine-tune.
    #[arg(long, value_parser = super::positive, default_value_t = 500)]
    mask_steps: usize,
    /// Peak learning rate of the next-scale stage.
    #[arg(long, default_value_t = 6e-4)]
    lr: f64,
    /// Peak learning rate of the masked fine-tune.
    #[arg(long, default_value_t = 3e-4)]
    mask_lr: f64,
    #[command(flatten)]
    run: RunArgs,
}

/// Runs `nextscale train-hmar`.
pub fn run(args: TrainHmarArgs) -> Result<ExitCode> {
    let TeacherData {
        data,
        tokenizer,
        tokens,
        sampler,
    } = TeacherData::load(&args.teacher)?;
    let config = hmar_config(&tokenizer.config, args.n_layers_train)?;
    let device = Device::flex().autodiff();
    let stage = |run, names, steps, lr, name| TeacherStage {
        run,
        args: &args.run,
        data: &data,
        sampler: &sampler,
        names,
        config_json: config.to_json(),
        device: &device,
        steps,
        batch: args.teacher.batch,
        lr,
        label_drop: args.teacher.label_drop,
        null: config.cond_classes() as i64,
        name,
    };
    // The next-scale stage's grids show its own samples: no refinement pass.
    let mut ns_config = config.clone();
    if let Some(hmar) = &mut ns_config.hmar {
        hmar.mask_schedule = config.patch_nums.iter().map(|&pn| vec![pn * pn]).collect();
    }
    let grid = |config: &ModelConfig, state: StateDict, path: &std::path::Path| {
        let model = host_model(config, &[&tokenizer.state, &state])?;
        sample_grid(&model, path, 8, Mode::Var)
    };

    let ns_run = RunDir::create(&args.out.join("ns"))?;
    let mask_run = RunDir::create(&args.out.join("mask"))?;
    let mask_checkpoint = if args.run.fresh {
        None
    } else {
        mask_run.load()?
    };
    let build = |src: &mut ParamSource| Hmar::new(src, &config);
    if mask_checkpoint.is_none() {
        let checkpoint = if args.run.fresh { None } else { ns_run.load()? };
        let ns = ns_run.resume_or(
            checkpoint.as_ref(),
            Init::Random(args.run.seed),
            HMAR_PREFIX,
            &device,
            transformer_optimizer(),
            build,
        )?;
        stage(&ns_run, ns.names.clone(), args.steps, args.lr, "hmar ns").run(
            ns.module,
            ns.optim,
            ns.step,
            |hmar, idx, labels_b, _| {
                let (x_blcv, target_bl) = tokens.batch(idx, &device);
                next_scale_loss(hmar, labels_b, x_blcv, target_bl)
            },
            |hmar, path| grid(&ns_config, state_dict(hmar, &ns.names)?, path),
        )?;
    }

    // The fine-tune starts from the next-scale stage's last checkpoint.
    let mut start_state = StateDict::new();
    if mask_checkpoint.is_none() {
        let ck = ns_run
            .load()?
            .context("the next-scale stage left no checkpoint")?;
        start_state = read_state(&ck.bytes, HMAR_PREFIX)?;
        refinement_from_next_scale(&mut start_state, HMAR_PREFIX);
    }
    let mask = mask_run.resume_or(
        mask_checkpoint.as_ref(),
        Init::From(&start_state),
        HMAR_PREFIX,
        &device,
        transformer_optimizer(),
        build,
    )?;
    let patch_nums = config.patch_nums.clone();
    stage(
        &mask_run,
        mask.names.clone(),
        args.mask_steps,
        args.mask_lr,
        "hmar mask",
    )
    .run(
        mask.module.train_refinement_only(),
        mask.optim,
        mask.step,
        |hmar, idx, labels_b, rng| {
            let (x_blcv, target_bl) = tokens.batch(idx, &device);
            let h_blcv = tokens.mask_batch(idx, &device);
            let mask_idx = draw_mask_idx(&patch_nums, rng.random::<f64>(), rng);
            refine_loss(hmar, labels_b, x_blcv, h_blcv, &mask_idx, target_bl)
        },
        |hmar, path| grid(&config, state_dict(hmar, &mask.names)?, path),
    )?;

    if let Some(path) = &args.run.export {
        tokenizer.export(&config, &data, &mask_run, HMAR_PREFIX, path, args.run.dtype)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The HMAR model of the tokenizer's config: the same depth, width and heads, with
/// `n_layers_train` next-scale and mask blocks (default half the depth) and the official
/// default mask schedule; no student, and no recommended sampling yet (`tune-sampling`).
fn hmar_config(tokenizer: &ModelConfig, n_layers_train: Option<usize>) -> Result<ModelConfig> {
    let mut config = tokenizer.clone();
    let n_layers_train = n_layers_train.unwrap_or(config.depth / 2).max(1);
    if n_layers_train > config.depth {
        bail!(
            "--n-layers-train {n_layers_train} exceeds the depth {}",
            config.depth
        );
    }
    config.hmar = Some(HmarConfig {
        n_layers_train,
        mask_schedule: HmarConfig::official_mask_schedule(&config.patch_nums),
    });
    config.validate()?;
    Ok(config)
}
