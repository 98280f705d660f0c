//! The VQ-VAE tokenizer's training loss and codebook-usage tracking.

use burn::tensor::{Int, Tensor};

use crate::error::Result;
use crate::vqvae::Vqvae;

/// Weight β of the commitment term (official `beta`).
pub const COMMIT_BETA: f64 = 0.25;

/// The loss terms of one VQ-VAE training step.
#[derive(Debug, Clone)]
pub struct VqvaeLoss {
    /// The sum to minimise: L1 + L2 + VQ.
    pub total: Tensor<1>,
    /// Mean absolute reconstruction error (images in [-1, 1]).
    pub l1: Tensor<1>,
    /// Mean squared reconstruction error.
    pub l2: Tensor<1>,
    /// Commitment + codebook loss averaged over scales.
    pub vq: Tensor<1>,
    /// Token maps per scale, for usage tracking.
    pub idx_bl: Vec<Tensor<2, Int>>,
    /// The encoder latent (detached), for dead-code re-initialisation.
    pub f_bchw: Tensor<4>,
}

/// Reconstruction and quantization losses of a batch: encode, quantize every scale with
/// the straight-through estimator, decode (unclamped).
///
/// # Shapes
/// - img: `[B, 3, H, W]` in [-1, 1]
pub fn vqvae_loss(vae: &Vqvae, img_b3hw: Tensor<4>) -> Result<VqvaeLoss> {
    let f_bchw = vae.img_to_f(img_b3hw.clone())?;
    let (f_hat_bchw, vq, idx_bl) = vae.quantize.forward_train(f_bchw.clone(), COMMIT_BETA);
    let recon_b3hw = vae.decoder.forward(vae.post_quant_conv.forward(f_hat_bchw));
    let diff = recon_b3hw - img_b3hw;
    let l1 = diff.clone().abs().mean();
    let l2 = diff.square().mean();
    Ok(VqvaeLoss {
        total: l1.clone() + l2.clone() + vq.clone(),
        l1,
        l2,
        vq,
        idx_bl,
        f_bchw: f_bchw.detach(),
    })
}

/// Hit counts of every code over a window of steps.
#[derive(Debug, Clone)]
pub struct CodeUsage {
    hits: Vec<u64>,
}

impl CodeUsage {
    /// Zero counts for a codebook of `vocab_size` codes.
    pub fn new(vocab_size: usize) -> Self {
        Self {
            hits: vec![0; vocab_size],
        }
    }

    /// Counts the codes of a batch's token maps.
    pub fn record(&mut self, tokens: &[i64]) {
        for &t in tokens {
            if let Some(h) = usize::try_from(t).ok().and_then(|t| self.hits.get_mut(t)) {
                *h += 1;
            }
        }
    }

    /// Share of codes used at least once.
    pub fn used_fraction(&self) -> f64 {
        self.hits.iter().filter(|&&h| h > 0).count() as f64 / self.hits.len() as f64
    }

    /// Perplexity of the code distribution (`exp` of its entropy).
    pub fn perplexity(&self) -> f64 {
        let total: u64 = self.hits.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let entropy: f64 = self
            .hits
            .iter()
            .filter(|&&h| h > 0)
            .map(|&h| {
                let p = h as f64 / total as f64;
                -p * p.ln()
            })
            .sum();
        entropy.exp()
    }

    /// Codes never hit in the window.
    pub fn dead(&self) -> Vec<usize> {
        (0..self.hits.len())
            .filter(|&i| self.hits[i] == 0)
            .collect()
    }

    /// Starts a new window.
    pub fn reset(&mut self) {
        self.hits.fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_and_perplexity() {
        let mut u = CodeUsage::new(4);
        u.record(&[0, 1, 0, 1]);
        assert_eq!(u.dead(), vec![2, 3]);
        assert!((u.used_fraction() - 0.5).abs() < 1e-12);
        assert!((u.perplexity() - 2.0).abs() < 1e-9);
        u.reset();
        assert_eq!(u.perplexity(), 0.0);
    }
}
