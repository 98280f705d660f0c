//! `nextscale train-classifier`: trains the evaluator's CNN on the real training split
//! (fixed seed, class-balanced batches, mirrored half the time and shifted up to ±3 px) and
//! writes its small checkpoint. Only `nextscale eval` and `tune-sampling` read it; no
//! generator trains on it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::Device;
use clap::Args;
use nextscale::classifier::Classifier;
use nextscale::dataset::{Augment, BalancedSampler, Dataset, Split};
use nextscale::train::{LrSchedule, state_dict};
use nextscale::weights::{CLASSIFIER_PREFIX, ParamSource, WeightFile};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::convert::{StoreDtype, state_bytes};
use super::train::step_rng;
use super::{load, progress};

/// Metadata key of the [`ClassifierInfo`] JSON in a classifier file.
pub const CLASSIFIER_METADATA_KEY: &str = "nextscale.classifier";

/// The default classifier checkpoint, committed with the repository.
pub const DEFAULT_CLASSIFIER: &str = "models/emoji32-classifier.safetensors";

/// What a classifier file says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierInfo {
    /// Class names, by label.
    pub class_names: Vec<String>,
    /// Accuracy on the held-out split when it was trained.
    pub held_out_accuracy: f64,
    /// Steps and seed it was trained with.
    pub steps: usize,
    /// Seed.
    pub seed: u64,
}

/// Options of `nextscale train-classifier`.
#[derive(Args, Debug)]
pub struct TrainClassifierArgs {
    /// Data set file (from `nextscale data`; the committed classifier's, both styles, from
    /// `scripts/prepare-data.sh --twitter`).
    #[arg(long, default_value = "data/emoji32-twitter.safetensors")]
    data: PathBuf,
    /// Output classifier file.
    #[arg(long, default_value = DEFAULT_CLASSIFIER)]
    out: PathBuf,
    /// Optimizer steps.
    #[arg(long, value_parser = super::positive, default_value_t = 2000)]
    steps: usize,
    /// Images per step.
    #[arg(long, value_parser = super::positive, default_value_t = 64)]
    batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Largest shift of the augmentation, in pixels.
const MAX_SHIFT: i32 = 3;

/// Runs `nextscale train-classifier`.
pub fn run(args: TrainClassifierArgs) -> Result<ExitCode> {
    let data = Dataset::from_bytes(&load::read(&args.data)?)
        .with_context(|| format!("loading {}", args.data.display()))?;
    let device = Device::flex().autodiff();
    let mut src = ParamSource::random(args.seed, &device).with_prefix(CLASSIFIER_PREFIX);
    let mut net = Classifier::new(&mut src, data.num_classes())?;
    let names = src.names().clone();
    let mut optim = AdamWConfig::new().with_weight_decay(1e-4).init();
    let schedule = LrSchedule::warmup_cosine(args.lr, 0.01, args.steps);
    let sampler = BalancedSampler::new(&data, &data.indices(Split::Train))?;
    let bar = progress::bar(args.steps as u64, "classifier");
    for step in 0..args.steps {
        let mut rng = step_rng(args.seed, step);
        let idx = sampler.batch(args.batch, &mut rng);
        let augments: Vec<Augment> = idx
            .iter()
            .map(|_| Augment {
                shift: (
                    rng.random_range(-MAX_SHIFT..=MAX_SHIFT),
                    rng.random_range(-MAX_SHIFT..=MAX_SHIFT),
                ),
                flip: rng.random_bool(0.5),
            })
            .collect();
        let img = data.images_augmented(&idx, &augments, &device);
        let (loss, accuracy) = net.loss(img, data.label_tensor(&idx, &device));
        bar.set_message(format!(
            "ce {:.3} acc {:.2}",
            loss.clone().into_scalar::<f32>(),
            accuracy.into_scalar::<f32>()
        ));
        let grads = GradientsParams::from_grads(loss.backward(), &net);
        net = optim.step(schedule.at(step), net, grads);
        bar.inc(1);
        progress::log_step(&bar);
    }
    bar.finish();
    let state = state_dict(&net, &names)?;
    let host_bytes = state_bytes(&state, HashMap::new(), StoreDtype::F32)?;
    let host = load_net(&host_bytes, data.num_classes())?;
    let held_out_accuracy = accuracy(&host, &data, &data.indices(Split::HeldOut))?;
    let info = ClassifierInfo {
        class_names: data.info.class_names.clone(),
        held_out_accuracy,
        steps: args.steps,
        seed: args.seed,
    };
    let metadata = HashMap::from([(
        CLASSIFIER_METADATA_KEY.to_string(),
        serde_json::to_string(&info)?,
    )]);
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, state_bytes(&state, metadata, StoreDtype::F32)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "held-out accuracy {:.3}; wrote {}",
        held_out_accuracy,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn load_net(bytes: &[u8], num_classes: usize) -> Result<Classifier> {
    let file = WeightFile::parse(bytes)?;
    let mut src = ParamSource::load(&file, CLASSIFIER_PREFIX, &Device::flex());
    let net = Classifier::new(&mut src, num_classes)?;
    src.finish()?;
    Ok(net)
}

/// Loads a classifier file on the host device.
pub fn load_classifier(path: &Path) -> Result<(Classifier, ClassifierInfo)> {
    let bytes = load::read(path)?;
    let file = WeightFile::parse(&bytes)?;
    let info: ClassifierInfo = serde_json::from_str(
        file.metadata(CLASSIFIER_METADATA_KEY)
            .with_context(|| format!("{} is not a classifier file", path.display()))?,
    )?;
    Ok((load_net(&bytes, info.class_names.len())?, info))
}

/// Accuracy of the classifier on data-set images.
pub fn accuracy(net: &Classifier, data: &Dataset, indices: &[usize]) -> Result<f64> {
    let device = Device::flex();
    let mut hits = 0usize;
    for chunk in indices.chunks(128) {
        let pred = net
            .logits(net.features(data.images(chunk, &device)))
            .argmax(1)
            .into_data();
        hits += pred
            .iter::<i64>()
            .zip(chunk)
            .filter(|(p, i)| *p == data.labels[**i] as i64)
            .count();
    }
    Ok(hits as f64 / indices.len().max(1) as f64)
}
