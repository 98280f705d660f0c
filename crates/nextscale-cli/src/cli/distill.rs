//! `nextscale distill`: trains the Distilled-Decoding student on the pairs of
//! `nextscale distill-data`. The student starts from the teacher (`init_with_teacher`) and
//! learns, at each step of its `t_list`, to map the kept scales plus the pair's noise to
//! the teacher's tokens: cross-entropy below `loss_split_t`, MSE in Cvae space from it on
//! (weighted by the inverse code variance, so both terms start near the same size).
//! Resumable, with loss curves and periodic one- and two-step sample grids; then exports
//! the model file with teacher and student. `--init-student` starts instead from the
//! student of a model file, to go on training an exported student on new pairs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor, TensorData};
use clap::Args;
use nextscale::ModelConfig;
use nextscale::config::DdConfig;
use nextscale::dd::DdModel;
use nextscale::model::Model;
use nextscale::pipeline::Mode;
use nextscale::train::distill::{DistillPairs, dd_loss, init_with_teacher, mse_weight};
use nextscale::train::{LrSchedule, StateDict, state_dict};
use nextscale::weights::{DD_PREFIX, VAE_PREFIX, VAR_PREFIX, WeightFile};
use rand::Rng;

use super::convert::{host_model, merged_model_bytes};
use super::grid::sample_grid;
use super::train::{
    Init, LossLog, Resumed, RunArgs, RunDir, TrainState, read_state, record_step, step_rng,
    transformer_optimizer,
};
use super::{DEFAULT_MODEL, load, progress};

/// Options of `nextscale distill`.
#[derive(Args, Debug)]
pub struct DistillArgs {
    /// The teacher's model file (its `var.` and `vae.` tensors are used).
    #[arg(long, default_value = DEFAULT_MODEL)]
    teacher: PathBuf,
    /// Pairs file (from `nextscale distill-data`).
    #[arg(long, default_value = "data/distill.safetensors")]
    data: PathBuf,
    /// Run directory: checkpoint, loss log, sample grids (resumes from its checkpoint).
    #[arg(long, default_value = "runs/dd")]
    out: PathBuf,
    /// Optimizer steps.
    #[arg(long, value_parser = super::positive, default_value_t = 1500)]
    steps: usize,
    /// Pairs per step.
    #[arg(long, value_parser = super::positive, default_value_t = 32)]
    batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 5e-4)]
    lr: f64,
    /// Scales before this index are learnt as tokens (cross-entropy), the rest as vectors.
    #[arg(long, default_value_t = 3)]
    loss_split_t: usize,
    /// The student's steps, comma-separated; the first must be 0.
    #[arg(long, default_value = "0,3", value_delimiter = ',')]
    t_list: Vec<usize>,
    /// Start the student from this model file's student (same --loss-split-t and
    /// --t-list) instead of from the teacher; a run that resumes keeps its checkpoint.
    #[arg(long)]
    init_student: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

