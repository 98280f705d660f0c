//! `nextscale eval`: scores a generator with the evaluator's classifier (DESIGN §6):
//! conditional accuracy, Fréchet distance and KID in the classifier's penultimate features
//! with the real-vs-real floor, k-NN precision/recall, and nearest-training-image distance.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::tensor::{Device, Tensor};
use clap::Args;
use nextscale::classifier::Classifier;
use nextscale::dataset::{Dataset, Split};
use nextscale::edit::{Edit, EditBox};
use nextscale::pipeline::{Event, GenerateRequest, Generation, MAX_BATCH, Mode, PreviewMode};
use nextscale::readback::read_f32;
use nextscale::{Model, Sampling};
use serde::Serialize;

use super::metrics::{class_weights, frechet_distance, kid, nearest_distances, precision_recall};
use super::train_classifier::{DEFAULT_CLASSIFIER, accuracy, load_classifier};
use super::{DEFAULT_MODEL, SamplingArgs, load, progress};

/// Neighbours of the k-NN precision/recall balls.
const KNN_K: usize = 3;

/// What `eval` and `tune-sampling` score with: the model, the evaluator and the sample count.
#[derive(Args, Debug)]
pub struct ScoringArgs {
    /// Model file.
    #[arg(long, default_value = DEFAULT_MODEL)]
    pub model: PathBuf,
    /// Data set file (from `nextscale data`).
    #[arg(long, default_value = "data/emoji32.safetensors")]
    pub data: PathBuf,
    /// Classifier file (from `nextscale train-classifier`).
    #[arg(long, default_value = DEFAULT_CLASSIFIER)]
    pub classifier: PathBuf,
    /// Samples per class.
    #[arg(long, value_parser = super::positive, default_value_t = 32)]
    pub per_class: usize,
    /// Images per forward pass.
    #[arg(long, value_parser = super::batch_size, default_value_t = 32)]
    pub batch: usize,
}

/// Options of `nextscale eval`.
#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    scoring: ScoringArgs,
    /// Seed of the first sample of each class.
    #[arg(long, default_value_t = 1_000_000)]
    seed: u64,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// Instead of sampling, in-paint this box (`y0,x0,y1,x1`, e.g. the centre
    /// `0.25,0.25,0.75,0.75`) of every held-out image with its own class, keeping the rest
    /// of its tokens, and score the results.
    #[arg(long, value_parser = super::edit::parse_box)]
    inpaint: Option<EditBox>,
    /// Also write the results as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The results of one evaluation.
#[derive(Serialize, Debug)]
pub struct EvalReport {
    /// The model scored.
    pub model: String,
    /// Number of generated samples.
    pub samples: usize,
    /// The sampling settings used.
    pub sampling: Sampling,
    /// Share of samples the classifier assigns to the class asked for.
    pub conditional_accuracy: f64,
    /// The same, per class.
    pub conditional_accuracy_per_class: Vec<f64>,
    /// The classifier's accuracy on held-out real images.
    pub classifier_held_out_accuracy: f64,
    /// Fréchet distance to the train split in classifier features.
    pub fd: f64,
    /// The same for the held-out real images (the floor).
    pub fd_real_floor: f64,
    /// The same for the held-out images after the model's own VQ-VAE (encode, then decode):
    /// the best FD a perfect teacher could reach with this tokenizer. Set by `eval` only,
    /// since it does not depend on the sampling that `tune-sampling` varies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd_tokenizer_ceiling: Option<f64>,
    /// Kernel inception distance (unbiased MMD², cubic kernel) to the train split.
    pub kid: f64,
    /// The same for the held-out real images.
    pub kid_real_floor: f64,
    /// k-NN precision against the train split.
    pub precision: f64,
    /// k-NN recall against the train split.
    pub recall: f64,
    /// Mean pixel distance of a sample to its nearest training image.
    pub nn_train_distance_generated: f64,
    /// The same for held-out real images.
    pub nn_train_distance_held_out: f64,
    /// Share of samples closer to a training image than any held-out image is.
    pub near_copy_share: f64,
    /// Generation time per image.
    pub ms_per_image: f64,
}

fn rows(values: Vec<f32>, n: usize) -> Vec<Vec<f64>> {
    let d = values.len() / n.max(1);
    values
        .chunks(d)
        .map(|c| c.iter().map(|&v| v as f64).collect())
        .collect()
}

