//! Distillation of the Distilled-Decoding student (DESIGN §2): the training pairs the
//! teacher produced with the flow map Ψ (noise sequence → tokens, per class), the
//! student's initialisation from the teacher (`init_with_teacher`), and its loss —
//! cross-entropy on the scales below `loss_split_t`, MSE in Cvae space on the rest.

use std::collections::HashMap;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::dd::DdModel;
use crate::error::{Error, Result};
use crate::train::{StateDict, state_dict};
use crate::weights::{DD_PREFIX, ParamSource, VAR_PREFIX, WeightFile};

/// Metadata key of the [`DistillInfo`] JSON in a pairs file.
pub const DISTILL_METADATA_KEY: &str = "nextscale.distill";

/// How the pairs were made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillInfo {
    /// Guidance strength of the teacher.
    pub cfg: f64,
    /// Its top-k mask.
    pub top_k: usize,
    /// Its top-p mask.
    pub top_p: f64,
    /// Euler steps of Ψ.
    pub flow_steps: usize,
    /// Pair i used the noise of seed `seed + i` and class `i mod num_classes`, under the
    /// class-embedding row its `labels` entry holds (a subclass, if the teacher has them).
    pub seed: u64,
    /// The teacher's config JSON (the student must match it).
    pub teacher_config: String,
}

/// (noise, tokens, class) triples: the student's training set.
#[derive(Debug, Clone)]
pub struct DistillPairs {
    /// Noise `[N, L, Cvae]`.
    pub noise: Vec<f32>,
    /// Tokens `[N, L]`, scales concatenated.
    pub tokens: Vec<i64>,
    /// Class of each pair `[N]`.
    pub labels: Vec<i64>,
    /// Tokens per sequence (L).
    pub seq_len: usize,
    /// Cvae.
    pub cvae: usize,
    /// Provenance.
    pub info: DistillInfo,
}

impl DistillPairs {
    /// An empty set for sequences of `seq_len` tokens of `cvae` channels.
    pub fn new(seq_len: usize, cvae: usize, info: DistillInfo) -> Self {
        Self {
            noise: Vec::new(),
            tokens: Vec::new(),
            labels: Vec::new(),
            seq_len,
            cvae,
            info,
        }
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no pair.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Appends one pair; the lengths must match the set's.
    pub fn push(&mut self, noise: &[f32], tokens: &[u32], label: usize) -> Result<()> {
        if noise.len() != self.seq_len * self.cvae || tokens.len() != self.seq_len {
            return Err(Error::BadRequest(format!(
                "a pair needs {}×{} noise values and {} tokens, got {} and {}",
                self.seq_len,
                self.cvae,
                self.seq_len,
                noise.len(),
                tokens.len()
            )));
        }
        self.noise.extend_from_slice(noise);
        self.tokens.extend(tokens.iter().map(|&t| t as i64));
        self.labels.push(label as i64);
        Ok(())
    }

    /// The safetensors file: `noise` f32 `[N, L, Cvae]`, `tokens` i32 `[N, L]`, `labels`
    /// i32 `[N]`, and the [`DistillInfo`] in the metadata.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let n = self.len();
        let noise: Vec<u8> = self.noise.iter().flat_map(|v| v.to_le_bytes()).collect();
        let i32_bytes =
            |v: &[i64]| -> Vec<u8> { v.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect() };
        let (tokens, labels) = (i32_bytes(&self.tokens), i32_bytes(&self.labels));
        let bad = |e: safetensors::SafeTensorError| Error::BadHeader(e.to_string());
        let views = vec![
            (
                "noise",
                TensorView::new(Dtype::F32, vec![n, self.seq_len, self.cvae], &noise)
                    .map_err(bad)?,
            ),
            (
                "tokens",
                TensorView::new(Dtype::I32, vec![n, self.seq_len], &tokens).map_err(bad)?,
            ),
            (
                "labels",
                TensorView::new(Dtype::I32, vec![n], &labels).map_err(bad)?,
            ),
        ];
        let info = serde_json::to_string(&self.info).map_err(|e| Error::Config(e.to_string()))?;
        let metadata = HashMap::from([(DISTILL_METADATA_KEY.to_string(), info)]);
        safetensors::serialize(views, Some(metadata)).map_err(bad)
    }

