//! PyTorch-exact resampling of square feature maps as one matrix product.
//!
//! `F.interpolate(mode='bicubic', align_corners=False)` (cubic A = −0.75, border clamp) and
//! `mode='area'` (adaptive average pooling with overlapping windows) are both separable
//! linear maps, so each becomes a Kronecker matrix `[h·w, H·W]` applied to the flattened map.
//! One matmul runs on every backend and is differentiable for training. Nearest 2×
//! upsampling, the decoder's, is a reshape and a broadcast.

use burn::tensor::{Device, Tensor, TensorData};

/// PyTorch's bicubic coefficient A.
const CUBIC_A: f64 = -0.75;

fn cubic_near(x: f64) -> f64 {
    ((CUBIC_A + 2.0) * x - (CUBIC_A + 3.0)) * x * x + 1.0
}

fn cubic_far(x: f64) -> f64 {
    ((CUBIC_A * x - 5.0 * CUBIC_A) * x + 8.0 * CUBIC_A) * x - 4.0 * CUBIC_A
}

/// 1-D bicubic weights `[n_out][n_in]`, as `upsample_bicubic2d` with align_corners=False.
pub fn bicubic_1d(n_in: usize, n_out: usize) -> Vec<Vec<f64>> {
    let scale = n_in as f32 / n_out as f32;
    let mut m = vec![vec![0.0; n_in]; n_out];
    for (i, row) in m.iter_mut().enumerate() {
        // PyTorch computes the source coordinate in the tensor's accumulation type (f32).
        let src = scale * (i as f32 + 0.5) - 0.5;
        let floor = src.floor();
        let t = (src - floor) as f64;
        let base = floor as i64;
        let coeffs = [
            cubic_far(t + 1.0),
            cubic_near(t),
            cubic_near(1.0 - t),
            cubic_far(2.0 - t),
        ];
        for (k, c) in coeffs.iter().enumerate() {
            let j = (base - 1 + k as i64).clamp(0, n_in as i64 - 1) as usize;
            row[j] += c;
        }
    }
    m
}

/// 1-D adaptive average pooling weights `[n_out][n_in]` (`mode='area'`).
pub fn area_1d(n_in: usize, n_out: usize) -> Vec<Vec<f64>> {
    let mut m = vec![vec![0.0; n_in]; n_out];
    for (i, row) in m.iter_mut().enumerate() {
        let start = (i * n_in) / n_out;
        let end = ((i + 1) * n_in).div_ceil(n_out);
        for v in &mut row[start..end] {
            *v = 1.0 / (end - start) as f64;
        }
    }
    m
}

/// The Kronecker matrix `[n_in², n_out²]` applying `m_1d` along both axes of a flattened map.
fn kron_t(m_1d: &[Vec<f64>], n_in: usize, n_out: usize) -> Vec<f32> {
    let mut k = vec![0.0f32; n_in * n_in * n_out * n_out];
    for (yo, row_y) in m_1d.iter().enumerate() {
        for (xo, row_x) in m_1d.iter().enumerate() {
            let col = yo * n_out + xo;
            for (yi, wy) in row_y.iter().enumerate().filter(|(_, w)| **w != 0.0) {
                for (xi, wx) in row_x.iter().enumerate().filter(|(_, w)| **w != 0.0) {
                    k[(yi * n_in + xi) * n_out * n_out + col] += (wy * wx) as f32;
                }
            }
        }
    }
    k
}

/// Which resampling a [`Resample`] performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResampleMode {
    /// Bicubic, A = −0.75, align_corners=False.
    Bicubic,
    /// Adaptive average pooling.
    Area,
}

/// A precomputed resampling from `n_in × n_in` to `n_out × n_out`.
#[derive(Debug, Clone)]
pub struct Resample {
    /// Kronecker matrix `[n_in², n_out²]`.
    pub matrix: Tensor<2>,
    /// Input side.
    pub n_in: usize,
    /// Output side.
    pub n_out: usize,
}

impl Resample {
    /// Builds the matrix on `device`.
    pub fn new(mode: ResampleMode, n_in: usize, n_out: usize, device: &Device) -> Self {
        let m_1d = match mode {
            ResampleMode::Bicubic => bicubic_1d(n_in, n_out),
            ResampleMode::Area => area_1d(n_in, n_out),
        };
        let k = kron_t(&m_1d, n_in, n_out);
        let matrix = Tensor::from_data(TensorData::new(k, [n_in * n_in, n_out * n_out]), device);
        Self {
            matrix,
            n_in,
            n_out,
        }
    }

    /// # Shapes
    /// - x: `[B, C, n_in, n_in]` → `[B, C, n_out, n_out]`
    pub fn forward(&self, x_bchw: Tensor<4>) -> Tensor<4> {
        let [b, c, _, _] = x_bchw.dims();
        x_bchw
            .reshape([b * c, self.n_in * self.n_in])
            .matmul(self.matrix.clone())
            .reshape([b, c, self.n_out, self.n_out])
    }
}

/// Nearest-neighbour 2× upsampling (`F.interpolate(scale_factor=2, mode='nearest')`), the
/// VQ-VAE decoder's `Upsample` before its convolution.
///
/// # Shapes
/// - x: `[B, C, H, W]` → `[B, C, 2H, 2W]`
pub fn upsample_nearest_2x(x_bchw: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x_bchw.dims();
    x_bchw
        .reshape([b, c, h, 1, w, 1])
        .expand([b, c, h, 2, w, 2])
        .reshape([b, c, 2 * h, 2 * w])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_rows_sum_to_one_and_identity_at_scale_one() {
        for (i, o) in [(1, 16), (3, 16), (13, 16), (5, 7)] {
            for row in bicubic_1d(i, o) {
                assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-6);
            }
        }
        let id = bicubic_1d(4, 4);
        for (i, row) in id.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn bicubic_uses_keys_kernel_with_a_minus_0_75_and_border_clamp() {
        // 4 → 2: output 0 samples source 0.5 (t = 0.5) with taps −1, 0, 1, 2; Keys' kernel
        // with A = −0.75 weighs them −0.09375, 0.59375, 0.59375, −0.09375 and the tap at −1
        // clamps onto 0.
        let m = bicubic_1d(4, 2);
        assert_eq!(m[0], vec![0.5, 0.59375, -0.09375, 0.0]);
        // 4 → 8: output 3 samples source 1.25 (t = 0.25) with taps 0..3, weighed by the
        // kernel at 1.25, 0.25, 0.75, 1.75.
        let m = bicubic_1d(4, 8);
        assert_eq!(m[3], vec![-0.10546875, 0.87890625, 0.26171875, -0.03515625]);
    }

    #[test]
    fn area_overlapping_windows() {
        // 5 → 3: windows [0,2), [1,4), [3,5).
        let m = area_1d(5, 3);
        assert_eq!(m[0], vec![0.5, 0.5, 0.0, 0.0, 0.0]);
        let third = 1.0 / 3.0;
        assert_eq!(m[1], vec![0.0, third, third, third, 0.0]);
        assert_eq!(m[2], vec![0.0, 0.0, 0.0, 0.5, 0.5]);
    }

    #[test]
    fn kron_resample_applies_both_axes() {
        let dev = Device::flex();
        let x = Tensor::<4>::from_data(
            TensorData::new((0..16).map(|v| v as f32).collect::<Vec<_>>(), [1, 1, 4, 4]),
            &dev,
        );
        let y = Resample::new(ResampleMode::Area, 4, 2, &dev).forward(x);
        let v = y.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(v, vec![2.5, 4.5, 10.5, 12.5]);
    }
}
