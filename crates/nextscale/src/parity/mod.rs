//! Numerical parity against reference outputs of the official PyTorch code, in the format
//! of `shared/fixtures` (`cases.safetensors`): VAR, Distilled Decoding and zero-shot
//! editing; HMAR in [`hmar`]. Used by `nextscale parity` and the tests.

mod hmar;

pub use hmar::run_hmar_cases;

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::dd::DdPair;
use crate::edit::{Edit, EditBox};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::pipeline::{Event, GenerateRequest, Generation, Mode, PreviewMode};
use crate::readback::{read_f32, read_i64};
use crate::sampler::SamplingOptions;
use crate::weights::WeightFile;

/// Max abs error allowed for float outputs on flex (the fixture README bounds float noise
/// at 3.5e-5).
pub const FLOAT_TOL: f64 = 1e-4;

/// How one case compared.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// Case name, e.g. `greedy.cfg4.0.f_hat.2`.
    pub name: String,
    /// Max abs error for floats, or the number of differing tokens.
    pub error: f64,
    /// The bound it must stay within.
    pub tolerance: f64,
    /// True for token comparisons (exact).
    pub exact: bool,
}

impl CaseResult {
    /// Whether the case is within tolerance.
    pub fn passed(&self) -> bool {
        self.error.is_finite() && self.error <= self.tolerance
    }
}

struct Cases<'w, 'a> {
    file: &'w WeightFile<'a>,
    device: Device,
    results: Vec<CaseResult>,
}

impl Cases<'_, '_> {
    fn float<const D: usize>(&self, name: &str) -> Result<Tensor<D>> {
        let (v, shape) = self.file.read_f32(name)?;
        let shape: [usize; D] = shape.try_into().map_err(|s| Error::ShapeMismatch {
            name: name.into(),
            actual: s,
            expected: vec![0; D],
        })?;
        Ok(Tensor::from_data(TensorData::new(v, shape), &self.device))
    }

    fn int<const D: usize>(&self, name: &str) -> Result<Tensor<D, Int>> {
        let (v, shape) = self.file.read_i64(name)?;
        let shape: [usize; D] = shape.try_into().map_err(|s| Error::ShapeMismatch {
            name: name.into(),
            actual: s,
            expected: vec![0; D],
        })?;
        Ok(Tensor::from_data(TensorData::new(v, shape), &self.device))
    }

    fn scales(&self, prefix: &str) -> usize {
        (0..)
            .take_while(|si| self.file.contains(&format!("{prefix}{si}")))
            .count()
    }

    async fn compare_float<const D: usize>(&mut self, name: &str, got: Tensor<D>) -> Result<()> {
        let shape = self
            .file
            .shape(name)
            .ok_or_else(|| Error::MissingTensor(name.into()))?;
        if got.dims().to_vec() != shape {
            return Err(Error::ShapeMismatch {
                name: name.into(),
                actual: got.dims().to_vec(),
                expected: shape,
            });
        }
        let got = read_f32(got).await?;
        self.compare_values(name, &got)
    }

    /// Compares host values with `name` within [`FLOAT_TOL`].
    fn compare_values(&mut self, name: &str, got: &[f32]) -> Result<()> {
        let (want, _) = self.file.read_f32(name)?;
        let error = if got.len() == want.len() {
            got.iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs() as f64)
                .fold(
                    0.0,
                    |m: f64, e| if e.is_nan() { f64::NAN } else { m.max(e) },
                )
        } else {
            f64::INFINITY
        };
        self.results.push(CaseResult {
            name: name.into(),
            error,
            tolerance: FLOAT_TOL,
            exact: false,
        });
        Ok(())
    }

    /// Compares 0/1 masks exactly: the error is the number of differing positions.
    fn compare_exact(&mut self, name: &str, got: &[f32]) -> Result<()> {
        let (want, _) = self.file.read_f32(name)?;
        self.push_differences(name, got, &want);
        Ok(())
    }

    /// Compares token indices exactly: the error is the number of differing tokens.
    fn compare_tokens(&mut self, name: &str, got: &[i64]) -> Result<()> {
        let (want, _) = self.file.read_i64(name)?;
        self.push_differences(name, got, &want);
        Ok(())
    }

    /// Records an exact comparison: the number of differing positions, infinite when the
    /// lengths differ.
    fn push_differences<T: PartialEq>(&mut self, name: &str, got: &[T], want: &[T]) {
        let error = if got.len() == want.len() {
            got.iter().zip(want).filter(|(a, b)| a != b).count() as f64
        } else {
            f64::INFINITY
        };
        self.results.push(CaseResult {
            name: name.into(),
            error,
            tolerance: 0.0,
            exact: true,
        });
    }
}

