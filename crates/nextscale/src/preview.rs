//! Previews and pixels: the fast linear Cvae → RGB preview, its least-squares fit, and
//! conversion of image tensors to RGBA bytes.

use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::{ModelConfig, PreviewMatrix};
use crate::error::Result;
use crate::readback::read_f32;
use crate::sampler::TokenRng;
use crate::vqvae::Vqvae;

/// An 8-bit RGBA image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbaImage {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Row-major RGBA bytes, `width·height·4`.
    pub pixels: Vec<u8>,
}

/// Converts `[B, 3, H, W]` values in [0, 1] (given as host data) to RGBA images, rounding as
/// torchvision's `save_image` does (`x·255 + 0.5`, clamped, truncated).
pub fn to_rgba(values: &[f32], b: usize, h: usize, w: usize) -> Vec<RgbaImage> {
    (0..b)
        .map(|bi| {
            let mut pixels = Vec::with_capacity(h * w * 4);
            for y in 0..h {
                for x in 0..w {
                    for ch in 0..3 {
                        let v = values[((bi * 3 + ch) * h + y) * w + x];
                        pixels.push((v * 255.0 + 0.5).clamp(0.0, 255.0) as u8);
                    }
                    pixels.push(255);
                }
            }
            RgbaImage {
                width: w,
                height: h,
                pixels,
            }
        })
        .collect()
}

/// Applies the preview matrix to f_hat, giving an image in [0, 1] at the latent resolution.
///
/// # Shapes
/// - f_hat: `[B, Cvae, h, w]` → `[B, 3, h, w]`
pub fn fast_preview(p: &PreviewMatrix, f_hat_bchw: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = f_hat_bchw.dims();
    let device = f_hat_bchw.device();
    let weight: Vec<f32> = (0..c)
        .flat_map(|ci| (0..3).map(move |o| (ci, o)))
        .map(|(ci, o)| p.weight[o][ci])
        .collect();
    let w_c3 = Tensor::<2>::from_data(TensorData::new(weight, [c, 3]), &device);
    let bias_3 = Tensor::<1>::from_data(TensorData::new(p.bias.to_vec(), [3]), &device);
    let rgb_bhw3 = f_hat_bchw
        .permute([0, 2, 3, 1])
        .reshape([b * h * w, c])
        .matmul(w_c3)
        + bias_3.reshape([1, 3]);
    let rgb_b3hw = rgb_bhw3.reshape([b, h, w, 3]).permute([0, 3, 1, 2]);
    (rgb_b3hw.clamp(-1.0, 1.0) + 1.0) * 0.5
}

/// Least-squares fit of `image ≈ W·f_hat + bias` at the latent resolution, where `image` is
/// the decoder output box-downsampled by the VQ-VAE factor. `pairs` are `(f_hat, image)`
/// batches; returns `None` if the normal equations are singular.
pub async fn fit_preview_from(
    pairs: &[(Tensor<4>, Tensor<4>)],
    downsample: usize,
) -> Result<Option<PreviewMatrix>> {
    let mut xtx: Vec<Vec<f64>> = Vec::new();
    let mut xty: Vec<[f64; 3]> = Vec::new();
    for (f_hat_bchw, img_b3hw) in pairs {
        let [b, c, h, w] = f_hat_bchw.dims();
        let small_b3hw = avg_pool2d(img_b3hw.clone(), AvgPoolOptions::new([downsample; 2]));
        let f = read_f32(f_hat_bchw.clone()).await?;
        let y = read_f32(small_b3hw).await?;
        if xtx.is_empty() {
            xtx = vec![vec![0.0; c + 1]; c + 1];
            xty = vec![[0.0; 3]; c + 1];
        }
        for bi in 0..b {
            for p in 0..h * w {
                let mut x: Vec<f64> = (0..c)
                    .map(|ci| f[(bi * c + ci) * h * w + p] as f64)
                    .collect();
                x.push(1.0);
                for i in 0..=c {
                    for j in 0..=c {
                        xtx[i][j] += x[i] * x[j];
                    }
                    for o in 0..3 {
                        xty[i][o] += x[i] * y[(bi * 3 + o) * h * w + p] as f64;
                    }
                }
            }
        }
    }
    let n = xtx.len();
    // Small ridge term for stability.
    for (i, row) in xtx.iter_mut().enumerate() {
        row[i] += 1e-6;
    }
    let Some(sol) = solve(xtx, xty) else {
        return Ok(None);
    };
    Ok(Some(PreviewMatrix {
        weight: (0..3)
            .map(|o| (0..n - 1).map(|i| sol[i][o] as f32).collect())
            .collect(),
        bias: [
            sol[n - 1][0] as f32,
            sol[n - 1][1] as f32,
            sol[n - 1][2] as f32,
        ],
    }))
}

