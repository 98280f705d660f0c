//! The Distilled Decoding student ("Distilled Decoding 1: One-step Sampling of Image
//! Auto-regressive Models with Flow Matching", Liu et al. 2025,
//! <https://arxiv.org/abs/2412.17153>), with the semantics and `dd.*` tensor names of the
//! official microsoft/distilled_decoding `VAR/models/dd.py`.
//!
//! The student is a VAR transformer over `[1] + patch_nums` (a leading class slot) that maps
//! a whole noise sequence to the whole token sequence in one pass. It reuses [`Var`]'s
//! modules and adds the data/noise embedding `n_d_embed` with layer-wise linears and a
//! continuous head ([`FinalLayer`]).

pub mod flow;

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::nn::{Embedding, INIT_STD, Linear, layer_norm_plain};
use crate::readback::read_i64;
use crate::var::{Var, scale_mask};
use crate::vqvae::Vqvae;
use crate::weights::{DD_PREFIX, Init, ParamSource, VAE_PREFIX, WeightFile};

/// PixArt's final layer: `linear(ln(h)·(1+scale) + shift)` with `(shift, scale)` =
/// `scale_shift_table + cond` (note the order, the reverse of the AdaLN head's).
#[derive(Module, Debug)]
pub struct FinalLayer {
    linear: Linear,
    scale_shift_table: Param<Tensor<2>>,
}

impl FinalLayer {
    /// Builds `final_layer_conti.*`.
    pub fn new(src: &mut ParamSource, c: usize, cvae: usize) -> Result<Self> {
        Ok(Self {
            linear: Linear::new(src, "final_layer_conti.linear", c, cvae, true)?,
            scale_shift_table: src.param(
                "final_layer_conti.scale_shift_table",
                [2, c],
                Init::Normal(1.0 / (c as f64).sqrt()),
            )?,
        })
    }

    /// # Shapes
    /// - h: `[B, L, C]`, cond: `[B, C]` → `[B, L, Cvae]`
    pub fn forward(&self, h_blc: Tensor<3>, cond_bd: Tensor<2>) -> Tensor<3> {
        let [b, c] = cond_bd.dims();
        let table_2c = self.scale_shift_table.val();
        let shift_b1c = (table_2c.clone().narrow(0, 0, 1) + cond_bd.clone()).reshape([b, 1, c]);
        let scale_b1c = (table_2c.narrow(0, 1, 1) + cond_bd).reshape([b, 1, c]);
        self.linear
            .forward(layer_norm_plain(h_blc, 1e-6) * (scale_b1c + 1.0) + shift_b1c)
    }
}

/// The DD student (`dd.*` tensors).
#[derive(Module, Debug)]
pub struct DdModel {
    var: Var,
    n_d_embed: Embedding,
    layerwise_n_d_embed: Vec<Linear>,
    final_layer_conti: FinalLayer,
    /// `[1] + patch_nums`.
    patch_nums: Vec<usize>,
    /// Scales before this index take their tokens from the logits head.
    loss_split_t: usize,
}

impl DdModel {
    /// Builds every `dd.*` tensor for a teacher of `config` (without the prefix).
    pub fn new(src: &mut ParamSource, config: &ModelConfig, loss_split_t: usize) -> Result<Self> {
        let dd_config = Self::student_config(config);
        if loss_split_t > config.patch_nums.len() {
            return Err(Error::Config(format!(
                "loss_split_t {loss_split_t} exceeds the {} scales",
                config.patch_nums.len()
            )));
        }
        let c = config.embed_dim;
        let var = Var::new(src, &dd_config)?;
        let n_d_embed = Embedding::new(src, "n_d_embed", 2, c, INIT_STD)?;
        let layerwise_n_d_embed = (0..=config.depth)
            .map(|i| Linear::new(src, &format!("layerwise_n_d_embed.{i}"), c, c, true))
            .collect::<Result<Vec<_>>>()?;
        let final_layer_conti = FinalLayer::new(src, c, config.cvae)?;
        Ok(Self {
            var,
            n_d_embed,
            layerwise_n_d_embed,
            final_layer_conti,
            patch_nums: dd_config.patch_nums,
            loss_split_t,
        })
    }

    /// The teacher config with the extra leading 1×1 class slot.
    pub fn student_config(config: &ModelConfig) -> ModelConfig {
        let mut dd = config.clone();
        dd.patch_nums = std::iter::once(1)
            .chain(config.patch_nums.iter().copied())
            .collect();
        dd
    }

    /// Teacher-sequence positions that step `t` keeps as data (the first `t` scales).
    pub fn data_len(&self, t: usize) -> usize {
        self.seq_len() - 1 - self.accum(t + 1)
    }