/// Features and predicted labels of images `[B, 3, H, W]` in [-1, 1].
fn classify(net: &Classifier, img_b3hw: Tensor<4>) -> Result<(Vec<Vec<f64>>, Vec<usize>)> {
    let b = img_b3hw.dims()[0];
    let features_bf = net.features(img_b3hw);
    let pred: Vec<usize> = net
        .logits(features_bf.clone())
        .argmax(1)
        .into_data()
        .iter::<i64>()
        .map(|p| p as usize)
        .collect();
    Ok((rows(pollster::block_on(read_f32(features_bf))?, b), pred))
}

/// The real-image side of an evaluation: classifier features and pixels of the train split
/// (the reference) and of the held-out split (the real-vs-real floor).
pub struct Reference {
    net: Classifier,
    class_names: Vec<String>,
    train: RealSplit,
    held_out: RealSplit,
    /// The held-out images `[B, 3, H, W]` in [-1, 1], in chunks, for the tokenizer ceiling.
    held_out_images: Vec<Tensor<4>>,
    held_out_accuracy: f64,
}

/// Features, pixels and labels of one real split.
struct RealSplit {
    features: Vec<Vec<f64>>,
    pixels: Vec<Vec<f64>>,
    labels: Vec<usize>,
}

impl Reference {
    /// Loads the data set and the classifier and computes the real-image statistics.
    pub fn load(data: &Path, classifier: &Path, device: &Device) -> Result<Self> {
        let data = Dataset::from_bytes(&load::read(data)?)
            .with_context(|| format!("loading {}", data.display()))?;
        let (net, info) = load_classifier(classifier)?;
        if info.class_names != data.info.class_names {
            bail!("the classifier and the data set must have the same classes");
        }
        let split = |split: Split| -> Result<(RealSplit, Vec<Tensor<4>>)> {
            let idx = data.indices(split);
            let (mut images, mut features, mut pixels) = (Vec::new(), Vec::new(), Vec::new());
            for chunk in idx.chunks(128) {
                let img = data.images(chunk, device);
                features.extend(classify(&net, img.clone())?.0);
                pixels.extend(rows(
                    pollster::block_on(read_f32(img.clone()))?,
                    chunk.len(),
                ));
                images.push(img);
            }
            let labels = idx.iter().map(|&i| data.labels[i]).collect();
            let real = RealSplit {
                features,
                pixels,
                labels,
            };
            Ok((real, images))
        };
        let ((train, _), (held_out, held_out_images)) =
            (split(Split::Train)?, split(Split::HeldOut)?);
        let held_out_accuracy = accuracy(&net, &data, &data.indices(Split::HeldOut))?;
        Ok(Self {
            net,
            class_names: info.class_names,
            train,
            held_out,
            held_out_images,
            held_out_accuracy,
        })
    }

    /// FD to the train split of the held-out images after `model`'s VQ-VAE (all scales).
    pub fn tokenizer_ceiling(&self, model: &Model) -> Result<f64> {
        let mut features = Vec::with_capacity(self.held_out.labels.len());
        for img_b3hw in &self.held_out_images {
            let recon_b3hw = model
                .vae
                .img_to_recon(img_b3hw.clone())?
                .pop()
                .context("the model has no scales")?;
            features.extend(classify(&self.net, recon_b3hw)?.0);
        }
        let (train, held) = (&self.train, &self.held_out);
        Ok(frechet_distance(
            &features,
            &class_weights(&held.labels),
            &train.features,
            &class_weights(&train.labels),
        ))
    }

    /// Fails unless `model` has the classifier's and the data set's classes.
    fn check_classes(&self, model: &Model) -> Result<()> {
        if self.class_names != model.config.class_names {
            bail!("the model, the classifier and the data set must have the same classes");
        }
        Ok(())
    }