/// Runs `nextscale distill`.
pub fn run(args: DistillArgs) -> Result<ExitCode> {
    let teacher_bytes = load::read(&args.teacher)?;
    let teacher_file = WeightFile::parse(&teacher_bytes)?;
    let mut config = load::file_config(&teacher_file, &args.teacher)?;
    config.dd = Some(DdConfig {
        loss_split_t: args.loss_split_t,
        t_list: args.t_list.clone(),
    });
    config.validate()?;
    let vae_state = read_state(&teacher_bytes, VAE_PREFIX)?;
    let var_state = read_state(&teacher_bytes, VAR_PREFIX)?;
    if var_state.is_empty() {
        bail!(
            "{} has no VAR teacher (`var.` tensors)",
            args.teacher.display()
        );
    }
    let pairs = DistillPairs::from_bytes(&load::read(&args.data)?)
        .with_context(|| format!("loading {}", args.data.display()))?;
    if pairs.seq_len != config.seq_len() || pairs.cvae != config.cvae || pairs.is_empty() {
        bail!(
            "{} holds {} pairs of {}×{}; the teacher needs {}×{}",
            args.data.display(),
            pairs.len(),
            pairs.seq_len,
            pairs.cvae,
            config.seq_len(),
            config.cvae
        );
    }

    let device = Device::flex().autodiff();
    let (codebook_shape, codebook) = vae_state
        .get("vae.quantize.embedding.weight")
        .context("the teacher file has no codebook")?;
    let codebook_vc = Tensor::<2>::from_data(
        TensorData::new(codebook.clone(), [codebook_shape[0], codebook_shape[1]]),
        &device,
    );
    let weight = mse_weight(codebook, config.cvae);
    let run = RunDir::create(&args.out)?;
    let checkpoint = if args.run.fresh { None } else { run.load()? };
    let loss_split_t = args.loss_split_t;
    if let Some(ck) = &checkpoint
        && ModelConfig::from_json(&ck.config_json)?.dd != config.dd
    {
        bail!(
            "{} was trained with other --loss-split-t/--t-list; pass them again or --fresh",
            args.out.display()
        );
    }
    let init = match (&checkpoint, &args.init_student) {
        (Some(_), _) => StateDict::new(),
        (None, Some(path)) => exported_student(path, &config)?,
        (None, None) => init_with_teacher(&config, &var_state, args.run.seed)?,
    };
    let Resumed {
        module: mut student,
        names,
        step: start,
        mut optim,
    } = run.resume_or(
        checkpoint.as_ref(),
        Init::From(&init),
        DD_PREFIX,
        &device,
        transformer_optimizer(),
        |src| DdModel::new(src, &config, loss_split_t),
    )?;
    let schedule = LrSchedule::warmup_cosine(args.lr, 0.02, args.steps);
    let mut log = LossLog::open(&run, &["loss", "ce", "accuracy", "mse"], start)?;
    let bar = progress::bar(args.steps as u64, "distill");
    bar.set_position(start as u64);
    let save = |student: &DdModel, step: usize, optim: &ModuleOptimizer| -> Result<()> {
        let state = TrainState {
            step,
            param_ids: names.ids(),
        };
        run.save(
            &state_dict(student, &names)?,
            &config.to_json(),
            &state,
            optim,
        )
    };
    for step in start..args.steps {
        let mut rng = step_rng(args.run.seed, step);
        let idx: Vec<usize> = (0..args.batch)
            .map(|_| rng.random_range(0..pairs.len()))
            .collect();
        let t = args.t_list[step % args.t_list.len()];
        let (noise_blc, tokens_bl, labels_b) = pairs.batch(&idx, &device);
        let loss = dd_loss(
            &student,
            codebook_vc.clone(),
            labels_b,
            noise_blc,
            tokens_bl,
            t,
            weight,
        )
        .with_context(|| format!("step {step}; lower --lr and resume"))?;
        let row = vec![
            loss.loss.clone().into_scalar::<f32>() as f64,
            loss.ce as f64,
            loss.accuracy as f64,
            loss.mse as f64,
        ];
        let grads = GradientsParams::from_grads(loss.loss.backward(), &student);
        student = optim.step(schedule.at(step), student, grads);
        let message = format!("t {t} ce {:.3} acc {:.3} mse {:.4}", row[1], row[2], row[3]);
        record_step(&bar, &mut log, step, message, row);
        let done = step + 1;
        if args.run.checkpoint_due(done, args.steps) {
            save(&student, done, &optim)?;
            log.write()?;
        }
        if args.run.samples_due(done, args.steps) {
            let student_state = state_dict(&student, &names)?;
            let model = host_model(&config, &[&vae_state, &var_state, &student_state])?;
            for (mode, tag) in [(Mode::Dd1, "dd1"), (Mode::Dd2, "dd2")] {
                if mode.dd_steps() > args.t_list.len() {
                    continue;
                }
                let grid = run.path(&format!("samples_{tag}_{done:06}.png"));
                sample_grid(&model, &grid, 8, mode)?;
                progress::note(&bar, format!("step {done}: wrote {}", grid.display()));
            }
        }
    }
    bar.finish();
    if let Some(path) = &args.run.export {
        let ck = run.load()?.context("no checkpoint to export")?;
        let dd_state = read_state(&ck.bytes, DD_PREFIX)?;
        let bytes = merged_model_bytes(
            &config,
            &[&vae_state, &var_state, &dd_state],
            args.run.dtype,
        )?;
        Model::from_safetensors(&bytes, &Device::flex())?;
        write(path, &bytes)?;
        println!(
            "wrote {} ({:.2} MB, {:?})",
            path.display(),
            bytes.len() as f64 / 1e6,
            args.run.dtype
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The `dd.` tensors of an exported model file whose student has `config`'s settings.
fn exported_student(path: &Path, config: &ModelConfig) -> Result<StateDict> {
    let bytes = load::read(path)?;
    let file = WeightFile::parse(&bytes)?;
    let Some(dd) = load::file_config(&file, path)?.dd else {
        bail!("{} has no Distilled-Decoding student", path.display());
    };
    if Some(&dd) != config.dd.as_ref() {
        bail!(
            "the student of {} has loss_split_t {} and t_list {:?}; pass them as \
             --loss-split-t and --t-list",
            path.display(),
            dd.loss_split_t,
            dd.t_list
        );
    }
    read_state(&bytes, DD_PREFIX)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