/// Runs every case present in `cases` against `model`.
pub async fn run_var_cases(model: &Model, cases: &WeightFile<'_>) -> Result<Vec<CaseResult>> {
    let mut c = Cases {
        file: cases,
        device: model.device().clone(),
        results: Vec::new(),
    };
    let vae = &model.vae;
    if cases.contains("encode.input_image") {
        let img = c.float::<4>("encode.input_image")?;
        let f = vae.img_to_f(img)?;
        let (idx, f_hats) = vae.quantize.encode(f);
        for (si, idx_bl) in idx.into_iter().enumerate() {
            let got = read_i64(idx_bl).await?;
            c.compare_tokens(&format!("encode.idx.{si}"), &got)?;
        }
        for (si, f_hat) in f_hats.into_iter().enumerate() {
            let name = format!("encode.recon_image.{si}");
            if cases.contains(&name) {
                c.compare_float(&name, vae.fhat_to_img(f_hat)).await?;
            }
        }
    }
    let sn = c.scales("decode.idx.");
    if sn > 0 {
        let idx: Vec<Tensor<2, Int>> = (0..sn)
            .map(|si| c.int::<2>(&format!("decode.idx.{si}")))
            .collect::<Result<_>>()?;
        if cases.contains("decode.image") {
            c.compare_float("decode.image", vae.idx_to_img(&idx))
                .await?;
        }
        if cases.contains("forward.var_input") {
            let var_input = vae.quantize.idx_to_var_input(&idx);
            c.compare_float("forward.var_input", var_input.clone())
                .await?;
            if cases.contains("forward.logits") {
                let labels = c.int::<1>("forward.labels")?;
                let input = c.float::<3>("forward.var_input")?;
                let var = model.var("the forward.logits case")?;
                c.compare_float("forward.logits", var.forward(labels, input))
                    .await?;
            }
        }
    }
    for cfg_text in greedy_cfgs(cases) {
        run_greedy(&mut c, model, &cfg_text).await?;
    }
    if c.results.is_empty() {
        return Err(Error::Config(
            "the cases file holds no case this build knows".into(),
        ));
    }
    Ok(c.results)
}

/// Loads a DD fixture directory's model from its `config.json` text (which carries
/// `loss_split_t`) and weight file.
pub fn load_dd_fixture(config_json: &str, weights: &WeightFile, device: &Device) -> Result<DdPair> {
    let config = crate::ModelConfig::from_fixture_json(config_json)?;
    let value: serde_json::Value =
        serde_json::from_str(config_json).map_err(|e| Error::Config(e.to_string()))?;
    let loss_split_t = value
        .get("loss_split_t")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| Error::Config("a DD fixture config needs `loss_split_t`".into()))?;
    DdPair::from_weights(&config, loss_split_t as usize, weights, device)
}

/// Runs the Distilled-Decoding cases (`steps_{t…}.sequence` and `.image01` from `labels`
/// and `noise`) against a student and its VQ-VAE.
pub async fn run_dd_cases(pair: &DdPair, cases: &WeightFile<'_>) -> Result<Vec<CaseResult>> {
    let device = pair.vae.quantize.embedding.weight.val().device();
    let mut c = Cases {
        file: cases,
        device,
        results: Vec::new(),
    };
    let labels = c.int::<1>("labels")?;
    let noise = c.float::<3>("noise")?;
    let mut runs: Vec<String> = cases
        .names()
        .iter()
        .filter_map(|n| {
            n.strip_suffix(".sequence")?
                .strip_prefix("steps_")
                .map(String::from)
        })
        .collect();
    runs.sort();
    for run in runs {
        let t_list = run
            .split('_')
            .map(|t| t.parse::<usize>())
            .collect::<core::result::Result<Vec<_>, _>>()
            .map_err(|_| Error::Config(format!("bad step list `{run}` in a DD case name")))?;
        let seq = pair
            .dd
            .sample(&pair.vae, labels.clone(), noise.clone(), &t_list)
            .await?;
        c.compare_float(&format!("steps_{run}.sequence"), seq.clone())
            .await?;
        let name = format!("steps_{run}.image01");
        if cases.contains(&name) {
            c.compare_float(&name, pair.dd.sequence_to_image(&pair.vae, seq))
                .await?;
        }
    }
    if c.results.is_empty() {
        return Err(Error::Config("the cases file holds no DD case".into()));
    }
    Ok(c.results)
}

