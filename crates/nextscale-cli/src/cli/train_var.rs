//! `nextscale train-var`: trains the VAR teacher on the tokens of a trained VQ-VAE —
//! teacher forcing under the block-causal mask, cross-entropy, 10% class drop for
//! classifier-free guidance, AdamW with warm-up and cosine decay, gradient clipping —
//! resumable, with periodic sample grids; then exports the model file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::Args;
use nextscale::ModelConfig;
use nextscale::dataset::{BalancedSampler, Dataset, Split};
use nextscale::model::Model;
use nextscale::pipeline::Mode;
use nextscale::preview::fit_preview_from;
use nextscale::train::var::{TokenCache, var_loss};
use nextscale::train::{StateDict, state_dict};
use nextscale::var::Var;
use nextscale::vqvae::Vqvae;
use nextscale::weights::{ParamSource, VAE_PREFIX, VAR_PREFIX, WeightFile};

use super::convert::{StoreDtype, host_model, merged_model_bytes};
use super::grid::sample_grid;
use super::train::{Init, RunArgs, RunDir, TeacherStage, read_state, transformer_optimizer};
use super::{load, progress};

/// What the transformer trainers share: the data, the tokenizer and the batches.
#[derive(Args, Debug)]
pub struct TeacherArgs {
    /// Data set file (from `nextscale data`).
    #[arg(long, default_value = "data/emoji32.safetensors")]
    data: PathBuf,
    /// The tokenizer: a `train-vqvae` checkpoint, or a model file whose VQ-VAE to reuse.
    /// Its config gives the transformer's depth, width and heads.
    #[arg(long, default_value = "runs/vqvae/checkpoint.safetensors")]
    vqvae: PathBuf,
    /// Sequences per step (class-balanced).
    #[arg(long, value_parser = super::positive, default_value_t = 32)]
    pub batch: usize,
    /// Share of labels replaced by the null class (for classifier-free guidance).
    #[arg(long, default_value_t = 0.1)]
    pub label_drop: f64,
}

/// The data a transformer trains on: the data set, the tokenizer, every image's tokens and
/// the class-balanced sampler of the training split.
pub struct TeacherData {
    /// The data set.
    pub data: Dataset,
    /// The trained VQ-VAE.
    pub tokenizer: Tokenizer,
    /// Every image's tokens and teacher-forcing inputs, by data-set index.
    pub tokens: TokenCache,
    /// Draws training images, every class equally often.
    pub sampler: BalancedSampler,
}

impl TeacherData {
    /// Loads the data set and the tokenizer, and tokenizes every image.
    pub fn load(args: &TeacherArgs) -> Result<Self> {
        let data = Dataset::from_bytes(&load::read(&args.data)?)
            .with_context(|| format!("loading {}", args.data.display()))?;
        let tokenizer = Tokenizer::load(&args.vqvae)?;
        let tokens = tokenizer.tokenize(&data)?;
        let sampler = BalancedSampler::new(&data, &data.indices(Split::Train))?;
        Ok(Self {
            data,
            tokenizer,
            tokens,
            sampler,
        })
    }
}

/// Options of `nextscale train-var`.
#[derive(Args, Debug)]
pub struct TrainVarArgs {
    #[command(flatten)]
    teacher: TeacherArgs,
    /// Run directory: checkpoint, loss log, sample grids (resumes from its checkpoint).
    #[arg(long, default_value = "runs/var")]
    out: PathBuf,
    /// Optimizer steps.
    #[arg(long, value_parser = super::positive, default_value_t = 1500)]
    steps: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 6e-4)]
    lr: f64,
    /// Trains each style of the data set under classes of its own (in a `nextscale data
    /// --twitter` set, the images named `twitter:…`) and exports the first style's: the
    /// styles share the network, while the model keeps the data set's classes in the first
    /// style.
    #[arg(long, conflicts_with = "subclasses")]
    style_classes: bool,
    /// Conditions the transformer on the data set's subclasses (the emoji subcategories)
    /// instead of its classes: the model file keeps the classes, and draws each image of
    /// a class under one of its subclasses, as often as the class's training images are.
    #[arg(long)]
    subclasses: bool,
    #[command(flatten)]
    run: RunArgs,
}

