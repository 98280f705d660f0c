//! What the training commands share: the run directory with its resumable checkpoint
//! (model tensors by official name, parameter ids and step in the metadata, optimizer
//! state beside it), the loss log (CSV and a PNG plot) and image grids.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use indicatif::ProgressBar;
use nextscale::config::CONFIG_METADATA_KEY;
use nextscale::dataset::{BalancedSampler, Dataset};
use nextscale::preview::RgbaImage;
use nextscale::train::{LrSchedule, StateDict, state_dict};
use nextscale::weights::{ParamNames, ParamSource, WeightFile};
use plotters::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::convert::{StoreDtype, state_bytes};
use super::progress;

/// Metadata key of the [`TrainState`] JSON in a checkpoint.
pub const TRAIN_METADATA_KEY: &str = "nextscale.train";

/// Where a training run resumes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    /// Steps done.
    pub step: usize,
    /// Parameter ids by full name, matching the saved optimizer state.
    pub param_ids: BTreeMap<String, u64>,
}

/// Options every model-training command shares.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Seed of the new parameters and of the batches.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 250)]
    pub checkpoint_every: usize,
    /// Steps between sample grids (one row per class).
    #[arg(long, default_value_t = 500)]
    pub sample_every: usize,
    /// Model file written at the end (every network, config, class names, preview matrix).
    #[arg(long)]
    pub export: Option<PathBuf>,
    /// Storage dtype of the exported model file.
    #[arg(long, value_enum, default_value_t = StoreDtype::F16)]
    pub dtype: StoreDtype,
    /// Start over even if the run directory holds a checkpoint.
    #[arg(long)]
    pub fresh: bool,
}

impl RunArgs {
    /// Whether step `done` (1-based) of `total` ends with a checkpoint.
    pub fn checkpoint_due(&self, done: usize, total: usize) -> bool {
        done.is_multiple_of(self.checkpoint_every.max(1)) || done == total
    }

    /// Whether step `done` (1-based) of `total` ends with a sample grid.
    pub fn samples_due(&self, done: usize, total: usize) -> bool {
        done.is_multiple_of(self.sample_every.max(1)) || done == total
    }
}

/// The VAR recipe's optimizer, for the teacher and the student: AdamW with β₂ 0.95,
/// weight decay 0.05 and gradient clipping at norm 2.
pub fn transformer_optimizer() -> ModuleOptimizer {
    AdamWConfig::new()
        .with_beta_2(0.95)
        .with_weight_decay(0.05)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(2.0)))
        .init()
}

/// One stage of supervised transformer training: class-balanced batches whose labels are
/// dropped to the null class at `label_drop` (for classifier-free guidance), AdamW under
/// warm-up and cosine decay, checkpoints, the loss log and sample grids.
pub struct TeacherStage<'a> {
    /// Where checkpoints, the log and grids go.
    pub run: &'a RunDir,
    /// Seed and checkpoint/sample cadence.
    pub args: &'a RunArgs,
    /// The data set the batches index.
    pub data: &'a Dataset,
    /// Draws every class equally often.
    pub sampler: &'a BalancedSampler,
    /// The trained module's parameter names.
    pub names: ParamNames,
    /// The config stored in checkpoints.
    pub config_json: String,
    /// The autodiff device.
    pub device: &'a Device,
    /// Steps of the learning-rate schedule.
    pub steps: usize,
    /// Sequences per step.
    pub batch: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Share of labels replaced by the null class.
    pub label_drop: f64,
    /// The null class.
    pub null: i64,
    /// The progress bar's label.
    pub name: &'static str,
}

