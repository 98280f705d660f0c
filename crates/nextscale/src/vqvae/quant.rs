//! The multi-scale residual quantizer (official `quant.VectorQuantizer2`): nearest-code
//! lookup per scale, bicubic up-sampling, the φ refinement and f_hat accumulation.

use burn::module::Module;
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::nn::{Conv2d, Embedding};
use crate::resample::{Resample, ResampleMode};
use crate::weights::ParamSource;

/// φ: a 3×3 conv mixed with its input, `(1−q)·h + q·conv(h)`.
#[derive(Module, Debug)]
pub struct Phi {
    conv: Conv2d,
    ratio: f64,
}

impl Phi {
    /// # Shapes
    /// - h: `[B, Cvae, H, W]` → `[B, Cvae, H, W]`
    pub fn forward(&self, h_bchw: Tensor<4>) -> Tensor<4> {
        if self.ratio.abs() < 1e-6 {
            return h_bchw;
        }
        h_bchw.clone() * (1.0 - self.ratio) + self.conv.forward(h_bchw) * self.ratio
    }
}

/// `np.linspace(start, stop, num)` in f64, bit for bit.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let step = (stop - start) / (num - 1) as f64;
    let mut v: Vec<f64> = (0..num).map(|i| i as f64 * step + start).collect();
    v[num - 1] = stop;
    v
}

/// Which of `n` φ convolutions scale `si` of `sn` uses, as the official `Phi*Shared[si/(SN−1)]`:
/// the tick nearest `si/(SN−1)`, first index on ties (numpy `argmin`, float64).
pub fn phi_index(share_quant_resi: usize, si: usize, sn: usize) -> usize {
    let n = match share_quant_resi {
        1 => return 0,
        0 => sn,
        n => n,
    };
    let k = n as f64;
    let ticks = if n == 4 {
        linspace(1.0 / 3.0 / k, 1.0 - 1.0 / 3.0 / k, n)
    } else {
        linspace(1.0 / 2.0 / k, 1.0 - 1.0 / 2.0 / k, n)
    };
    let at = si as f64 / (sn - 1) as f64;
    let mut best = 0;
    for (i, t) in ticks.iter().enumerate() {
        if (t - at).abs() < (ticks[best] - at).abs() {
            best = i;
        }
    }
    best
}

/// The residual quantizer with its codebook, φ list and precomputed resamplers.
#[derive(Module, Debug)]
pub struct VectorQuantizer2 {
    /// Codebook `[V, Cvae]`.
    pub embedding: Embedding,
    phis: Vec<Phi>,
    /// φ index per scale.
    phi_of_scale: Vec<usize>,
    patch_nums: Vec<usize>,
    /// Bicubic pn → latent side, per scale (the last is the identity and unused).
    #[module(skip)]
    up: Vec<Resample>,
    /// Area latent side → pn, per scale.
    #[module(skip)]
    down: Vec<Resample>,
}

impl VectorQuantizer2 {
    /// Builds `quantize.embedding.weight` and the φ convs named as `share_quant_resi` implies.
    pub fn new(src: &mut ParamSource, config: &ModelConfig) -> Result<Self> {
        let c = config.cvae;
        let embedding = Embedding::new(src, "quantize.embedding", config.vocab_size, c, 1.0)?;
        let names: Vec<String> = match config.share_quant_resi {
            0 => (0..config.num_phi())
                .map(|i| format!("quantize.quant_resi.{i}"))
                .collect(),
            1 => vec!["quantize.quant_resi.qresi".to_string()],
            n => (0..n)
                .map(|i| format!("quantize.quant_resi.qresi_ls.{i}"))
                .collect(),
        };
        let ratio = config.quant_resi.abs();
        let mut phis = Vec::with_capacity(names.len());
        for name in names {
            phis.push(Phi {
                conv: Conv2d::new(src, &name, c, c, 3)?,
                ratio,
            });
        }
        let sn = config.patch_nums.len();
        let phi_of_scale = (0..sn)
            .map(|si| phi_index(config.share_quant_resi, si, sn))
            .collect();
        let (up, down) = Self::resamplers(&config.patch_nums, src.device());
        Ok(Self {
            embedding,
            phis,
            phi_of_scale,
            patch_nums: config.patch_nums.clone(),
            up,
            down,
        })
    }