    /// Generates `per_class` samples of every class from `seed` on and scores them; `name`
    /// names the model in the report.
    #[allow(clippy::too_many_arguments)]
    pub fn score(
        &self,
        model: &Model,
        name: &str,
        sampling: Sampling,
        mode: Mode,
        per_class: usize,
        seed: u64,
        batch: usize,
    ) -> Result<EvalReport> {
        self.check_classes(model)?;
        let k = model.config.num_classes;
        let bar = progress::bar((k * per_class) as u64, "generate");
        let (mut gen_feats, mut gen_pixels, mut hits) =
            (Vec::new(), Vec::new(), Vec::with_capacity(k));
        let start = Instant::now();
        for class in 0..k {
            let (mut done, mut class_hits) = (0, 0);
            while done < per_class {
                let n = batch.min(per_class - done);
                let mut request = GenerateRequest::new(Some(class), n, seed + done as u64)
                    .with_sampling(sampling);
                request.preview = PreviewMode::None;
                request.mode = mode;
                let mut generation = Generation::new(model, request)?;
                while let Some(event) = pollster::block_on(generation.next_event())? {
                    if let Event::Done { image01, .. } = event {
                        let img = image01 * 2.0 - 1.0;
                        let (f, pred) = classify(&self.net, img.clone())?;
                        class_hits += pred.iter().filter(|&&p| p == class).count();
                        gen_feats.extend(f);
                        gen_pixels.extend(rows(pollster::block_on(read_f32(img))?, n));
                    }
                }
                done += n;
                bar.inc(n as u64);
            }
            hits.push(class_hits);
        }
        let ms_per_image = start.elapsed().as_secs_f64() * 1e3 / (k * per_class) as f64;
        bar.finish_and_clear();
        let labels: Vec<usize> = (0..k).flat_map(|c| [c].repeat(per_class)).collect();
        Ok(self.report(
            name,
            sampling,
            gen_feats,
            gen_pixels,
            (&labels, &hits),
            ms_per_image,
        ))
    }

    /// In-paints the centre (`box`) of every held-out image with its own class, keeping the
    /// rest of its tokens (`nextscale::edit`), and scores the results as samples: the
    /// conditional accuracy is the share the classifier still assigns to the image's class.
    pub fn score_inpainting(
        &self,
        model: &Model,
        name: &str,
        sampling: Sampling,
        edit_box: EditBox,
        seed: u64,
    ) -> Result<EvalReport> {
        self.check_classes(model)?;
        let k = model.config.num_classes;
        let labels = &self.held_out.labels;
        let bar = progress::bar(labels.len() as u64, "in-paint");
        let keep = edit_box.keep_mask(model.config.latent_size(), false);
        let (mut gen_feats, mut gen_pixels) = (Vec::new(), Vec::new());
        let mut hits = vec![0; k];
        let start = Instant::now();
        let mut done = 0;
        for img_b3hw in &self.held_out_images {
            let n = img_b3hw.dims()[0];
            let chunk = &labels[done..done + n];
            let edit = pollster::block_on(Edit::encode(
                &model.vae,
                &model.config.patch_nums,
                img_b3hw.clone(),
                &keep,
            ))?;
            for (offset, row) in chunk.chunks(MAX_BATCH).enumerate() {
                let first = offset * MAX_BATCH;
                let mut request =
                    GenerateRequest::new(None, row.len(), seed + (done + first) as u64)
                        .with_sampling(sampling);
                request.labels = row.iter().map(|&c| Some(c)).collect();
                request.preview = PreviewMode::None;
                request.edit = Some(Edit {
                    input_idx: edit.input_idx[first..first + row.len()].to_vec(),
                    keep: edit.keep.clone(),
                });
                let Event::Done { image01, .. } =
                    pollster::block_on(Generation::new(model, request)?.run_to_end())?
                else {
                    bail!("an edit ended without an image");
                };
                let img = image01 * 2.0 - 1.0;
                let (f, pred) = classify(&self.net, img.clone())?;
                for (&class, &p) in row.iter().zip(&pred) {
                    hits[class] += usize::from(p == class);
                }
                gen_feats.extend(f);
                gen_pixels.extend(rows(pollster::block_on(read_f32(img))?, row.len()));
            }
            done += n;
            bar.inc(n as u64);
        }
        let ms_per_image = start.elapsed().as_secs_f64() * 1e3 / labels.len() as f64;
        bar.finish_and_clear();
        Ok(self.report(
            name,
            sampling,
            gen_feats,
            gen_pixels,
            (labels, &hits),
            ms_per_image,
        ))
    }