impl TeacherStage<'_> {
    /// Trains `module` from step `start` to the end: `loss` gives the loss and accuracy of
    /// a batch (data-set indices, labels, the step's random stream), `samples` writes a
    /// grid of the module's samples to a path.
    pub fn run<M: Module>(
        &self,
        mut module: M,
        mut optim: ModuleOptimizer,
        start: usize,
        mut loss: impl FnMut(&M, &[usize], Tensor<1, Int>, &mut ChaCha8Rng) -> (Tensor<1>, Tensor<1>),
        mut samples: impl FnMut(&M, &Path) -> Result<()>,
    ) -> Result<M> {
        let schedule = LrSchedule::warmup_cosine(self.lr, 0.02, self.steps);
        let mut log = LossLog::open(self.run, &["loss", "accuracy"], start)?;
        let bar = progress::bar(self.steps as u64, self.name);
        bar.set_position(start as u64);
        for step in start..self.steps {
            let mut rng = step_rng(self.args.seed, step);
            let idx = self.sampler.batch(self.batch, &mut rng);
            let labels: Vec<i64> = idx
                .iter()
                .map(|&i| {
                    if rng.random_bool(self.label_drop) {
                        self.null
                    } else {
                        self.data.labels[i] as i64
                    }
                })
                .collect();
            let labels_b =
                Tensor::<1, Int>::from_data(TensorData::new(labels, [idx.len()]), self.device);
            let (loss, accuracy) = loss(&module, &idx, labels_b, &mut rng);
            let row = vec![
                loss.clone().into_scalar::<f32>() as f64,
                accuracy.into_scalar::<f32>() as f64,
            ];
            if !row[0].is_finite() {
                bail!(
                    "loss became {} at step {step}; lower --lr and resume",
                    row[0]
                );
            }
            let grads = GradientsParams::from_grads(loss.backward(), &module);
            module = optim.step(schedule.at(step), module, grads);
            let message = format!("ce {:.3} acc {:.3}", row[0], row[1]);
            record_step(&bar, &mut log, step, message, row);
            let done = step + 1;
            if self.args.checkpoint_due(done, self.steps) {
                let state = TrainState {
                    step: done,
                    param_ids: self.names.ids(),
                };
                let tensors = state_dict(&module, &self.names)?;
                self.run.save(&tensors, &self.config_json, &state, &optim)?;
                log.write()?;
            }
            if self.args.samples_due(done, self.steps) {
                let grid = self.run.path(&format!("samples_{done:06}.png"));
                samples(&module, &grid)?;
                progress::note(&bar, format!("step {done}: wrote {}", grid.display()));
            }
        }
        bar.finish();
        Ok(module)
    }
}

/// Records a finished step: its loss row in the log, the bar's message and position.
pub fn record_step(
    bar: &ProgressBar,
    log: &mut LossLog,
    step: usize,
    message: String,
    row: Vec<f64>,
) {
    bar.set_message(message);
    log.push(step, row);
    bar.inc(1);
    progress::log_step(bar);
}

/// A training run's output directory.
pub struct RunDir {
    dir: PathBuf,
}

/// A checkpoint read back: its tensors' bytes, the config JSON and the train state.
pub struct Checkpoint {
    /// The safetensors bytes.
    pub bytes: Vec<u8>,
    /// The model config JSON.
    pub config_json: String,
    /// Step and parameter ids.
    pub state: TrainState,
}

