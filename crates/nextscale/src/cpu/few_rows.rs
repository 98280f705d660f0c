//! Products with few rows, `[m, k] × [k, n]` for small `m`: every `Linear` of VAR's first
//! scales (2 to 50 rows at batch 1 with CFG against VAR-d16's 1024-wide weights), where the
//! weights are read once per product and memory, not arithmetic, sets the pace.
//!
//! The gemm crate walks such a weight in 64-column micro-panels down its rows (16 KB apart
//! at 4096 columns) and reads it at 9–13 GB/s here for 2 rows, against 28 GB/s for a plain
//! read. This kernel walks a block of a few weight rows across a wide band of columns,
//! accumulating into an output band that stays in cache, so each weight row is read front
//! to back in long runs the prefetcher follows: about 21 GB/s for 2 rows. The weight is read
//! in place from its tensor (no copy), and the bands run in parallel.
//!
//! It needs AVX-512F, detected at run time; elsewhere `cpu::linear` uses the gemm crate.

use rayon::prelude::*;
use std::arch::x86_64::{
    __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
};

/// Most rows this kernel takes; above, the gemm crate's packed kernel is as fast or faster.
pub const MAX_ROWS: usize = 64;

/// f32 values per AVX-512 register.
const LANES: usize = 16;

/// Output rows held in registers by one tile.
const TILE_ROWS: usize = 6;

/// Registers of columns per tile row (`TILE_VECS · LANES` columns).
const TILE_VECS: usize = 4;

/// Weight rows a tile consumes between loads and stores of its accumulators (halved for a
/// single row tile, see `band_into`).
const DEPTH_BLOCK: usize = 16;

/// Bytes of the output band a task accumulates into, sized to stay in L2.
const BAND_BYTES: usize = 128 * 1024;

/// `x · w + bias` by this kernel, for row-major `x` `[m, k]`, `w` `[k, n]` and `bias`
/// `[n]`, where `m` is at most [`MAX_ROWS`], `n` a non-zero multiple of 16 and the CPU has
/// AVX-512F; `None` otherwise.
pub fn try_matmul(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    (m, k, n): (usize, usize, usize),
) -> Option<Vec<f32>> {
    let takes = (1..=MAX_ROWS).contains(&m)
        && k > 0
        && n > 0
        && n % LANES == 0
        && std::arch::is_x86_feature_detected!("avx512f");
    takes.then(|| few_rows_matmul(x, w, bias, (m, k, n)))
}

/// `x · w + bias` for row-major `x` `[m, k]`, `w` `[k, n]` and `bias` `[n]`, `n` a multiple
/// of 16, on a CPU with AVX-512F. Panics (a bug, not bad input) on other sizes.
fn few_rows_matmul(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    (m, k, n): (usize, usize, usize),
) -> Vec<f32> {
    assert!(
        x.len() == m * k
            && w.len() == k * n
            && bias.is_none_or(|b| b.len() == n)
            && n % LANES == 0
            && std::arch::is_x86_feature_detected!("avx512f"),
        "few_rows_matmul operands do not match [{m}, {k}] × [{k}, {n}]"
    );
    // Bands of whole registers, as wide as the cache budget allows, at least two (one per
    // thread) when there are columns enough.
    let budget = (BAND_BYTES / (4 * m.max(1)) / LANES).max(TILE_VECS) * LANES;
    let band = budget
        .min((n / 2).next_multiple_of(LANES))
        .max(LANES)
        .min(n);
    let bands: Vec<(usize, Vec<f32>)> = (0..n)
        .step_by(band)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|j0| {
            let width = band.min(n - j0);
            let mut acc = Vec::with_capacity(m * width);
            for _ in 0..m {
                match bias {
                    Some(b) => acc.extend_from_slice(&b[j0..j0 + width]),
                    None => acc.extend(std::iter::repeat_n(0.0, width)),
                }
            }
            // SAFETY: the assertion above checked AVX-512F and the operand sizes; `band_into`
            // indexes only inside them.
            unsafe { band_into(&mut acc, x, w, (m, k, n), j0, width) };
            (j0, acc)
        })
        .collect();
    let mut out = vec![0.0f32; m * n];
    for (j0, acc) in bands {
        let width = acc.len() / m.max(1);
        for (dst, src) in out.chunks_exact_mut(n).zip(acc.chunks_exact(width)) {
            dst[j0..j0 + width].copy_from_slice(src);
        }
    }
    out
}

/// Adds `x · w[:, j0 .. j0 + width]` to `acc` (`[m, width]`, row-major).
///
/// # Safety
/// The CPU has AVX-512F, `width` is a multiple of 16, `j0 + width ≤ n`, and the slices hold
/// `[m, width]`, `[m, k]` and `[k, n]` values.
#[target_feature(enable = "avx512f")]
unsafe fn band_into(
    acc: &mut [f32],
    x: &[f32],
    w: &[f32],
    (m, k, n): (usize, usize, usize),
    j0: usize,
    width: usize,
) {
    let vecs = width / LANES;
    // With a single row tile each weight value is used once: fewer weight rows in flight
    // keep the streams short enough for the prefetcher (measured 38 against 43 ms for the
    // 16 blocks of VAR-d16 at 2 rows).
    let depth_block = if m <= TILE_ROWS {
        DEPTH_BLOCK / 2
    } else {
        DEPTH_BLOCK
    };
    for k0 in (0..k).step_by(depth_block) {
        let depth = depth_block.min(k - k0);
        for r0 in (0..m).step_by(TILE_ROWS) {
            let rows = TILE_ROWS.min(m - r0);
            for v0 in (0..vecs).step_by(TILE_VECS) {
                let tile = Tile {
                    acc: acc[r0 * width + v0 * LANES..].as_mut_ptr(),
                    acc_stride: width,
                    x: x[r0 * k + k0..].as_ptr(),
                    x_stride: k,
                    w: w[k0 * n + j0 + v0 * LANES..].as_ptr(),
                    w_stride: n,
                    depth,
                };
                // SAFETY: the tile's rows, registers and depth lie inside the operands.
                unsafe { tile.run(rows, TILE_VECS.min(vecs - v0)) };
            }
        }
    }
}