/// The cfg values of `greedy.cfg{c}.idx.0` keys, as written in the key.
fn greedy_cfgs(cases: &WeightFile) -> Vec<String> {
    let mut cfgs: Vec<String> = cases
        .names()
        .iter()
        .filter_map(|n| {
            n.strip_prefix("greedy.cfg")?
                .strip_suffix(".idx.0")
                .map(String::from)
        })
        .collect();
    cfgs.sort();
    cfgs
}

async fn run_greedy(c: &mut Cases<'_, '_>, model: &Model, cfg_text: &str) -> Result<()> {
    let cfg = parse_cfg(cfg_text)?;
    let (labels, _) = c.file.read_i64("forward.labels")?;
    let labels = labels.iter().map(|&l| Some(l as usize)).collect();
    let request = greedy_request(labels, cfg, None);
    let generation = Generation::new(model, request)?;
    run_generation(c, generation, &format!("greedy.cfg{cfg_text}")).await
}

fn parse_cfg(cfg_text: &str) -> Result<f64> {
    cfg_text
        .parse()
        .map_err(|_| Error::Config(format!("bad cfg `{cfg_text}` in a case name")))
}

/// The fixtures' greedy sampling (`top_k=1, top_p=0, more_smooth=False`).
fn greedy_request(labels: Vec<Option<usize>>, cfg: f64, edit: Option<Edit>) -> GenerateRequest {
    GenerateRequest {
        labels,
        seed: 0,
        cfg,
        sampling: SamplingOptions {
            top_k: 1,
            top_p: 0.0,
            more_smooth: false,
        },
        preview: PreviewMode::None,
        mode: Mode::Var,
        edit,
        mask_schedule: None,
        pass_events: false,
    }
}

/// Runs `request` and compares every scale's tokens and f_hat and the final image with the
/// cases `{prefix}.idx.{si}`, `{prefix}.f_hat.{si}` and `{prefix}.image01`; and, for HMAR
/// pass events, each pass's tokens and the positions left masked with
/// `{prefix}.idx.{si}.step{j}` and `{prefix}.masked.{si}.step{j+1}` (as sets).
async fn run_generation(
    c: &mut Cases<'_, '_>,
    generation: Generation<'_>,
    prefix: &str,
) -> Result<()> {
    let mut generation = generation;
    while let Some(event) = generation.next_event().await? {
        match event {
            Event::Scale {
                index,
                tokens,
                f_hat,
                ..
            } => {
                let flat: Vec<i64> = tokens.iter().flatten().map(|&t| t as i64).collect();
                c.compare_tokens(&format!("{prefix}.idx.{index}"), &flat)?;
                let name = format!("{prefix}.f_hat.{index}");
                if c.file.contains(&name) {
                    c.compare_float(&name, f_hat).await?;
                }
            }
            Event::Pass {
                scale,
                pass,
                tokens,
                masked,
                ..
            } => {
                let flat: Vec<i64> = tokens.iter().flatten().map(|&t| t as i64).collect();
                c.compare_tokens(&format!("{prefix}.idx.{scale}.step{pass}"), &flat)?;
                let name = format!("{prefix}.masked.{scale}.step{}", pass + 1);
                let want = hmar::as_sets(hmar::read_positions(c, &name)?);
                c.push_differences(
                    &format!("{name} (pass event, as sets)"),
                    &hmar::as_sets(masked),
                    &want,
                );
            }
            Event::Done { image01, .. } => {
                let name = format!("{prefix}.image01");
                if c.file.contains(&name) {
                    c.compare_float(&name, image01).await?;
                }
            }
        }
    }
    Ok(())
}

/// One task of an edit fixture: its name, box and whether it out-paints (keeps the box).
#[derive(Debug, Clone, PartialEq)]
pub struct EditTask {
    /// Case-name prefix, e.g. `inpaint`.
    pub name: String,
    /// The box in fractions of the image.
    pub edit_box: EditBox,
    /// Keep the box and generate around it (`inpainting=False` in the notebook).
    pub outpaint: bool,
}