impl RunDir {
    /// Creates the directory if needed.
    pub fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// A file in the run directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn checkpoint_path(&self) -> PathBuf {
        self.path("checkpoint.safetensors")
    }

    fn optimizer_path(&self) -> PathBuf {
        self.path("optimizer.bpk")
    }

    /// Writes model tensors and optimizer state (each through a temporary file, so an
    /// interrupted save leaves the previous checkpoint intact).
    pub fn save(
        &self,
        tensors: &StateDict,
        config_json: &str,
        state: &TrainState,
        optim: &ModuleOptimizer,
    ) -> Result<()> {
        let metadata = HashMap::from([
            (CONFIG_METADATA_KEY.to_string(), config_json.to_string()),
            (
                TRAIN_METADATA_KEY.to_string(),
                serde_json::to_string(state)?,
            ),
        ]);
        let bytes = state_bytes(tensors, metadata, StoreDtype::F32)?;
        let tmp_optim = self.path("optimizer.bpk.tmp");
        optim
            .save(&tmp_optim)
            .map_err(|e| anyhow::anyhow!("saving optimizer state: {e:?}"))?;
        let tmp = self.path("checkpoint.safetensors.tmp");
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp_optim, self.optimizer_path())?;
        std::fs::rename(&tmp, self.checkpoint_path())?;
        Ok(())
    }

    /// The saved checkpoint, if there is one.
    pub fn load(&self) -> Result<Option<Checkpoint>> {
        let path = self.checkpoint_path();
        if !path.exists() {
            return Ok(None);
        }
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let file = WeightFile::parse(&bytes)?;
        let config_json = file
            .metadata(CONFIG_METADATA_KEY)
            .context("checkpoint has no config")?
            .to_string();
        let state: TrainState = serde_json::from_str(
            file.metadata(TRAIN_METADATA_KEY)
                .context("checkpoint has no train state")?,
        )?;
        Ok(Some(Checkpoint {
            bytes,
            config_json,
            state,
        }))
    }

    /// Restores the optimizer state saved with the checkpoint.
    pub fn load_optimizer(&self, optim: ModuleOptimizer) -> Result<ModuleOptimizer> {
        optim
            .load(self.optimizer_path())
            .map_err(|e| anyhow::anyhow!("loading optimizer state: {e:?}"))
    }

    /// Rebuilds a module from checkpoint `ck` (its tensors under `prefix`, with the saved
    /// parameter ids) and restores the optimizer state saved with it.
    pub fn resume<M>(
        &self,
        ck: &Checkpoint,
        prefix: &str,
        device: &Device,
        optim: ModuleOptimizer,
        build: impl FnOnce(&mut ParamSource) -> nextscale::Result<M>,
    ) -> Result<Resumed<M>> {
        let file = WeightFile::parse(&ck.bytes)?;
        let mut src = ParamSource::load(&file, prefix, device).with_ids(ck.state.param_ids.clone());
        let module = build(&mut src)?;
        let names = src.names().clone();
        src.finish()?;
        let optim = self.load_optimizer(optim)?;
        println!("resuming {} at step {}", self.dir.display(), ck.state.step);
        Ok(Resumed {
            module,
            names,
            step: ck.state.step,
            optim,
        })
    }
}

/// Where a stage's parameters start when it has no checkpoint to resume.
pub enum Init<'a> {
    /// Drawn from this seed (the modules' own initialisation).
    Random(u64),
    /// The values of this state dict (names under the stage's prefix).
    From(&'a StateDict),
}

impl RunDir {
    /// The stage's module: resumed from `checkpoint` with the optimizer state saved beside
    /// it when there is one, else built from `init` at step 0 with `optim` as it is.
    pub fn resume_or<M>(
        &self,
        checkpoint: Option<&Checkpoint>,
        init: Init,
        prefix: &str,
        device: &Device,
        optim: ModuleOptimizer,
        build: impl Fn(&mut ParamSource) -> nextscale::Result<M>,
    ) -> Result<Resumed<M>> {
        if let Some(ck) = checkpoint {
            return self.resume(ck, prefix, device, optim, build);
        }
        let (module, names) = match init {
            Init::Random(seed) => {
                let mut src = ParamSource::random(seed, device).with_prefix(prefix);
                let module = build(&mut src)?;
                (module, src.names().clone())
            }
            Init::From(state) => {
                let bytes = state_bytes(state, HashMap::new(), StoreDtype::F32)?;
                let file = WeightFile::parse(&bytes)?;
                let mut src = ParamSource::load(&file, prefix, device);
                let module = build(&mut src)?;
                let names = src.names().clone();
                src.finish()?;
                (module, names)
            }
        };
        Ok(Resumed {
            module,
            names,
            step: 0,
            optim,
        })
    }
}

/// A module restored by [`RunDir::resume`].
pub struct Resumed<M> {
    /// The module with the checkpoint's values.
    pub module: M,
    /// Its parameter names and ids.
    pub names: ParamNames,
    /// Steps done.
    pub step: usize,
    /// The optimizer with its saved state.
    pub optim: ModuleOptimizer,
}