/// Runs `nextscale train-var`.
pub fn run(args: TrainVarArgs) -> Result<ExitCode> {
    let TeacherData {
        data,
        tokenizer,
        tokens,
        sampler,
    } = TeacherData::load(&args.teacher)?;
    let mut config = tokenizer.config.clone();
    let (data, sampler) = if args.style_classes {
        let (data, styles) = data.by_style();
        println!("{styles} styles, {} classes", data.num_classes());
        config.num_classes *= styles;
        config.class_names = data.info.class_names.clone();
        let sampler = BalancedSampler::new(&data, &data.indices(Split::Train))?;
        (data, sampler)
    } else if args.subclasses {
        // Batches stay balanced over the classes; each image's label is its subclass.
        let (by_subclass, subclasses) = data.by_subclass()?;
        println!("{} subclasses", subclasses.len());
        config.subclasses = subclasses;
        config.validate()?;
        (by_subclass, sampler)
    } else {
        (data, sampler)
    };

    let device = Device::flex().autodiff();
    let run = RunDir::create(&args.out)?;
    let checkpoint = if args.run.fresh { None } else { run.load()? };
    let resumed = run.resume_or(
        checkpoint.as_ref(),
        Init::Random(args.run.seed),
        VAR_PREFIX,
        &device,
        transformer_optimizer(),
        |src| Var::new(src, &config),
    )?;
    let stage = TeacherStage {
        run: &run,
        args: &args.run,
        data: &data,
        sampler: &sampler,
        names: resumed.names.clone(),
        config_json: config.to_json(),
        device: &device,
        steps: args.steps,
        batch: args.teacher.batch,
        lr: args.lr,
        label_drop: args.teacher.label_drop,
        null: config.cond_classes() as i64,
        name: "var",
    };
    stage.run(
        resumed.module,
        resumed.optim,
        resumed.step,
        |var, idx, labels_b, _| {
            let (x_blcv, target_bl) = tokens.batch(idx, &device);
            var_loss(var, labels_b, x_blcv, target_bl)
        },
        |var, grid| {
            let state = state_dict(var, &resumed.names)?;
            let model = host_model(&config, &[&tokenizer.state, &state])?;
            sample_grid(&model, grid, 8, Mode::Var)
        },
    )?;
    if let Some(path) = &args.run.export {
        // The classes of the tokenizer's data set, with the subclasses if trained on them.
        let export_config = ModelConfig {
            subclasses: config.subclasses.clone(),
            ..tokenizer.config.clone()
        };
        tokenizer.export(
            &export_config,
            &data,
            &run,
            VAR_PREFIX,
            path,
            args.run.dtype,
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The trained VQ-VAE the transformers learn on: its config, tensors and network.
pub struct Tokenizer {
    /// The checkpoint's config (the transformer's architecture too).
    pub config: ModelConfig,
    /// The `vae.*` tensors.
    pub state: StateDict,
    /// The network, on the host device.
    pub vae: Vqvae,
}

impl Tokenizer {
    /// Reads a `train-vqvae` checkpoint, or any model file with a VQ-VAE and its config; of a
    /// model file's config it keeps the architecture, not what belongs to that file's own
    /// transformer (a student, an HMAR split, tuned sampling, a preview matrix).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = load::read(path)?;
        let file = WeightFile::parse(&bytes)?;
        let mut config = load::file_config(&file, path)?;
        config.dd = None;
        config.hmar = None;
        config.sampling = None;
        config.preview = None;
        config.subclasses = Vec::new();
        let state = read_state(&bytes, VAE_PREFIX)?;
        let mut src = ParamSource::load(&file, VAE_PREFIX, &Device::flex());
        let vae = Vqvae::new(&mut src, &config)?;
        src.finish()?;
        Ok(Self { config, state, vae })
    }

    /// Tokenizes every image of `data` once, so cache rows are data-set indices.
    pub fn tokenize(&self, data: &Dataset) -> Result<TokenCache> {
        let host = Device::flex();
        let all: Vec<usize> = (0..data.len()).collect();
        let bar = progress::bar(all.len() as u64, "tokenize");
        let mut tokens: Option<TokenCache> = None;
        for chunk in all.chunks(128) {
            let part = pollster::block_on(TokenCache::build(&self.vae, data.images(chunk, &host)))?;
            match &mut tokens {
                Some(t) => t.extend(part),
                None => tokens = Some(part),
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        tokens.context("no images")
    }

    /// Writes the model file: the tokenizer's tensors and the transformer's (under
    /// `prefix`) from `run`'s last checkpoint, `config` (with class names and attribution),
    /// and a fast-preview matrix fitted on f_hat of training images.
    pub fn export(
        &self,
        config: &ModelConfig,
        data: &Dataset,
        run: &RunDir,
        prefix: &str,
        path: &Path,
        dtype: StoreDtype,
    ) -> Result<()> {
        let ck = run.load()?.context("no checkpoint to export")?;
        let mut transformer_state = read_state(&ck.bytes, prefix)?;
        keep_classes(&mut transformer_state, prefix, config.cond_classes())?;
        let (vae, vae_state) = (&self.vae, &self.state);
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
        let bytes = merged_model_bytes(&config, &[vae_state, &transformer_state], dtype)?;
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
}

/// Keeps the first `classes` rows of the class embedding under `prefix` and its last, the
/// null class: a transformer trained with a class per style (`--style-classes`) exports the
/// first style's. A no-op for an embedding of `classes + 1` rows.
fn keep_classes(state: &mut StateDict, prefix: &str, classes: usize) -> Result<()> {
    let key = format!("{prefix}class_emb.weight");
    let (shape, values) = state
        .get_mut(&key)
        .with_context(|| format!("the checkpoint has no {key}"))?;
    let &[rows, width] = shape.as_slice() else {
        bail!("{key} has shape {shape:?}, not [classes + 1, width]");
    };
    if rows < classes + 1 {
        bail!("{key} has {rows} rows, fewer than the {classes} classes and the null class");
    }
    let null = values[(rows - 1) * width..].to_vec();
    values.truncate(classes * width);
    values.extend(null);
    shape[0] = classes + 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Of an embedding trained with two styles of 2 classes (rows a, b, a', b', null), the
    /// export keeps a, b and the null row; an embedding of the right size is left alone.
    #[test]
    fn keep_classes_keeps_the_first_style_and_the_null_row() {
        let rows = |r: &[f32]| r.iter().flat_map(|&v| [v, v + 0.5]).collect::<Vec<f32>>();
        let mut state = StateDict::new();
        let key = "var.class_emb.weight".to_string();
        state.insert(key.clone(), (vec![5, 2], rows(&[0.0, 1.0, 2.0, 3.0, 4.0])));
        keep_classes(&mut state, "var.", 2).unwrap();
        assert_eq!(state[&key], (vec![3, 2], rows(&[0.0, 1.0, 4.0])));
        keep_classes(&mut state, "var.", 2).unwrap();
        assert_eq!(state[&key], (vec![3, 2], rows(&[0.0, 1.0, 4.0])));
        assert!(keep_classes(&mut state, "var.", 3).is_err());
        assert!(keep_classes(&mut state, "hmar.", 2).is_err());
    }
}