    /// Teacher-sequence position from which the continuous head gives the tokens
    /// (the first token of scale `loss_split_t`).
    pub fn split_pos(&self) -> usize {
        self.data_len(self.loss_split_t)
    }

    /// Student sequence length (class slot included).
    fn seq_len(&self) -> usize {
        self.patch_nums.iter().map(|p| p * p).sum()
    }

    /// `accum_token_length[i]`: tokens in scales `i..` of the student schedule (0 past the end).
    fn accum(&self, i: usize) -> usize {
        self.patch_nums.iter().skip(i).map(|p| p * p).sum()
    }

    /// The DD mask: each scale sees strictly earlier scales and itself (its diagonal).
    fn mask(&self, device: &Device) -> Tensor<2> {
        scale_mask(&self.patch_nums, device, |q, k, same| q > k || same)
    }

    /// One forward pass at step `t`: the continuous and the logits predictions for every
    /// token (class slot dropped).
    ///
    /// # Shapes
    /// - labels: `[B]`, x: `[B, L, Cvae]` → (`[B, L, Cvae]`, `[B, L, V]`)
    pub fn forward(
        &self,
        labels_b: Tensor<1, Int>,
        x_blcv: Tensor<3>,
        t: usize,
    ) -> (Tensor<3>, Tensor<3>) {
        let device = x_blcv.device();
        let [b, _, _] = x_blcv.dims();
        let l = self.seq_len();
        let noise_idx = l - self.accum(t + 1);
        let cond_bd = self.var.cond(labels_b);
        let modulations = self.var.modulations(cond_bd.clone());
        let sos_blc = self.var.sos(cond_bd.clone());
        let rest_blc = self.var.word_embed(x_blcv) + self.var.lvl_pos(1, l);
        let n_d_idx: Vec<i64> = (0..l).map(|p| i64::from(p < noise_idx)).collect();
        let n_d_lc = self
            .n_d_embed
            .forward(Tensor::from_data(TensorData::new(n_d_idx, [l]), &device));
        let c = n_d_lc.dims()[1];
        let n_d_blc = n_d_lc.reshape([1, l, c]).expand([b, l, c]);
        let x_blc = Tensor::cat(vec![sos_blc, rest_blc], 1) + n_d_blc.clone();
        let depth = self.var.depth();
        let per_block: Vec<Tensor<3>> = self.layerwise_n_d_embed[..depth]
            .iter()
            .map(|lin| lin.forward(n_d_blc.clone()))
            .collect();
        let h_blc = self.var.hidden(
            x_blc,
            &modulations,
            Some(self.mask(&device)),
            None,
            Some(&per_block),
        );
        let h_blc = h_blc + self.layerwise_n_d_embed[depth].forward(n_d_blc);
        let logits_blv = self
            .var
            .logits(h_blc.clone(), &modulations)
            .narrow(1, 1, l - 1);
        let conti_blc = self
            .final_layer_conti
            .forward(h_blc, cond_bd)
            .narrow(1, 1, l - 1);
        (conti_blc, logits_blv)
    }

    /// One sampling step (`final_predict` then `get_final_sequence`): tokens before the
    /// kept prefix come from the input, scales below `loss_split_t` become codebook vectors
    /// of the argmax token, the rest the continuous prediction.
    ///
    /// # Shapes
    /// - x: `[B, L, Cvae]` → `[B, L, Cvae]`
    pub async fn step(
        &self,
        vae: &Vqvae,
        labels_b: Tensor<1, Int>,
        x_blcv: Tensor<3>,
        t: usize,
    ) -> Result<Tensor<3>> {
        let device = x_blcv.device();
        let [b, l, cv] = x_blcv.dims();
        let (conti_blc, logits_blv) = self.forward(labels_b, x_blcv.clone(), t);
        let keep = self.data_len(t);
        let concat_pos = self.split_pos();
        let model_idx = read_i64(logits_blv.argmax(2).reshape([b * l])).await?;
        let near_idx = read_i64(vae.quantize.nearest(x_blcv.clone().reshape([b * l, cv]))).await?;
        let idx: Vec<i64> = (0..b * l)
            .map(|i| {
                if i % l < keep {
                    near_idx[i]
                } else {
                    model_idx[i]
                }
            })
            .collect();
        let codes_blc = vae
            .quantize
            .embedding
            .forward(Tensor::from_data(TensorData::new(idx, [b * l]), &device))
            .reshape([b, l, cv]);
        let predicted: Vec<f32> = (0..l).map(|p| if p >= keep { 1.0 } else { 0.0 }).collect();
        let m_1l1 = Tensor::<3>::from_data(TensorData::new(predicted, [1, l, 1]), &device);
        let conti_blc = conti_blc * m_1l1.clone() + x_blcv * (m_1l1.neg() + 1.0);
        // `loss_split_t` may be 0 (all continuous) or the scale count (all tokens).
        Ok(match concat_pos {
            0 => conti_blc,
            p if p == l => codes_blc,
            p => Tensor::cat(
                vec![codes_blc.narrow(1, 0, p), conti_blc.narrow(1, p, l - p)],
                1,
            ),
        })
    }