    fn resamplers(patch_nums: &[usize], device: &Device) -> (Vec<Resample>, Vec<Resample>) {
        let hw = *patch_nums.last().expect("validated");
        let up = patch_nums
            .iter()
            .map(|&pn| Resample::new(ResampleMode::Bicubic, pn, hw, device))
            .collect();
        let down = patch_nums
            .iter()
            .map(|&pn| Resample::new(ResampleMode::Area, hw, pn, device))
            .collect();
        (up, down)
    }

    /// The scale schedule.
    pub fn patch_nums(&self) -> &[usize] {
        &self.patch_nums
    }

    fn last(&self) -> usize {
        self.patch_nums.len() - 1
    }

    /// Up-samples a scale's code map to the latent side (bicubic) and applies its φ.
    ///
    /// # Shapes
    /// - h: `[B, Cvae, pn, pn]` → `[B, Cvae, HW, HW]`
    pub fn scale_residual(&self, si: usize, h_bchw: Tensor<4>) -> Tensor<4> {
        let h_bchw = if si != self.last() {
            self.up[si].forward(h_bchw)
        } else {
            h_bchw
        };
        self.phis[self.phi_of_scale[si]].forward(h_bchw)
    }

    /// Area-downsamples the latent f_hat to scale `si`.
    ///
    /// # Shapes
    /// - f: `[B, Cvae, HW, HW]` → `[B, Cvae, pn, pn]`
    pub fn area_down(&self, si: usize, f_bchw: Tensor<4>) -> Tensor<4> {
        self.down[si].forward(f_bchw)
    }

    /// Codebook vectors of token maps.
    ///
    /// # Shapes
    /// - idx: `[B, pn·pn]` → `[B, Cvae, pn, pn]`
    pub fn lookup(&self, idx_bl: Tensor<2, Int>) -> Tensor<4> {
        let [b, l] = idx_bl.dims();
        let pn = (l as f64).sqrt().round() as usize;
        let h_nc = self.embedding.forward(idx_bl.reshape([b * l]));
        let c = h_nc.dims()[1];
        h_nc.reshape([b, l, c])
            .swap_dims(1, 2)
            .reshape([b, c, pn, pn])
    }

    /// Index of the nearest code (squared L2) for each row.
    ///
    /// # Shapes
    /// - z: `[N, Cvae]` → `[N]`
    pub fn nearest(&self, z_nc: Tensor<2>) -> Tensor<1, Int> {
        let e_vc = self.embedding.weight.val().detach();
        let z_nc = z_nc.detach();
        let z_sq_n1 = z_nc.clone().square().sum_dim(1);
        let e_sq_1v = e_vc.clone().square().sum_dim(1).swap_dims(0, 1);
        let d_nv = z_sq_n1 + e_sq_1v - z_nc.matmul(e_vc.transpose()) * 2.0;
        let n = d_nv.dims()[0];
        d_nv.argmin(1).reshape([n])
    }

    /// One scale of the residual quantization: the residual area-downsampled to scale
    /// `si`, its nearest codes, and their contribution to f_hat (bicubic up + φ).
    ///
    /// # Shapes
    /// - f_rest: `[B, Cvae, HW, HW]` → idx `[B, pn²]`, h `[B, Cvae, HW, HW]`
    fn quantize_scale(&self, si: usize, f_rest_bchw: Tensor<4>) -> (Tensor<2, Int>, Tensor<4>) {
        let [b, c, _, _] = f_rest_bchw.dims();
        let pn = self.patch_nums[si];
        let z_bchw = if si != self.last() {
            self.area_down(si, f_rest_bchw)
        } else {
            f_rest_bchw
        };
        let z_nc = z_bchw.permute([0, 2, 3, 1]).reshape([b * pn * pn, c]);
        let idx_bl = self.nearest(z_nc).reshape([b, pn * pn]);
        let h_bchw = self.scale_residual(si, self.lookup(idx_bl.clone()));
        (idx_bl, h_bchw)
    }

