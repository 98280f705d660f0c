//! Unmasked multi-head attention on host memory, `softmax(scale · Q Kᵀ) V` per head: two
//! matrix products and a row softmax over the vectorized `exp`, heads in parallel. Q, K and
//! V are read in place through their strides (Q is a view into the fused QKV product, and K
//! and V are shared with the cache), each head's K transposed into scratch so that both
//! products have a row-major right operand (in wasm, the SIMD128 kernels, kᵀ in their panel
//! order so that q·kᵀ needs no packing). flex's fused
//! attention reaches about a third of its matrix-product speed at VAR-d16's last scale (256
//! queries over 680 cached keys, 32 heads); see `attention_or`.

use burn::backend::flex::FlexTensor;
use burn::tensor::{Tensor, TensorData};
use gemm::Parallelism;
use rayon::prelude::*;

use super::pointwise::exp;
use super::{LANES, Start, Strided, matmul_into, on_host, primitive, vectorized};

/// Softmax of one row of `scale`d scores, in place (`scale` > 0).
#[inline(always)]
fn softmax_in_place(row: &mut [f32], scale: f32) {
    let mut max_lanes = [f32::NEG_INFINITY; LANES];
    let lanes = row.chunks_exact(LANES);
    let tail_max = lanes
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for vs in lanes {
        for (m, &v) in max_lanes.iter_mut().zip(vs) {
            *m = if v > *m { v } else { *m };
        }
    }
    let max = max_lanes.iter().copied().fold(tail_max, f32::max);
    // exp and sum in one pass (a separate summing pass measured 1–2 ms slower per
    // call at VAR-d16's last scale).
    let mut sum_lanes = [0.0f32; LANES];
    let mut lanes = row.chunks_exact_mut(LANES);
    for vs in &mut lanes {
        for (acc, v) in sum_lanes.iter_mut().zip(vs) {
            *v = exp((*v - max) * scale);
            *acc += *v;
        }
    }
    let mut sum: f32 = sum_lanes.iter().sum();
    for v in lanes.into_remainder() {
        *v = exp((*v - max) * scale);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

vectorized! {
    /// Softmax of each `lk`-long row of `scale`d `scores`, in place.
    fn softmax_rows(scores: &mut [f32], lk: usize, scale: f32) {
        for row in scores.chunks_exact_mut(lk) {
            softmax_in_place(row, scale);
        }
    }
}

/// A `[B, H, L, D]` f32 tensor's values read in place: its storage, where it starts and its
/// element strides.
struct Heads<'a> {
    data: &'a [f32],
    offset: usize,
    strides: [usize; 4],
}

impl<'a> Heads<'a> {
    /// The view of `tensor`, if its strides are not negative.
    fn of(tensor: &'a FlexTensor) -> Option<Self> {
        let layout = tensor.layout();
        let strides: Vec<usize> = layout
            .strides()
            .iter()
            .map(|&s| usize::try_from(s).ok())
            .collect::<Option<_>>()?;
        Some(Self {
            data: tensor.storage::<f32>(),
            offset: layout.start_offset(),
            strides: strides.try_into().ok()?,
        })
    }

    /// Head `(b, h)` as an `[L, D]` matrix.
    fn head(&self, b: usize, h: usize) -> Strided<'a> {
        let [sb, sh, sl, sd] = self.strides;
        Strided {
            data: &self.data[self.offset + b * sb + h * sh..],
            row_stride: sl,
            col_stride: sd,
        }
    }
}

/// Per-thread scratch of [`attend_head`]: the scores `[lq, lk]` and kᵀ `[d, lk]` (in
/// panel order in wasm).
struct Scratch {
    scores: Vec<f32>,
    k_t: Vec<f32>,
}