    /// The report of generated images' features and pixels, of the classes `labels`, with
    /// `hits` per class classified as asked. Classes weigh equally in the Gaussian fitted to
    /// them, as in the references' (in-painting follows the held-out split's class counts).
    fn report(
        &self,
        name: &str,
        sampling: Sampling,
        gen_feats: Vec<Vec<f64>>,
        gen_pixels: Vec<Vec<f64>>,
        (labels, hits): (&[usize], &[usize]),
        ms_per_image: f64,
    ) -> EvalReport {
        let (train, held) = (&self.train, &self.held_out);
        let w_train = class_weights(&train.labels);
        let w_held = class_weights(&held.labels);
        let w_gen = class_weights(labels);
        let mut totals = vec![0usize; hits.len()];
        for &l in labels {
            totals[l] += 1;
        }
        let (precision, recall) = precision_recall(&train.features, &gen_feats, KNN_K);
        let nn_gen = nearest_distances(&gen_pixels, &train.pixels);
        let nn_held = nearest_distances(&held.pixels, &train.pixels);
        let closest_held = nn_held.iter().copied().fold(f64::INFINITY, f64::min);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        EvalReport {
            model: name.to_string(),
            samples: gen_feats.len(),
            sampling,
            conditional_accuracy: hits.iter().sum::<usize>() as f64 / gen_feats.len() as f64,
            conditional_accuracy_per_class: hits
                .iter()
                .zip(&totals)
                .map(|(&h, &t)| h as f64 / t.max(1) as f64)
                .collect(),
            classifier_held_out_accuracy: self.held_out_accuracy,
            fd: frechet_distance(&gen_feats, &w_gen, &train.features, &w_train),
            fd_real_floor: frechet_distance(&held.features, &w_held, &train.features, &w_train),
            fd_tokenizer_ceiling: None,
            kid: kid(&gen_feats, &w_gen, &train.features, &w_train),
            kid_real_floor: kid(&held.features, &w_held, &train.features, &w_train),
            precision,
            recall,
            nn_train_distance_generated: mean(&nn_gen),
            nn_train_distance_held_out: mean(&nn_held),
            near_copy_share: nn_gen.iter().filter(|&&d| d < closest_held).count() as f64
                / nn_gen.len() as f64,
            ms_per_image,
        }
    }
}

/// Runs `nextscale eval`.
pub fn run(args: EvalArgs) -> Result<ExitCode> {
    let scoring = &args.scoring;
    let device = Device::flex();
    let reference = Reference::load(&scoring.data, &scoring.classifier, &device)?;
    let model = load::model(&scoring.model, &device)?;
    let sampling = args.sampling.resolve(&model.config)?;
    let name = scoring.model.display().to_string();
    let mut report = match args.inpaint {
        Some(edit_box) => {
            reference.score_inpainting(&model, &name, sampling, edit_box, args.seed)?
        }
        None => reference.score(
            &model,
            &name,
            sampling,
            args.sampling.mode(),
            scoring.per_class,
            args.seed,
            scoring.batch,
        )?,
    };
    report.fd_tokenizer_ceiling = Some(reference.tokenizer_ceiling(&model)?);
    print_table(&report, &model.config.class_names);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(r: &EvalReport, class_names: &[String]) {
    let s = r.sampling;
    println!(
        "{} samples from {} (cfg {}, top-k {}, top-p {})",
        r.samples, r.model, s.cfg, s.top_k, s.top_p
    );
    println!("| metric | value | reference |");
    println!("|---|---|---|");
    println!(
        "| conditional accuracy | {:.3} | classifier on held-out real: {:.3} (ratio {:.2}) |",
        r.conditional_accuracy,
        r.classifier_held_out_accuracy,
        r.conditional_accuracy / r.classifier_held_out_accuracy
    );
    println!(
        "| FD (vs train, class-balanced) | {:.3} | held-out real: {:.3} (ratio {:.2}) |",
        r.fd,
        r.fd_real_floor,
        r.fd / r.fd_real_floor
    );
    if let Some(ceiling) = r.fd_tokenizer_ceiling {
        println!(
            "| FD of the VQ-VAE's held-out reconstructions | {ceiling:.3} | ratio to floor {:.2} |",
            ceiling / r.fd_real_floor
        );
    }
    println!(
        "| KID | {:.4} | held-out real: {:.4} |",
        r.kid, r.kid_real_floor
    );
    println!("| precision (k={KNN_K}) | {:.3} | |", r.precision);
    println!("| recall (k={KNN_K}) | {:.3} | |", r.recall);
    println!(
        "| nearest-train pixel distance | {:.2} | held-out real: {:.2} |",
        r.nn_train_distance_generated, r.nn_train_distance_held_out
    );
    println!(
        "| share closer to train than any held-out image | {:.3} | |",
        r.near_copy_share
    );
    println!("| generation time | {:.1} ms/image | |", r.ms_per_image);
    let per_class: Vec<String> = class_names
        .iter()
        .zip(&r.conditional_accuracy_per_class)
        .map(|(n, a)| format!("{n} {a:.2}"))
        .collect();
    println!("per class: {}", per_class.join(", "));
}