/// Solves `A·X = B` by Gaussian elimination with partial pivoting.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<[f64; 3]>) -> Option<Vec<[f64; 3]>> {
    let n = a.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (pivot_row, pivot_b) = (a[col].clone(), b[col]);
        for (row_a, row_b) in a.iter_mut().zip(b.iter_mut()).skip(col + 1) {
            let f = row_a[col] / pivot_row[col];
            for (v, p) in row_a.iter_mut().zip(&pivot_row).skip(col) {
                *v -= f * p;
            }
            for (v, p) in row_b.iter_mut().zip(pivot_b) {
                *v -= f * p;
            }
        }
    }
    let mut x = vec![[0.0; 3]; n];
    for row in (0..n).rev() {
        for o in 0..3 {
            let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k][o]).sum();
            x[row][o] = (b[row][o] - s) / a[row][row];
        }
    }
    Some(x)
}

/// Fits a preview matrix for a model that ships none, from decoded random token pyramids
/// (one per scale prefix, so coarse and fine f_hat are both covered).
pub async fn fit_preview(
    vae: &Vqvae,
    config: &ModelConfig,
    device: &Device,
) -> Result<PreviewMatrix> {
    let mut rng = TokenRng::new(0x5eed);
    let b = 2;
    let idx: Vec<Tensor<2, Int>> = config
        .patch_nums
        .iter()
        .map(|pn| {
            let v: Vec<i64> = (0..b * pn * pn)
                .map(|_| (rng.uniform() * config.vocab_size as f64) as i64)
                .collect();
            Tensor::from_data(TensorData::new(v, [b, pn * pn]), device)
        })
        .collect();
    let f_hats = vae.quantize.idx_to_fhats(&idx);
    let picks = [f_hats.len() / 2, f_hats.len() - 1];
    let pairs: Vec<(Tensor<4>, Tensor<4>)> = picks
        .iter()
        .map(|&si| (f_hats[si].clone(), vae.fhat_to_img(f_hats[si].clone())))
        .collect();
    let fitted = fit_preview_from(&pairs, config.derived_downsample()).await?;
    Ok(fitted.unwrap_or_else(|| PreviewMatrix {
        weight: vec![vec![0.0; config.cvae]; 3],
        bias: [0.0; 3],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_an_exact_linear_map() {
        let dev = Device::flex();
        let (b, c, h) = (2, 3, 4);
        let mut rng = TokenRng::new(9);
        let f: Vec<f32> = (0..b * c * h * h)
            .map(|_| rng.uniform() as f32 * 2.0 - 1.0)
            .collect();
        let w = [[0.5f32, -0.2, 0.1], [0.0, 0.3, 0.3], [-0.4, 0.1, 0.2]];
        let bias = [0.1f32, -0.2, 0.05];
        let mut img = vec![0.0f32; b * 3 * h * h];
        for bi in 0..b {
            for p in 0..h * h {
                for o in 0..3 {
                    img[(bi * 3 + o) * h * h + p] = bias[o]
                        + (0..c)
                            .map(|ci| w[o][ci] * f[(bi * c + ci) * h * h + p])
                            .sum::<f32>();
                }
            }
        }
        let f_t = Tensor::<4>::from_data(TensorData::new(f, [b, c, h, h]), &dev);
        let i_t = Tensor::<4>::from_data(TensorData::new(img, [b, 3, h, h]), &dev);
        let p = pollster::block_on(fit_preview_from(&[(f_t, i_t)], 1))
            .unwrap()
            .unwrap();
        for (o, w_row) in w.iter().enumerate() {
            assert!((p.bias[o] - bias[o]).abs() < 1e-4);
            for (fitted, truth) in p.weight[o].iter().zip(w_row) {
                assert!((fitted - truth).abs() < 1e-4, "{p:?}");
            }
        }
    }

    #[test]
    fn rgba_rounding() {
        let v = [0.0f32, 0.5, 1.0, 2.0, -1.0, 0.2];
        let imgs = to_rgba(&v, 1, 1, 2);
        // pixel 0: r=0, g=1.0, b=-1 ; pixel 1: r=0.5, g=2.0, b=0.2
        assert_eq!(imgs[0].pixels, vec![0, 255, 0, 255, 128, 255, 51, 255]);
    }
}