    /// Quantizes a latent scale by scale (`f_to_idxBl_or_fhat`).
    /// Returns the token maps `[B, pn²]` and f_hat after each scale `[B, Cvae, HW, HW]`.
    pub fn encode(&self, f_bchw: Tensor<4>) -> (Vec<Tensor<2, Int>>, Vec<Tensor<4>>) {
        let mut f_rest = f_bchw.clone();
        let mut f_hat = f_bchw.zeros_like();
        let mut idx_list = Vec::new();
        let mut f_hats = Vec::new();
        for si in 0..self.patch_nums.len() {
            let (idx_bl, h_bchw) = self.quantize_scale(si, f_rest.clone());
            f_hat = f_hat + h_bchw.clone();
            f_rest = f_rest - h_bchw;
            idx_list.push(idx_bl);
            f_hats.push(f_hat.clone());
        }
        (idx_list, f_hats)
    }

    /// The training forward (official `VectorQuantizer2.forward`): quantizes every scale
    /// of the latent, and returns the straight-through f_hat (its gradient flows to `f`
    /// unchanged), the VQ loss averaged over scales — `β·‖sg(f̂ₛ) − f‖² + ‖f̂ₛ − sg(f)‖²`,
    /// committing the encoder and training the codebook and φ — and the token maps.
    ///
    /// # Shapes
    /// - f: `[B, Cvae, HW, HW]` → f_hat `[B, Cvae, HW, HW]`, loss `[1]`, idx `[B, pn²]` per scale
    pub fn forward_train(
        &self,
        f_bchw: Tensor<4>,
        beta: f64,
    ) -> (Tensor<4>, Tensor<1>, Vec<Tensor<2, Int>>) {
        let f_no_grad = f_bchw.clone().detach();
        let mut f_rest = f_no_grad.clone();
        let mut f_hat = f_no_grad.zeros_like();
        let mut idx_list = Vec::with_capacity(self.patch_nums.len());
        let mut loss = Tensor::<1>::zeros([1], &f_bchw.device());
        for si in 0..self.patch_nums.len() {
            let (idx_bl, h_bchw) = self.quantize_scale(si, f_rest.clone());
            f_hat = f_hat + h_bchw.clone();
            f_rest = f_rest - h_bchw.detach();
            let commit = (f_hat.clone().detach() - f_bchw.clone()).square().mean() * beta;
            let codebook = (f_hat.clone() - f_no_grad.clone()).square().mean();
            loss = loss + commit + codebook;
            idx_list.push(idx_bl);
        }
        let loss = loss / self.patch_nums.len() as f64;
        let f_hat_st = (f_hat.detach() - f_no_grad) + f_bchw;
        (f_hat_st, loss, idx_list)
    }

    /// Replaces codebook rows `codes` with the given vectors (dead-code re-initialisation
    /// during training), keeping the parameter's identity.
    ///
    /// # Shapes
    /// - vectors: `[codes.len(), Cvae]`
    pub fn reinit_codes(self, codes: &[usize], vectors_nc: Tensor<2>) -> Self {
        if codes.is_empty() {
            return self;
        }
        let device = vectors_nc.device();
        let idx: Vec<i64> = codes.iter().map(|&c| c as i64).collect();
        let idx_n = Tensor::<1, Int>::from_data(TensorData::new(idx, [codes.len()]), &device);
        let mut this = self;
        this.embedding.weight = this.embedding.weight.map(|e_vc| {
            let e_vc = e_vc.detach().select_assign(
                0,
                idx_n,
                vectors_nc.detach(),
                IndexingUpdateOp::Assign,
            );
            // A fresh leaf: autodiff only lets leaves require gradients.
            Tensor::from_data(e_vc.into_data(), &device).require_grad()
        });
        this
    }