    /// Parses and validates a pairs file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        SafeTensors::deserialize(bytes).map_err(|e| Error::BadHeader(e.to_string()))?;
        let file = WeightFile::parse(bytes)?;
        let info: DistillInfo = serde_json::from_str(
            file.metadata(DISTILL_METADATA_KEY)
                .ok_or_else(|| Error::Config(format!("no `{DISTILL_METADATA_KEY}` metadata")))?,
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        let (noise, noise_shape) = file.read_f32("noise")?;
        let (tokens, token_shape) = file.read_i64("tokens")?;
        let (labels, label_shape) = file.read_i64("labels")?;
        let [n, seq_len, cvae] = noise_shape[..] else {
            return Err(Error::Config(format!(
                "noise has shape {noise_shape:?}, not [N, L, Cvae]"
            )));
        };
        if token_shape != [n, seq_len] || label_shape != [n] {
            return Err(Error::Config(format!(
                "tokens {token_shape:?} and labels {label_shape:?} do not match noise {noise_shape:?}"
            )));
        }
        Ok(Self {
            noise,
            tokens,
            labels,
            seq_len,
            cvae,
            info,
        })
    }

    /// A batch on `device`: noise `[B, L, Cvae]`, tokens `[B, L]`, labels `[B]`.
    pub fn batch(
        &self,
        idx: &[usize],
        device: &Device,
    ) -> (Tensor<3>, Tensor<2, Int>, Tensor<1, Int>) {
        let (l, c, b) = (self.seq_len, self.cvae, idx.len());
        let mut noise = Vec::with_capacity(b * l * c);
        let mut tokens = Vec::with_capacity(b * l);
        for &i in idx {
            noise.extend_from_slice(&self.noise[i * l * c..(i + 1) * l * c]);
            tokens.extend_from_slice(&self.tokens[i * l..(i + 1) * l]);
        }
        let labels: Vec<i64> = idx.iter().map(|&i| self.labels[i]).collect();
        (
            Tensor::from_data(TensorData::new(noise, [b, l, c]), device),
            Tensor::from_data(TensorData::new(tokens, [b, l]), device),
            Tensor::from_data(TensorData::new(labels, [b]), device),
        )
    }
}

/// The student's initial parameters (`dd.*`) from the teacher's (`var.*`), as the official
/// `init_with_teacher` does: every teacher tensor is copied; `lvl_embed` and `pos_1LC` get
/// their new row 1 (the class slot) at random and the teacher's rows after it; `n_d_embed`,
/// the layer-wise linears and the continuous head stay at random. (The official code also
/// re-draws the class-1 embedding, an evident slip we do not copy.)
pub fn init_with_teacher(
    config: &ModelConfig,
    teacher: &StateDict,
    seed: u64,
) -> Result<StateDict> {
    let host = Device::flex();
    let dd_config = config.dd.as_ref().ok_or_else(|| {
        Error::Config("the config has no `dd` settings (loss_split_t, t_list)".into())
    })?;
    let mut src = ParamSource::random(seed, &host).with_prefix(DD_PREFIX);
    let student = DdModel::new(&mut src, config, dd_config.loss_split_t)?;
    let mut out = state_dict(&student, src.names())?;
    let mut copied = 0;
    for (name, (shape, values)) in out.iter_mut() {
        let Some(key) = name.strip_prefix(DD_PREFIX) else {
            continue;
        };
        let Some((t_shape, t_values)) = teacher.get(&format!("{VAR_PREFIX}{key}")) else {
            continue;
        };
        copied += 1;
        match key {
            // Rows `[0, new, 1, 2, …]` of `[K + 1, C]`; positions likewise in `[1, L + 1, C]`.
            "lvl_embed.weight" | "pos_1LC" => {
                let c = *shape.last().expect("2-D or 3-D");
                if t_values.len() + c != values.len() {
                    return Err(Error::ShapeMismatch {
                        name: format!("{VAR_PREFIX}{key}"),
                        actual: t_shape.clone(),
                        expected: shape.clone(),
                    });
                }
                values[..c].copy_from_slice(&t_values[..c]);
                values[2 * c..].copy_from_slice(&t_values[c..]);
            }
            _ if t_shape == shape => values.copy_from_slice(t_values),
            _ => {
                return Err(Error::ShapeMismatch {
                    name: format!("{VAR_PREFIX}{key}"),
                    actual: t_shape.clone(),
                    expected: shape.clone(),
                });
            }
        }
    }
    let teacher_count = teacher.keys().filter(|k| k.starts_with(VAR_PREFIX)).count();
    if copied != teacher_count {
        return Err(Error::Config(format!(
            "only {copied} of the teacher's {teacher_count} tensors have a student counterpart"
        )));
    }
    Ok(out)
}