    /// Prepares the input of step `t`: the first `t` scales of `x` kept, the rest replaced
    /// by the *same* `noise` the sampling started from.
    ///
    /// # Shapes
    /// - x, noise: `[B, L, Cvae]` → `[B, L, Cvae]`
    pub fn renoise(&self, x_blc: Tensor<3>, noise_blc: Tensor<3>, t: usize) -> Result<Tensor<3>> {
        if t + 1 >= self.patch_nums.len() {
            return Err(Error::BadRequest(format!(
                "step t={t} is past the last scale"
            )));
        }
        let device = noise_blc.device();
        let l = noise_blc.dims()[1];
        let keep = l - self.accum(t + 1);
        let noisy: Vec<f32> = (0..l).map(|p| if p >= keep { 1.0 } else { 0.0 }).collect();
        let m_1l1 = Tensor::<3>::from_data(TensorData::new(noisy, [1, l, 1]), &device);
        Ok(x_blc * (m_1l1.clone().neg() + 1.0) + noise_blc * m_1l1)
    }

    /// Few-step sampling: for each t in `t_list`, keep the first t scales of the current
    /// sequence, re-noise the rest with the *same* `noise`, and predict again.
    ///
    /// # Shapes
    /// - noise: `[B, L, Cvae]` → `[B, L, Cvae]`
    pub async fn sample(
        &self,
        vae: &Vqvae,
        labels_b: Tensor<1, Int>,
        noise_blc: Tensor<3>,
        t_list: &[usize],
    ) -> Result<Tensor<3>> {
        let mut x_blc = noise_blc.clone();
        for &t in t_list {
            x_blc = self.renoise(x_blc, noise_blc.clone(), t)?;
            x_blc = self.step(vae, labels_b.clone(), x_blc, t).await?;
        }
        Ok(x_blc)
    }

    /// Assembles f_hat from a token-vector sequence scale by scale.
    ///
    /// # Shapes
    /// - seq: `[B, L, Cvae]` → `[B, Cvae, HW, HW]`
    pub fn sequence_to_fhat(&self, vae: &Vqvae, seq_blc: Tensor<3>) -> Tensor<4> {
        let [b, _, cv] = seq_blc.dims();
        let teacher_pns = &self.patch_nums[1..];
        let hw = *teacher_pns.last().expect("validated");
        let mut f_hat = Tensor::zeros([b, cv, hw, hw], &seq_blc.device());
        let mut cur = 0;
        for (si, &pn) in teacher_pns.iter().enumerate() {
            let h_bchw = seq_blc
                .clone()
                .narrow(1, cur, pn * pn)
                .swap_dims(1, 2)
                .reshape([b, cv, pn, pn]);
            f_hat = vae.quantize.next_input(si, f_hat, h_bchw).0;
            cur += pn * pn;
        }
        f_hat
    }

    /// Assembles f_hat from a token-vector sequence and decodes it to [0, 1].
    ///
    /// # Shapes
    /// - seq: `[B, L, Cvae]` → `[B, 3, H, W]`
    pub fn sequence_to_image(&self, vae: &Vqvae, seq_blc: Tensor<3>) -> Tensor<4> {
        (vae.fhat_to_img(self.sequence_to_fhat(vae, seq_blc)) + 1.0) * 0.5
    }
}

/// A VQ-VAE with its DD student, loaded from one file (`vae.` and `dd.` tensors).
#[derive(Debug)]
pub struct DdPair {
    /// The tokenizer.
    pub vae: Vqvae,
    /// The student.
    pub dd: DdModel,
}

impl DdPair {
    /// Loads and validates the `vae.` and `dd.` tensors of `file`; other tensors are errors.
    pub fn from_weights(
        config: &ModelConfig,
        loss_split_t: usize,
        file: &WeightFile,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let stray: Vec<String> = file
            .names()
            .into_iter()
            .filter(|n| !n.starts_with(VAE_PREFIX) && !n.starts_with(DD_PREFIX))
            .collect();
        if !stray.is_empty() {
            return Err(Error::ExtraTensors(stray));
        }
        let mut vae_src = ParamSource::load(file, VAE_PREFIX, device);
        let vae = Vqvae::new(&mut vae_src, config)?;
        vae_src.finish()?;
        let mut dd_src = ParamSource::load(file, DD_PREFIX, device);
        let dd = DdModel::new(&mut dd_src, config, loss_split_t)?;
        dd_src.finish()?;
        Ok(Self { vae, dd })
    }
}
