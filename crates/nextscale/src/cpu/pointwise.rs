//! Pointwise maps on host memory: SiLU, tanh-GELU and GroupNorm (optionally fused with
//! SiLU), over a branch-free `exp` the compiler vectorizes. flex computes `exp` with a scalar
//! libm call on one thread, which made SiLU after GroupNorm cost more than the norm on the
//! VQ-VAE decoder's 256²×160 maps; these run on all cores in one pass.

use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;
use std::mem::MaybeUninit;

use super::{LANES, map_on_host_or, on_host, primitive, vectorized};
use crate::activation::{MAX_LOGISTIC_EXPONENT, SQRT_2_OVER_PI};

/// Values per parallel work item.
const CHUNK: usize = 1 << 14;

/// `e^x` in f32 to about 1 ulp (Cephes `expf`: `x = n·ln 2 + r`, `|r| ≤ ln2/2`, a degree-7
/// polynomial for `e^r`, and `2^n` built in the exponent bits). Branch-free, so loops over
/// it vectorize. Saturates to `e^88.7` above and returns 0 below −87.3 (where `e^x` is
/// subnormal); NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2^23: adding and subtracting it rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    const LOWEST: f32 = -87.336_55;
    let clamped = x.clamp(LOWEST, 88.722_83);
    let rounded = clamped * LOG2_E + ROUND;
    let n = rounded - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let poly = ((((1.987_569_2e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e_r = poly * r * r + r + 1.0;
    // n ∈ [−126, 128] as an integer: the low mantissa bits of `rounded` (integer ops, which
    // vectorize where a float-to-int cast does not). 2^n as two factors, so that n = 128
    // (x near the top) stays finite.
    let k = rounded.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let half = k >> 1;
    let pow2 = |e: i32| f32::from_bits(((e + 127) as u32) << 23);
    let value = e_r * pow2(half) * pow2(k - half);
    if x < LOWEST { 0.0 } else { value }
}

/// `x / (1 + e^z)`, with `z` clamped to [`MAX_LOGISTIC_EXPONENT`] as in `nn`.
#[inline(always)]
fn over_one_plus_exp(x: f32, z: f32) -> f32 {
    x / (1.0 + exp(z.min(MAX_LOGISTIC_EXPONENT as f32)))
}

/// SiLU, `x / (1 + e^{−x})`.
#[inline(always)]
fn silu_value(x: f32) -> f32 {
    over_one_plus_exp(x, -x)
}

/// Tanh-GELU, `x / (1 + e^{−2u})` with `u = √(2/π)·(x + 0.044715·x³)`.
#[inline(always)]
fn gelu_tanh_value(x: f32) -> f32 {
    let minus_2u = (x + 0.044715 * x * x * x) * (-2.0 * SQRT_2_OVER_PI as f32);
    over_one_plus_exp(x, minus_2u)
}

vectorized! {
    /// SiLU of every value of a chunk.
    fn silu_chunk(chunk: &mut [f32]) {
        for v in chunk {
            *v = silu_value(*v);
        }
    }
}

vectorized! {
    /// Tanh-GELU of every value of a chunk.
    fn gelu_tanh_chunk(chunk: &mut [f32]) {
        for v in chunk {
            *v = gelu_tanh_value(*v);
        }
    }
}

/// `f` applied to every chunk of values, in parallel.
fn map_chunks(values: &mut [f32], f: fn(&mut [f32])) {
    values.par_chunks_mut(CHUNK).for_each(f);
}

/// SiLU on the host, or `fallback(x)` where `x` may not take a host kernel (see [`super`]).
pub fn silu_or<const D: usize>(
    x: Tensor<D>,
    fallback: impl FnOnce(Tensor<D>) -> Tensor<D>,
) -> Tensor<D> {
    map_on_host_or(x, |values| map_chunks(values, silu_chunk), fallback)
}

/// Tanh-GELU on the host, or `fallback(x)` where `x` may not take a host kernel.
pub fn gelu_tanh_or<const D: usize>(
    x: Tensor<D>,
    fallback: impl FnOnce(Tensor<D>) -> Tensor<D>,
) -> Tensor<D> {
    map_on_host_or(x, |values| map_chunks(values, gelu_tanh_chunk), fallback)
}

/// GroupNorm's affine parameters and settings.
#[derive(Debug, Clone, Copy)]
pub struct GroupNormArgs<'a> {
    /// Scale per channel.
    pub weight: &'a [f32],
    /// Shift per channel.
    pub bias: &'a [f32],
    /// Number of groups (divides the channel count).
    pub groups: usize,
    /// Variance epsilon.
    pub eps: f64,
    /// Whether SiLU follows the norm.
    pub silu: bool,
}

/// `Σ f(v)` over [`LANES`] f32 running sums.
#[inline(always)]
fn lane_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let lanes = values.chunks_exact(LANES);
    let tail: f32 = lanes.remainder().iter().map(|&v| f(v)).sum();
    for vs in lanes {
        for (a, &v) in acc.iter_mut().zip(vs) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + tail
}

vectorized! {
    /// Mean and sum of squared deviations of one chunk, in two passes over values that stay
    /// in cache.
    fn chunk_moments(chunk: &[f32]) -> (f64, f64) {
        let mean = lane_sum(chunk, |v| v) as f64 / chunk.len() as f64;
        let mean_f32 = mean as f32;
        let m2 = lane_sum(chunk, |v| (v - mean_f32) * (v - mean_f32)) as f64;
        (mean, m2)
    }
}

/// Mean and biased variance of `values` in one pass over memory: chunk by chunk, merged in
/// f64 with the pairwise update of Chan, Golub and LeVeque (1979).
fn mean_var(values: &[f32]) -> (f64, f64) {
    let (mut count, mut mean, mut m2) = (0.0f64, 0.0f64, 0.0f64);
    for chunk in values.chunks(CHUNK) {
        let (chunk_mean, chunk_m2) = chunk_moments(chunk);
        let n = chunk.len() as f64;
        let total = count + n;
        let delta = chunk_mean - mean;
        mean += delta * n / total;
        m2 += chunk_m2 + delta * delta * count * n / total;
        count = total;
    }
    (mean, m2 / count.max(1.0))
}

vectorized! {
    /// `out = x · scale + shift`, then SiLU if `silu`; writes every value of `out`.
    fn affine_into(x: &[f32], out: &mut [MaybeUninit<f32>], scale: f32, shift: f32, silu: bool) {
        if silu {
            for (o, &v) in out.iter_mut().zip(x) {
                o.write(silu_value(v * scale + shift));
            }
        } else {
            for (o, &v) in out.iter_mut().zip(x) {
                o.write(v * scale + shift);
            }
        }
    }
}

/// GroupNorm (then SiLU, if asked) of `[B, C, N]` values: each group's `C/groups · N`
/// values are contiguous. Reads the input twice (statistics, then the normalisation) and
/// writes the output once (never zero-filled first). Panics (a bug, not bad input) unless
/// `x` holds whole groups of `args.weight.len()` channels.
pub fn group_norm(x: &[f32], n: usize, args: GroupNormArgs) -> Vec<f32> {
    let c = args.weight.len();
    assert!(
        args.bias.len() == c
            && args.groups > 0
            && c.is_multiple_of(args.groups)
            && c * n > 0
            && x.len().is_multiple_of(c * n),
        "group_norm: {} values are not [B, {c}, {n}] in {} groups",
        x.len(),
        args.groups
    );
    let per_group = c / args.groups;
    let group_len = per_group * n;
    let mut out = Vec::with_capacity(x.len());
    out.spare_capacity_mut()[..x.len()]
        .par_chunks_mut(group_len)
        .zip(x.par_chunks(group_len))
        .enumerate()
        .for_each(|(i, (out, group))| {
            let g = i % args.groups;
            let (mean, var) = mean_var(group);
            let rstd = 1.0 / (var + args.eps).sqrt();
            for (k, (out, channel)) in out.chunks_mut(n).zip(group.chunks(n)).enumerate() {
                let ch = g * per_group + k;
                let scale = (args.weight[ch] as f64 * rstd) as f32;
                let shift = (args.bias[ch] as f64 - mean * args.weight[ch] as f64 * rstd) as f32;
                affine_into(channel, out, scale, shift, args.silu);
            }
        });
    // SAFETY: the chunks cover the first `x.len()` values (whole groups, asserted above),
    // and `affine_into` wrote every value of each channel.
    unsafe { out.set_len(x.len()) };
    out
}

/// GroupNorm (then SiLU, if `args.silu`) on the host, or `fallback(x)` where the tensors
/// may not take a host kernel.
///
/// # Shapes
/// - x: `[B, C, H, W]` → same; weight, bias: `[C]`
pub fn group_norm_or(
    x_bchw: Tensor<4>,
    weight_c: &Tensor<1>,
    bias_c: &Tensor<1>,
    (groups, eps, silu): (usize, f64, bool),
    fallback: impl FnOnce(Tensor<4>) -> Tensor<4>,
) -> Tensor<4> {
    let [b, c, h, w] = x_bchw.dims();
    let takes = on_host(&x_bchw) && on_host(weight_c) && on_host(bias_c);
    if !takes || groups == 0 || c % groups != 0 || weight_c.dims() != [c] || bias_c.dims() != [c] {
        return fallback(x_bchw);
    }
    let (Some(x), Some(weight), Some(bias)) =
        (primitive(&x_bchw), primitive(weight_c), primitive(bias_c))
    else {
        return fallback(x_bchw);
    };
    let (Some(x), Some(weight), Some(bias)) = (x.as_slice(), weight.as_slice(), bias.as_slice())
    else {
        return fallback(x_bchw);
    };
    let args = GroupNormArgs {
        weight,
        bias,
        groups,
        eps,
        silu,
    };
    let out = group_norm(x, h * w, args);
    Tensor::from_data(TensorData::new(out, [b, c, h, w]), &x_bchw.device())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relative error of `exp` against f64 over its whole range: at most 2 ulp-ish (3e-7),
    /// 0 below the normal range, saturation at the top, NaN kept.
    #[test]
    fn exp_matches_f64_exp() {
        let mut x = -87.3f32;
        while x < 88.7 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            assert!(
                ((got - want) / want).abs() < 3e-7,
                "exp({x}) = {got}, want {want}"
            );
            x += 0.0137;
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(1e4).is_finite());
        assert!(exp(f32::NAN).is_nan());
    }

    /// SiLU and GELU against their closed forms in f64 (tolerance as `nn`'s tests).
    #[test]
    fn activations_match_closed_forms() {
        let xs: Vec<f32> = (-400..=400)
            .map(|i| i as f32 * 0.05)
            .chain([-1e4, -200.0, -90.0, 90.0, 200.0, 1e4])
            .collect();
        for &x in &xs {
            let xf = x as f64;
            let silu_want = xf / (1.0 + (-xf).exp());
            let u = (2.0 / std::f64::consts::PI).sqrt() * (xf + 0.044715 * xf * xf * xf);
            let gelu_want = 0.5 * xf * (1.0 + u.tanh());
            for (name, got, want) in [
                ("silu", silu_value(x), silu_want),
                ("gelu", gelu_tanh_value(x), gelu_want),
            ] {
                let tol = 1e-6 * want.abs().max(1.0);
                assert!(
                    (got as f64 - want).abs() <= tol,
                    "{name}({x}) = {got}, want {want}"
                );
            }
        }
    }

    /// GroupNorm on a hand-checked case: two groups of two channels; each group normalises
    /// to mean 0, variance 1 before the per-channel affine map.
    #[test]
    fn group_norm_normalises_each_group() {
        // [B=1, C=4, N=2]: group 0 = channels 0, 1; group 1 = channels 2, 3.
        let values = vec![1.0, 3.0, 5.0, 7.0, -2.0, -2.0, 2.0, 2.0];
        let args = GroupNormArgs {
            weight: &[1.0, 2.0, 1.0, 1.0],
            bias: &[0.0, 1.0, 0.0, 0.5],
            groups: 2,
            eps: 0.0,
            silu: false,
        };
        let out = group_norm(&values, 2, args);
        // Group 0: mean 4, variance 5; group 1: mean 0, variance 4.
        let s5 = 5f32.sqrt();
        let want = [
            -3.0 / s5,
            -1.0 / s5,
            2.0 / s5 + 1.0,
            6.0 / s5 + 1.0,
            -1.0,
            -1.0,
            1.5,
            1.5,
        ];
        for (g, w) in out.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{out:?} vs {want:?}");
        }
        // Fused SiLU: the same, through x / (1 + e^{-x}).
        let fused = group_norm(&values, 2, GroupNormArgs { silu: true, ..args });
        for (g, w) in fused.iter().zip(want) {
            let w = w as f64 / (1.0 + (-w as f64).exp());
            assert!((*g as f64 - w).abs() < 1e-6, "{fused:?}");
        }
    }
}