/// The random stream of one step, independent of where a run resumed.
pub fn step_rng(seed: u64, step: usize) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ step as u64)
}

/// Reads every tensor of a safetensors file under `prefix` as f32.
pub fn read_state(bytes: &[u8], prefix: &str) -> Result<StateDict> {
    let file = WeightFile::parse(bytes)?;
    let mut out = StateDict::new();
    for name in file.names().into_iter().filter(|n| n.starts_with(prefix)) {
        let (values, shape) = file.read_f32(&name)?;
        out.insert(name, (shape, values));
    }
    Ok(out)
}

/// The loss log: `loss.csv` with a header, rewritten up to the resumed step, and a plot.
pub struct LossLog {
    csv: PathBuf,
    png: PathBuf,
    columns: Vec<String>,
    rows: Vec<(usize, Vec<f64>)>,
}

impl LossLog {
    /// Opens the log of a run, keeping rows before `start_step`.
    pub fn open(run: &RunDir, columns: &[&str], start_step: usize) -> Result<Self> {
        let csv = run.path("loss.csv");
        let mut rows = Vec::new();
        if let Ok(text) = std::fs::read_to_string(&csv) {
            for line in text.lines().skip(1) {
                let mut fields = line.split(',');
                let Some(Ok(step)) = fields.next().map(str::parse::<usize>) else {
                    continue;
                };
                let values: Vec<f64> = fields.filter_map(|f| f.parse().ok()).collect();
                if step < start_step && values.len() == columns.len() {
                    rows.push((step, values));
                }
            }
        }
        Ok(Self {
            csv,
            png: run.path("loss.png"),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
        })
    }

    /// Adds a row.
    pub fn push(&mut self, step: usize, values: Vec<f64>) {
        self.rows.push((step, values));
    }

    /// Writes the CSV and the plot (each column a line, smoothed over 20 steps).
    pub fn write(&self) -> Result<()> {
        let mut text = format!("step,{}\n", self.columns.join(","));
        for (step, values) in &self.rows {
            let v: Vec<String> = values.iter().map(|v| format!("{v:.6}")).collect();
            text.push_str(&format!("{step},{}\n", v.join(",")));
        }
        std::fs::write(&self.csv, text)
            .with_context(|| format!("writing {}", self.csv.display()))?;
        self.plot()
            .map_err(|e| anyhow::anyhow!("plotting {}: {e}", self.png.display()))
    }

    fn plot(&self) -> std::result::Result<(), Box<dyn std::error::Error>> {
        if self.rows.len() < 2 {
            return Ok(());
        }
        let colors = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
        let root = BitMapBackend::new(&self.png, (800, 400)).into_drawing_area();
        root.fill(&WHITE)?;
        let last = self.rows.last().map(|r| r.0).unwrap_or(1) as f64;
        let smooth = |col: usize| -> Vec<(f64, f64)> {
            self.rows
                .iter()
                .enumerate()
                .map(|(i, (step, _))| {
                    let from = i.saturating_sub(19);
                    let window = &self.rows[from..=i];
                    let mean = window.iter().map(|r| r.1[col]).sum::<f64>() / window.len() as f64;
                    (*step as f64, mean)
                })
                .collect()
        };
        let series: Vec<Vec<(f64, f64)>> = (0..self.columns.len()).map(smooth).collect();
        let top = series
            .iter()
            .flatten()
            .map(|p| p.1)
            .fold(f64::MIN, f64::max)
            .max(1e-6);
        let mut chart = ChartBuilder::on(&root)
            .margin(20)
            .build_cartesian_2d(0.0..last, 0.0..top * 1.05)?;
        chart
            .configure_mesh()
            .x_labels(0)
            .y_labels(0)
            .light_line_style(WHITE.mix(0.0))
            .draw()?;
        for (points, color) in series.into_iter().zip(colors.iter().cycle()) {
            chart.draw_series(LineSeries::new(points, color))?;
        }
        root.present()?;
        Ok(())
    }
}