    /// f_hat after each scale from token maps (`embed_to_fhat`, all to the max scale).
    pub fn idx_to_fhats(&self, idx_bl: &[Tensor<2, Int>]) -> Vec<Tensor<4>> {
        let mut f_hats: Vec<Tensor<4>> = Vec::with_capacity(idx_bl.len());
        for (si, idx) in idx_bl.iter().enumerate() {
            let h_bchw = self.scale_residual(si, self.lookup(idx.clone()));
            let f_hat = match f_hats.last() {
                Some(prev) => prev.clone() + h_bchw,
                None => h_bchw,
            };
            f_hats.push(f_hat);
        }
        f_hats
    }

    /// The teacher-forcing input (`idxBl_to_var_input`): after each scale but the last,
    /// f_hat area-downsampled to the next scale, flattened.
    ///
    /// # Shapes
    /// - returns `[B, L − pn₀², Cvae]`
    pub fn idx_to_var_input(&self, idx_bl: &[Tensor<2, Int>]) -> Tensor<3> {
        let f_hats = self.idx_to_fhats(&idx_bl[..self.last()]);
        let parts: Vec<Tensor<3>> = f_hats
            .into_iter()
            .enumerate()
            .map(|(si, f_hat)| {
                let [b, c, _, _] = f_hat.dims();
                let pn = self.patch_nums[si + 1];
                self.area_down(si + 1, f_hat)
                    .reshape([b, c, pn * pn])
                    .swap_dims(1, 2)
            })
            .collect();
        Tensor::cat(parts, 1)
    }

    /// HMAR's refinement teacher-forcing input (`idxBl_to_mask_input`): for each scale
    /// after the first, its own tokens through bicubic up-sampling and φ, area-downsampled
    /// back to the scale, flattened.
    ///
    /// # Shapes
    /// - returns `[B, L − pn₀², Cvae]`
    pub fn idx_to_mask_input(&self, idx_bl: &[Tensor<2, Int>]) -> Tensor<3> {
        let parts: Vec<Tensor<3>> = idx_bl
            .iter()
            .enumerate()
            .skip(1)
            .map(|(si, idx)| {
                let [b, l] = idx.dims();
                let h_bchw = self.scale_residual(si, self.lookup(idx.clone()));
                let c = h_bchw.dims()[1];
                self.area_down(si, h_bchw)
                    .reshape([b, c, l])
                    .swap_dims(1, 2)
            })
            .collect();
        Tensor::cat(parts, 1)
    }

    /// One inference step (`get_next_autoregressive_input`): adds scale `si` to f_hat and
    /// returns the new f_hat with the next scale's input map (area-downsampled f_hat), or
    /// `None` after the last scale.
    pub fn next_input(
        &self,
        si: usize,
        f_hat: Tensor<4>,
        h_bchw: Tensor<4>,
    ) -> (Tensor<4>, Option<Tensor<4>>) {
        let f_hat = f_hat + self.scale_residual(si, h_bchw);
        if si == self.last() {
            (f_hat, None)
        } else {
            let next = self.area_down(si + 1, f_hat.clone());
            (f_hat, Some(next))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phi_index_matches_official_tables() {
        let tables: [(usize, usize, &[usize]); 5] = [
            (4, 10, &[0, 0, 1, 1, 1, 2, 2, 3, 3, 3]),
            (4, 4, &[0, 1, 2, 3]),
            (4, 5, &[0, 1, 2, 2, 3]),
            (4, 6, &[0, 0, 1, 2, 3, 3]),
            (2, 3, &[0, 0, 1]),
        ];
        for (n, sn, expect) in tables {
            let got: Vec<usize> = (0..sn).map(|si| phi_index(n, si, sn)).collect();
            assert_eq!(got, expect, "n={n} scales={sn}");
        }
        assert!((0..6).all(|si| phi_index(1, si, 6) == 0));
        assert_eq!(
            (0..4).map(|si| phi_index(0, si, 4)).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
    }
}