/// `softmax(scale · q kᵀ) v` for one head: `q` `[lq, d]`, `k` `[lk, d]`, `v` `[lk, dv]`;
/// writes `out` `[lq, dv]`, row-major.
fn attend_head(
    (q, k, v): (Strided, Strided, Strided),
    (lq, lk, d, dv): (usize, usize, usize, usize),
    scale: f32,
    scratch: &mut Scratch,
    out: &mut [f32],
) {
    let scores = &mut scratch.scores;
    let once = Parallelism::None;
    // In wasm, kᵀ goes straight into the panel order of the SIMD128 kernel, which reads it
    // in place; natively, into rows for gemm.
    #[cfg(target_arch = "wasm32")]
    {
        super::linear::fill_panels(&mut scratch.k_t, k, (lk, d));
        super::simd128::matmul_panels(scores, (lq, lk, d), q, &scratch.k_t, Start::Zero, false);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        for (j, k_row) in (0..lk).map(|j| (j, j * k.row_stride)) {
            for c in 0..d {
                scratch.k_t[c * lk + j] = k.data[k_row + c * k.col_stride];
            }
        }
        let k_t = Strided::rows(&scratch.k_t, lk);
        matmul_into(scores, (lq, lk, d), q, k_t, 1.0, once, Start::Zero);
    }
    softmax_rows(scores, lk, scale);
    let p = Strided::rows(scores, lk);
    matmul_into(out, (lq, dv, lk), p, v, 1.0, once, Start::Zero);
}

/// `softmax(scale · q kᵀ) v` over every head on the host, or `fallback(q, k, v)` where the
/// tensors may not take a host kernel (see [`super`]), a size is zero or `scale` is not
/// positive.
///
/// # Shapes
/// - q: `[B, H, Lq, D]`, k: `[B, H, Lk, D]`, v: `[B, H, Lk, Dv]` → `[B, H, Lq, Dv]`
pub fn attention_or(
    q_bhld: Tensor<4>,
    k_bhld: Tensor<4>,
    v_bhld: Tensor<4>,
    scale: f64,
    fallback: impl FnOnce(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>,
) -> Tensor<4> {
    let [b, h, lq, d] = q_bhld.dims();
    let [kb, kh, lk, kd] = k_bhld.dims();
    let [vb, vh, vl, dv] = v_bhld.dims();
    let shapes_agree = (kb, kh, kd) == (b, h, d) && (vb, vh, vl) == (b, h, lk);
    let sizes = b * h * lq * lk * d * dv > 0;
    let host = on_host(&q_bhld) && on_host(&k_bhld) && on_host(&v_bhld);
    if !(host && shapes_agree && sizes && scale.is_finite() && scale > 0.0) {
        return fallback(q_bhld, k_bhld, v_bhld);
    }
    let (Some(q), Some(k), Some(v)) = (primitive(&q_bhld), primitive(&k_bhld), primitive(&v_bhld))
    else {
        return fallback(q_bhld, k_bhld, v_bhld);
    };
    let (Some(q), Some(k), Some(v)) = (Heads::of(&q), Heads::of(&k), Heads::of(&v)) else {
        return fallback(q_bhld, k_bhld, v_bhld);
    };
    let mut out = vec![0.0f32; b * h * lq * dv];
    out.par_chunks_mut(lq * dv).enumerate().for_each_init(
        || Scratch {
            scores: vec![0.0; lq * lk],
            k_t: vec![0.0; d * lk],
        },
        |scratch, (i, out)| {
            let (bi, hi) = (i / h, i % h);
            let views = (q.head(bi, hi), k.head(bi, hi), v.head(bi, hi));
            attend_head(views, (lq, lk, d, dv), scale as f32, scratch, out);
        },
    );
    Tensor::from_data(TensorData::new(out, [b, h, lq, dv]), &q_bhld.device())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::{Device, Distribution};

    /// Random heads of several shapes, including a single key, queries from a narrowed
    /// view and keys from a transposed one: the same as burn's attention to float rounding.
    #[test]
    fn matches_the_backend_attention() {
        let device = Device::flex();
        for (b, h, lq, lk, d) in [(2, 3, 5, 7, 8), (1, 2, 1, 1, 4), (2, 4, 16, 40, 16)] {
            let normal = Distribution::Normal(0.0, 1.0);
            let q = Tensor::<4>::random([b, h, lk + lq, d], normal, &device).narrow(2, lk, lq);
            let k = (Tensor::<4>::random([b, lk, h, d], normal, &device) * 2.0).swap_dims(1, 2);
            let v = Tensor::<4>::random([b, h, lk, d], normal, &device);
            let scale = 0.3;
            let options = AttentionModuleOptions {
                scale: Some(scale),
                softcap: None,
                is_causal: false,
            };
            let want = attention(q.clone(), k.clone(), v.clone(), None, None, options);
            let got = attention_or(q, k, v, scale, |_, _, _| unreachable!("host path"));
            let want: Vec<f32> = want.into_data().try_to_vec().unwrap();
            let got: Vec<f32> = got.into_data().try_to_vec().unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "{b}×{h}×{lq}×{lk}×{d}: {g} vs {w}");
            }
        }
    }
}