/// Writes images as a grid of `cols` columns, each upscaled by `zoom`, as one PNG.
pub fn write_grid(path: &Path, images: &[RgbaImage], cols: usize, zoom: usize) -> Result<()> {
    let Some(first) = images.first() else {
        return Ok(());
    };
    let (w, h) = (first.width * zoom, first.height * zoom);
    let rows = images.len().div_ceil(cols);
    let mut grid = image::RgbaImage::from_pixel(
        (cols * (w + 2)) as u32,
        (rows * (h + 2)) as u32,
        image::Rgba([255, 255, 255, 255]),
    );
    for (i, img) in images.iter().enumerate() {
        let (gx, gy) = ((i % cols) * (w + 2) + 1, (i / cols) * (h + 2) + 1);
        for y in 0..h {
            for x in 0..w {
                let p = ((y / zoom) * img.width + x / zoom) * 4;
                let px = [img.pixels[p], img.pixels[p + 1], img.pixels[p + 2], 255];
                grid.put_pixel((gx + x) as u32, (gy + y) as u32, image::Rgba(px));
            }
        }
    }
    grid.save(path)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use burn::optim::{AdamWConfig, GradientsParams};
    use burn::tensor::{Device, Int, Tensor, TensorData};
    use nextscale::ModelConfig;
    use nextscale::dd::DdModel;
    use nextscale::train::distill::dd_loss;
    use nextscale::train::state_dict;
    use nextscale::train::var::var_loss;
    use nextscale::train::vqvae::vqvae_loss;
    use nextscale::var::Var;
    use nextscale::vqvae::Vqvae;
    use nextscale::weights::VAR_PREFIX;
    use nextscale::weights::{ParamSource, WeightFile};
    use rand::Rng;

    use super::*;
    use crate::cli::convert::model_bytes;

    fn normals<const D: usize>(
        rng: &mut ChaCha8Rng,
        shape: [usize; D],
        device: &Device,
    ) -> Tensor<D> {
        let n = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    fn ints<const D: usize>(
        rng: &mut ChaCha8Rng,
        shape: [usize; D],
        max: i64,
        device: &Device,
    ) -> Tensor<D, Int> {
        let n = shape.iter().product();
        let v: Vec<i64> = (0..n).map(|_| rng.random_range(0..max)).collect();
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    /// Loss before and after one AdamW step on the same batch.
    fn step_lowers<M: burn::module::Module>(
        module: M,
        loss: impl Fn(&M) -> Tensor<1>,
    ) -> (f32, f32) {
        let mut optim = AdamWConfig::new().init();
        let before = loss(&module);
        let b = before.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(before.backward(), &module);
        let module = optim.step(1e-3, module, grads);
        (b, loss(&module).into_scalar::<f32>())
    }

    #[test]
    fn activation_gradients_are_finite_where_exp_overflows() {
        use nextscale::nn::{gelu_tanh, silu};
        let device = Device::flex().autodiff();
        let xs = vec![-1e4f32, -200.0, -20.0, -1.0, 0.0, 1.0, 20.0, 200.0, 1e4];
        let n = xs.len();
        for (name, f) in [
            ("silu", silu::<1> as fn(Tensor<1>) -> Tensor<1>),
            ("gelu_tanh", gelu_tanh::<1>),
        ] {
            let x =
                Tensor::<1>::from_data(TensorData::new(xs.clone(), [n]), &device).require_grad();
            let grads = f(x.clone()).sum().backward();
            let dx: Vec<f32> = x.grad(&grads).unwrap().into_data().try_to_vec().unwrap();
            // Both have slope 1 far right and 0 far left (there, the clamped exponent leaves
            // 1/(1 + e^80) ≈ 2e-35).
            assert!(dx[0].abs() < 1e-30, "{name} {dx:?}");
            assert_eq!(dx[n - 1], 1.0, "{name} {dx:?}");
            assert!(dx.iter().all(|d| d.is_finite()), "{name} {dx:?}");
        }
    }

    /// On an autodiff device a 3×3 convolution stays on the backend (the core's host
    /// Winograd path is for plain flex only), so its weights get their gradient: for the sum
    /// of outputs over a 32×32 input of ones, each tap's gradient counts the positions where
    /// it reads inside the image.
    #[test]
    fn convolutions_keep_their_gradient_on_autodiff_flex() {
        let device = Device::flex().autodiff();
        let mut src = ParamSource::random(0, &device);
        let conv = nextscale::nn::Conv2d::new(&mut src, "conv", 2, 3, 3).unwrap();
        let x = Tensor::<4>::ones([1, 2, 32, 32], &device);
        let grads = conv.forward(x).sum().backward();
        let dw: Vec<f32> = conv
            .weight
            .val()
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec()
            .unwrap();
        for (i, &g) in dw.iter().enumerate() {
            let (dy, dx) = ((i % 9) / 3, i % 3);
            let rows = if dy == 1 { 32.0 } else { 31.0 };
            let cols = if dx == 1 { 32.0 } else { 31.0 };
            assert_eq!(g, rows * cols, "tap ({dy}, {dx})");
        }
    }

    #[test]
    fn one_step_lowers_every_stage_loss_on_a_fixed_batch() {
        let device = Device::flex().autodiff();
        let config = ModelConfig::emoji32_tiny(3);
        let mut rng = step_rng(7, 0);
        let mut src = ParamSource::random(0, &device);

        let vae = Vqvae::new(&mut src, &config).unwrap();
        let img = normals(&mut rng, [4, 3, 32, 32], &device);
        let (b, a) = step_lowers(vae, |vae| vqvae_loss(vae, img.clone()).unwrap().total);
        assert!(a < b, "VQ-VAE loss {b} → {a}");

        let var = Var::new(&mut src, &config).unwrap();
        let l = config.seq_len();
        let labels = ints(&mut rng, [4], 3, &device);
        let x = normals(&mut rng, [4, l - 1, config.cvae], &device);
        let target = ints(&mut rng, [4, l], config.vocab_size as i64, &device);
        let (b, a) = step_lowers(var, |var| {
            var_loss(var, labels.clone(), x.clone(), target.clone()).0
        });
        assert!(a < b, "VAR loss {b} → {a}");

        let codebook = normals(&mut rng, [config.vocab_size, config.cvae], &device) * 0.1;
        let noise = normals(&mut rng, [4, l, config.cvae], &device);
        for t in [0, 3] {
            let mut src = ParamSource::random(t as u64, &device);
            let dd = DdModel::new(&mut src, &config, 3).unwrap();
            let (b, a) = step_lowers(dd, |dd| {
                dd_loss(
                    dd,
                    codebook.clone(),
                    labels.clone(),
                    noise.clone(),
                    target.clone(),
                    t,
                    1.0,
                )
                .unwrap()
                .loss
            });
            assert!(a < b, "DD loss at t={t}: {b} → {a}");
        }
    }

    #[test]
    fn checkpoint_round_trip_gives_identical_outputs() {
        let device = Device::flex();
        let config = ModelConfig::emoji32_tiny(3);
        let mut src = ParamSource::random(3, &device).with_prefix(VAR_PREFIX);
        let var = Var::new(&mut src, &config).unwrap();
        let state = state_dict(&var, src.names()).unwrap();
        let bytes = model_bytes(&state, &config.to_json(), StoreDtype::F32).unwrap();
        let file = WeightFile::parse(&bytes).unwrap();
        let mut loaded_src = ParamSource::load(&file, VAR_PREFIX, &device);
        let loaded = Var::new(&mut loaded_src, &config).unwrap();
        loaded_src.finish().unwrap();
        let mut rng = step_rng(1, 0);
        let l = config.seq_len();
        let labels = ints(&mut rng, [2], 3, &device);
        let x = normals(&mut rng, [2, l - 1, config.cvae], &device);
        let a: Vec<f32> = var
            .forward(labels.clone(), x.clone())
            .into_data()
            .try_to_vec()
            .unwrap();
        let b: Vec<f32> = loaded.forward(labels, x).into_data().try_to_vec().unwrap();
        assert_eq!(a, b);
    }
}
