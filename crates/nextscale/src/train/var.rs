//! The VAR teacher's training loss: teacher forcing under the block-causal mask, with
//! cross-entropy over every token of every scale.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::error::Result;
use crate::readback::{read_f32, read_i64};
use crate::var::Var;
use crate::vqvae::Vqvae;

/// Token maps and teacher-forcing inputs of a set of images, computed once with the
/// tokenizer and kept in host memory.
#[derive(Debug, Clone)]
pub struct TokenCache {
    /// Tokens `[N, L]`, scales concatenated.
    pub tokens: Vec<i64>,
    /// Teacher-forcing inputs `[N, L − pn₀², Cvae]`.
    pub inputs: Vec<f32>,
    /// HMAR's refinement teacher-forcing inputs `[N, L − pn₀², Cvae]` (each scale's own
    /// tokens through φ).
    pub mask_inputs: Vec<f32>,
    /// Tokens per image (L).
    pub seq_len: usize,
    /// Input rows per image (L − pn₀²).
    pub input_len: usize,
    /// Cvae.
    pub cvae: usize,
}

impl TokenCache {
    /// Tokenizes images `[B, 3, H, W]` in [-1, 1] with the VQ-VAE (no gradients).
    pub async fn build(vae: &Vqvae, img_b3hw: Tensor<4>) -> Result<Self> {
        let idx_bl = vae.img_to_idx(img_b3hw)?;
        let b = idx_bl[0].dims()[0];
        let x_blcv = vae.quantize.idx_to_var_input(&idx_bl);
        let h_blcv = vae.quantize.idx_to_mask_input(&idx_bl);
        let [_, input_len, cvae] = x_blcv.dims();
        let tokens_bl = Tensor::cat(idx_bl, 1);
        let seq_len = tokens_bl.dims()[1];
        let tokens = read_i64(tokens_bl).await?;
        let inputs = read_f32(x_blcv).await?;
        let mask_inputs = read_f32(h_blcv).await?;
        debug_assert_eq!(tokens.len(), b * seq_len);
        Ok(Self {
            tokens,
            inputs,
            mask_inputs,
            seq_len,
            input_len,
            cvae,
        })
    }

    /// Appends another cache of the same model.
    pub fn extend(&mut self, other: TokenCache) {
        self.tokens.extend(other.tokens);
        self.inputs.extend(other.inputs);
        self.mask_inputs.extend(other.mask_inputs);
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.tokens.len() / self.seq_len
    }

    /// Whether the cache holds no image.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// A batch on `device`: inputs `[B, L − pn₀², Cvae]` and targets `[B, L]`.
    pub fn batch(&self, idx: &[usize], device: &Device) -> (Tensor<3>, Tensor<2, Int>) {
        let (l, li, c) = (self.seq_len, self.input_len, self.cvae);
        let mut tokens = Vec::with_capacity(idx.len() * l);
        let mut inputs = Vec::with_capacity(idx.len() * li * c);
        for &i in idx {
            tokens.extend_from_slice(&self.tokens[i * l..(i + 1) * l]);
            inputs.extend_from_slice(&self.inputs[i * li * c..(i + 1) * li * c]);
        }
        let b = idx.len();
        (
            Tensor::from_data(TensorData::new(inputs, [b, li, c]), device),
            Tensor::from_data(TensorData::new(tokens, [b, l]), device),
        )
    }

    /// HMAR's refinement inputs of a batch on `device`: `[B, L − pn₀², Cvae]`.
    pub fn mask_batch(&self, idx: &[usize], device: &Device) -> Tensor<3> {
        let (li, c) = (self.input_len, self.cvae);
        let mut inputs = Vec::with_capacity(idx.len() * li * c);
        for &i in idx {
            inputs.extend_from_slice(&self.mask_inputs[i * li * c..(i + 1) * li * c]);
        }
        Tensor::from_data(TensorData::new(inputs, [idx.len(), li, c]), device)
    }
}

/// Mean cross-entropy of the teacher-forced logits, and the token accuracy (detached).
///
/// # Shapes
/// - labels: `[B]` (the null class for dropped labels), x: `[B, L − pn₀², Cvae]`,
///   target: `[B, L]` → loss `[1]`, accuracy `[1]`
pub fn var_loss(
    var: &Var,
    labels_b: Tensor<1, Int>,
    x_blcv: Tensor<3>,
    target_bl: Tensor<2, Int>,
) -> (Tensor<1>, Tensor<1>) {
    cross_entropy(var.forward(labels_b, x_blcv), target_bl)
}

/// Mean cross-entropy of logits against target tokens, and the share of tokens whose
/// arg-max is the target (detached).
///
/// # Shapes
/// - logits: `[B, l, V]`, target: `[B, l]` → loss `[1]`, accuracy `[1]`
pub fn cross_entropy(logits_blv: Tensor<3>, target_bl: Tensor<2, Int>) -> (Tensor<1>, Tensor<1>) {
    let [b, l, v] = logits_blv.dims();
    let logits_nv = logits_blv.reshape([b * l, v]);
    let target_n1 = target_bl.reshape([b * l, 1]);
    let logp_nv = log_softmax(logits_nv.clone(), 1);
    let loss = logp_nv.gather(1, target_n1.clone()).mean().neg();
    let hit = logits_nv.detach().argmax(1).equal(target_n1).float().mean();
    (loss, hit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use crate::weights::ParamSource;

    #[test]
    fn cross_entropy_of_uniform_logits_is_log_v() {
        let config = ModelConfig::emoji32(9);
        let device = Device::flex();
        let mut src = ParamSource::random(0, &device);
        let var = Var::new(&mut src, &config).unwrap();
        let l = config.seq_len();
        let first = config.patch_nums[0] * config.patch_nums[0];
        let x = Tensor::<3>::zeros([2, l - first, config.cvae], &device);
        let target = Tensor::<2, Int>::zeros([2, l], &device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1], [2]), &device);
        let (loss, acc) = var_loss(&var, labels, x, target);
        let loss: f32 = loss.into_scalar();
        // Random init at std 0.02 gives nearly uniform logits.
        let log_v = (config.vocab_size as f32).ln();
        assert!((loss - log_v).abs() < 0.1, "{loss} vs {log_v}");
        let acc: f32 = acc.into_scalar();
        assert!((0.0..=1.0).contains(&acc));
    }
}