/// One register tile: `rows × vecs` accumulators, updated with `depth` weight rows.
struct Tile {
    acc: *mut f32,
    acc_stride: usize,
    x: *const f32,
    x_stride: usize,
    w: *const f32,
    w_stride: usize,
    depth: usize,
}

impl Tile {
    /// Dispatches to the kernel of this many rows (1..=6) and registers (1..=4).
    ///
    /// # Safety
    /// As for [`Tile::kernel`].
    #[target_feature(enable = "avx512f")]
    unsafe fn run(&self, rows: usize, vecs: usize) {
        macro_rules! by_vecs {
            ($r:literal) => {
                match vecs {
                    1 => self.kernel::<$r, 1>(),
                    2 => self.kernel::<$r, 2>(),
                    3 => self.kernel::<$r, 3>(),
                    _ => self.kernel::<$r, 4>(),
                }
            };
        }
        // SAFETY: forwarded from the caller.
        unsafe {
            match rows {
                1 => by_vecs!(1),
                2 => by_vecs!(2),
                3 => by_vecs!(3),
                4 => by_vecs!(4),
                5 => by_vecs!(5),
                _ => by_vecs!(6),
            }
        }
    }

    /// `acc[r, ·] += Σ_d x[r, d] · w[d, ·]` over `R` rows, `V` registers and `depth` steps.
    ///
    /// # Safety
    /// AVX-512F; `acc` holds `R` rows of `V·16` values at `acc_stride`, `x` `R` rows of
    /// `depth` at `x_stride`, `w` `depth` rows of `V·16` at `w_stride`.
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel<const R: usize, const V: usize>(&self) {
        let mut c = [[_mm512_setzero_ps(); V]; R];
        // SAFETY: every pointer below stays inside the extents the caller guarantees.
        unsafe {
            for (r, row) in c.iter_mut().enumerate() {
                for (v, reg) in row.iter_mut().enumerate() {
                    *reg = _mm512_loadu_ps(self.acc.add(r * self.acc_stride + v * LANES));
                }
            }
            for d in 0..self.depth {
                let w_row = self.w.add(d * self.w_stride);
                let wv: [__m512; V] =
                    std::array::from_fn(|v| _mm512_loadu_ps(w_row.add(v * LANES)));
                for (r, row) in c.iter_mut().enumerate() {
                    let xs = _mm512_set1_ps(*self.x.add(r * self.x_stride + d));
                    for (reg, &wv) in row.iter_mut().zip(&wv) {
                        *reg = _mm512_fmadd_ps(xs, wv, *reg);
                    }
                }
            }
            for (r, row) in c.iter().enumerate() {
                for (v, &reg) in row.iter().enumerate() {
                    _mm512_storeu_ps(self.acc.add(r * self.acc_stride + v * LANES), reg);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::linear;
    use burn::tensor::{Device, Distribution, Tensor};

    /// Every row count up to `MAX_ROWS` and column counts that leave partial tiles and
    /// bands, with and without bias: the backend's `linear` to float rounding. Declines more
    /// rows and columns that are not whole registers.
    #[test]
    fn matches_the_backend_linear() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let device = Device::flex();
        let normal = Distribution::Normal(0.0, 1.0);
        let values = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap();
        for (k, n) in [(1, 16), (37, 48), (64, 1040), (300, 2064)] {
            let w = Tensor::<2>::random([k, n], normal, &device);
            let b = Tensor::<1>::random([n], normal, &device);
            let (w_s, b_s) = (
                values(w.clone()),
                b.clone().into_data().try_to_vec::<f32>().unwrap(),
            );
            for m in (1..=MAX_ROWS).step_by(7).chain([MAX_ROWS]) {
                let x = Tensor::<2>::random([m, k], normal, &device);
                let x_s = values(x.clone());
                for bias in [None, Some(b.clone())] {
                    let want = values(linear(x.clone(), w.clone(), bias.clone()));
                    let bias_s = bias.as_ref().map(|_| b_s.as_slice());
                    let got = try_matmul(&x_s, &w_s, bias_s, (m, k, n)).expect("few rows");
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (g - w).abs() < 1e-4 * (1.0 + w.abs()),
                            "{m}×{k}×{n}: {g} vs {w}"
                        );
                    }
                }
            }
        }
        let x = vec![0.0; (MAX_ROWS + 1) * 4];
        assert!(try_matmul(&x, &[0.0; 64], None, (MAX_ROWS + 1, 4, 16)).is_none());
        assert!(try_matmul(&x[..8], &[0.0; 40], None, (2, 4, 10)).is_none());
        assert!(try_matmul(&x[..8], &[], None, (2, 4, 0)).is_none());
    }
}