/// The parts of the student's loss (each detached but `loss`).
#[derive(Debug, Clone)]
pub struct DdLoss {
    /// `ce + mse_weight · mse`, to minimise.
    pub loss: Tensor<1>,
    /// Cross-entropy over the predicted tokens below `loss_split_t` (0 if none).
    pub ce: f32,
    /// Their argmax accuracy (0 if none).
    pub accuracy: f32,
    /// MSE to the codebook vectors over the predicted tokens from `loss_split_t` on.
    pub mse: f32,
}

/// The regression weight that puts the MSE on the scale of the codebook: 1 / the mean
/// per-channel variance of the codes, so predicting the mean code costs about 1.
pub fn mse_weight(codebook_vc: &[f32], cvae: usize) -> f32 {
    let v = codebook_vc.len() / cvae.max(1);
    let var: f64 = (0..cvae)
        .map(|c| {
            let col = codebook_vc.iter().skip(c).step_by(cvae).map(|&x| x as f64);
            let mean = col.clone().sum::<f64>() / v as f64;
            col.map(|x| (x - mean).powi(2)).sum::<f64>() / v as f64
        })
        .sum::<f64>()
        / cvae as f64;
    if var > 0.0 { (1.0 / var) as f32 } else { 1.0 }
}

/// The student's loss at step `t`: the first `t` scales are data (codebook vectors of the
/// tokens), the rest the pair's noise; every position from `t` on is predicted.
///
/// # Shapes
/// - codebook: `[V, Cvae]`, labels: `[B]`, noise: `[B, L, Cvae]`, tokens: `[B, L]`
pub fn dd_loss(
    student: &DdModel,
    codebook_vc: Tensor<2>,
    labels_b: Tensor<1, Int>,
    noise_blc: Tensor<3>,
    tokens_bl: Tensor<2, Int>,
    t: usize,
    mse_weight: f32,
) -> Result<DdLoss> {
    let [b, l, cv] = noise_blc.dims();
    let device = noise_blc.device();
    let keep = student.data_len(t);
    let split = student.split_pos().max(keep);
    let target_blc = codebook_vc
        .detach()
        .select(0, tokens_bl.clone().reshape([b * l]))
        .reshape([b, l, cv]);
    let data: Vec<f32> = (0..l).map(|p| if p < keep { 1.0 } else { 0.0 }).collect();
    let data_1l1 = Tensor::<3>::from_data(TensorData::new(data, [1, l, 1]), &device);
    let x_blc = target_blc.clone() * data_1l1.clone() + noise_blc * (data_1l1.neg() + 1.0);
    let (conti_blc, logits_blv) = student.forward(labels_b, x_blc, t);
    let mut loss = Tensor::<1>::zeros([1], &device);
    let (mut ce, mut accuracy, mut mse) = (0.0, 0.0, 0.0);
    if split > keep {
        let n = split - keep;
        let v = logits_blv.dims()[2];
        let logits_nv = logits_blv.narrow(1, keep, n).reshape([b * n, v]);
        let target_n1 = tokens_bl.narrow(1, keep, n).reshape([b * n, 1]);
        let ce_t = log_softmax(logits_nv.clone(), 1)
            .gather(1, target_n1.clone())
            .mean()
            .neg();
        accuracy = logits_nv
            .detach()
            .argmax(1)
            .equal(target_n1)
            .float()
            .mean()
            .into_scalar::<f32>();
        ce = ce_t.clone().detach().into_scalar::<f32>();
        loss = loss + ce_t;
    }
    if l > split {
        let n = l - split;
        let diff = conti_blc.narrow(1, split, n) - target_blc.narrow(1, split, n);
        let mse_t = diff.powi_scalar(2).mean();
        mse = mse_t.clone().detach().into_scalar::<f32>();
        loss = loss + mse_t * mse_weight;
    }
    if !loss.clone().detach().into_scalar::<f32>().is_finite() {
        return Err(Error::BadRequest(format!(
            "the loss at step t={t} is not finite"
        )));
    }
    Ok(DdLoss {
        loss,
        ce,
        accuracy,
        mse,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::var::Var;

    fn info() -> DistillInfo {
        DistillInfo {
            cfg: 1.5,
            top_k: 900,
            top_p: 0.96,
            flow_steps: 32,
            seed: 5,
            teacher_config: "{}".into(),
        }
    }

    #[test]
    fn mse_weight_is_the_inverse_code_variance() {
        // Channel 0 takes ±1 (variance 1), channel 1 takes ±3 (variance 9): mean 5.
        let codes = [1.0, 3.0, -1.0, -3.0, 1.0, -3.0, -1.0, 3.0];
        assert!((mse_weight(&codes, 2) - 0.2).abs() < 1e-6);
        assert_eq!(mse_weight(&[0.5; 4], 2), 1.0);
    }

    #[test]
    fn pairs_round_trip_and_reject_bad_lengths() {
        let mut pairs = DistillPairs::new(3, 2, info());
        pairs
            .push(&[0.5, -1.0, 2.0, 0.0, 1.5, -0.25], &[7, 0, 3], 2)
            .unwrap();
        pairs.push(&[1.0; 6], &[1, 2, 3], 0).unwrap();
        assert!(pairs.push(&[1.0; 5], &[1, 2, 3], 0).is_err());
        assert!(pairs.push(&[1.0; 6], &[1, 2], 0).is_err());
        let back = DistillPairs::from_bytes(&pairs.to_bytes().unwrap()).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back.noise, pairs.noise);
        assert_eq!(back.tokens, vec![7, 0, 3, 1, 2, 3]);
        assert_eq!(back.labels, vec![2, 0]);
        assert_eq!(back.info, info());
        let (noise, tokens, labels) = back.batch(&[1, 0], &Device::flex());
        assert_eq!(noise.dims(), [2, 3, 2]);
        let ints = |t: burn::tensor::TensorData| t.iter::<i64>().collect::<Vec<_>>();
        assert_eq!(ints(tokens.into_data()), vec![1, 2, 3, 7, 0, 3]);
        assert_eq!(ints(labels.into_data()), vec![0, 2]);
        assert!(DistillPairs::from_bytes(b"garbage").is_err());
    }

    #[test]
    fn init_with_teacher_copies_and_shifts_the_teacher() {
        let config = ModelConfig::emoji32_tiny(3);
        let device = Device::flex();
        let mut src = ParamSource::random(1, &device).with_prefix(VAR_PREFIX);
        let var = Var::new(&mut src, &config).unwrap();
        let teacher = state_dict(&var, src.names()).unwrap();
        let student = init_with_teacher(&config, &teacher, 2).unwrap();
        let c = config.embed_dim;
        for (name, (shape, values)) in &teacher {
            let key = name.strip_prefix(VAR_PREFIX).unwrap();
            let (s_shape, s_values) = &student[&format!("{DD_PREFIX}{key}")];
            if key == "lvl_embed.weight" || key == "pos_1LC" {
                assert_eq!(s_values.len(), values.len() + c, "{key}");
                assert_eq!(&s_values[..c], &values[..c], "{key} row 0");
                assert_eq!(&s_values[2 * c..], &values[c..], "{key} rows 1..");
            } else {
                assert_eq!((s_shape, s_values), (shape, values), "{key}");
            }
        }
        for extra in ["n_d_embed.weight", "final_layer_conti.scale_shift_table"] {
            assert!(
                student.contains_key(&format!("{DD_PREFIX}{extra}")),
                "{extra}"
            );
        }
        let mut wrong = teacher.clone();
        wrong.get_mut("var.head.weight").unwrap().0 = vec![1, 1];
        assert!(init_with_teacher(&config, &wrong, 2).is_err());
    }
}