impl EditTask {
    /// The tasks an edit fixture's `config.json` records under `edit.tasks`.
    pub fn from_fixture_json(json: &str) -> Result<Vec<Self>> {
        let bad = |m: &str| Error::Config(format!("edit fixture config: {m}"));
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|e| Error::Config(e.to_string()))?;
        let tasks = value
            .pointer("/edit/tasks")
            .and_then(serde_json::Value::as_object)
            .ok_or_else(|| bad("no edit.tasks"))?;
        tasks
            .iter()
            .map(|(name, task)| {
                let edges: Vec<f64> = task
                    .get("box_y0_x0_y1_x1")
                    .and_then(serde_json::Value::as_array)
                    .map(|a| a.iter().filter_map(serde_json::Value::as_f64).collect())
                    .unwrap_or_default();
                let edges: [f64; 4] = edges.try_into().map_err(|_| bad("a box needs 4 edges"))?;
                let inpainting = task
                    .get("inpainting")
                    .and_then(serde_json::Value::as_bool)
                    .ok_or_else(|| bad("a task needs `inpainting`"))?;
                Ok(Self {
                    name: name.clone(),
                    edit_box: EditBox::new(edges)?,
                    outpaint: !inpainting,
                })
            })
            .collect()
    }
}

/// Runs every zero-shot edit case of `cases` (`edit.*`, from the official notebook) for
/// `tasks`: the mask from the box, the mask at every scale, the input image's tokens, and
/// for each cfg the tokens and f_hat after every scale and the final image.
pub async fn run_edit_cases(
    model: &Model,
    cases: &WeightFile<'_>,
    tasks: &[EditTask],
) -> Result<Vec<CaseResult>> {
    let mut c = Cases {
        file: cases,
        device: model.device().clone(),
        results: Vec::new(),
    };
    let patch_nums = &model.config.patch_nums;
    let big = model.config.latent_size();
    let image = c.float::<4>("edit.input_image")?;
    for task in tasks {
        let prefix = format!("edit.{}", task.name);
        let keep_pp = task.edit_box.keep_mask(big, task.outpaint);
        c.compare_exact(&format!("{prefix}.mask"), &keep_pp)?;
        let edit = Edit::encode(&model.vae, patch_nums, image.clone(), &keep_pp).await?;
        for (si, keep) in edit.keep.iter().enumerate() {
            let got: Vec<f32> = keep.iter().map(|&k| f32::from(u8::from(k))).collect();
            c.compare_exact(&format!("{prefix}.keep.{si}"), &got)?;
        }
        if task == &tasks[0] {
            for si in 0..patch_nums.len() {
                let got: Vec<i64> = edit
                    .input_idx
                    .iter()
                    .flat_map(|image| image[si].iter().map(|&t| t as i64))
                    .collect();
                c.compare_tokens(&format!("edit.input_idx.{si}"), &got)?;
            }
        }
        let (labels, _) = c.file.read_i64(&format!("{prefix}.labels"))?;
        let null = model.config.num_classes as i64;
        let labels: Vec<Option<usize>> = labels
            .iter()
            .map(|&l| (l != null).then_some(l as usize))
            .collect();
        for cfg_text in edit_cfgs(cases, &prefix) {
            let request = greedy_request(labels.clone(), parse_cfg(&cfg_text)?, Some(edit.clone()));
            let generation = Generation::new(model, request)?;
            run_generation(&mut c, generation, &format!("{prefix}.cfg{cfg_text}")).await?;
        }
    }
    if c.results.is_empty() {
        return Err(Error::Config("the cases file holds no edit case".into()));
    }
    Ok(c.results)
}

/// The cfg values with cases under `{prefix}.cfg…`, e.g. `1.0` and `4.0`.
fn edit_cfgs(cases: &WeightFile, prefix: &str) -> Vec<String> {
    let start = format!("{prefix}.cfg");
    let mut cfgs: Vec<String> = cases
        .names()
        .iter()
        .filter_map(|n| {
            n.strip_prefix(&start)?
                .strip_suffix(".idx.0")
                .map(String::from)
        })
        .collect();
    cfgs.sort();
    cfgs
}
