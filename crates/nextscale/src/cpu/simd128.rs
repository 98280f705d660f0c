//! Matrix products in wasm on SIMD128, `dst += lhs · rhs` for a row-major `rhs` (the
//! attention's values, the convolutions' transformed inputs) or one already in panel order
//! (the CPU engine's `Linear` weights, each attention head's kᵀ): the host kernels'
//! products in the browser.
//!
//! In wasm the gemm crate multiplies and adds in two instructions and packs every operand;
//! on VAR-d16's shapes it ran at 25–28 GFLOP/s on one thread here (`[512, 1024] × [1024,
//! 4096]`), and at 9 GFLOP/s with 8 rows. Two kernels do better:
//! - many rows: `rhs` is packed into panels of 12 columns just before use, and each three
//!   `lhs` rows walk a panel with 3 × 3 accumulators; column chunks run in parallel, each
//!   packing its own panels;
//! - up to 64 rows (the first scales): like `few_rows` natively, bands of output columns
//!   stay in cache while `rhs` is read in place, row by row (28 GFLOP/s at 8 rows, 16 at 2,
//!   where packing costs as much as the product); bands run in parallel.
//!
//! `Linear` weights in the wasm CPU engine are stored in panel order from the start (see
//! [`super::linear::panels_from_out_in`]), and [`matmul_panels`] reads them in place: no
//! packing, and each panel front to back. On `[m, 1024] × [1024, 4096]` with the weights in
//! memory, one thread in Chromium 156 on this 2-core Xeon: 43 GFLOP/s at 32 rows, 50 at 72
//! and 128, 51 at 512, against 31, 34 (banded), 38 and 47 (packed) for the row-major
//! kernels; 12 at 2 rows against 13 (banded).
//!
//! The tile: a standalone copy of the kernel on `[480, 1024] × [1024, 4080]` in Chromium 156
//! on this 2-core Xeon, one thread, fused multiply-adds, ran 3 × 3 accumulators at 47–50
//! GFLOP/s, 2 × 4 (the previous tile) at 42–47 and 4 × 2 at 38–42; tiles of 12 accumulators
//! (4 × 3, 3 × 4, 6 × 2) at 33–35, presumably spilling: with their operands they need
//! all of x64's 16 SIMD registers or more.
//!
//! With the crate feature `relaxed-simd` (the threaded build), the kernels are compiled with
//! that target feature and multiply-add with `f32x4.relaxed_madd`, which Chromium lowers to
//! fused multiply-adds; otherwise a multiply then an add, as gemm does. (The feature is not
//! turned on for the whole build: burn-flex's SIMD crate, macerator 0.5, does not compile
//! with it.)

use core::arch::wasm32::{f32x4_add, f32x4_splat, v128, v128_load, v128_store};
use rayon::prelude::*;

use super::{Start, Strided};

/// f32 values per SIMD128 register.
const LANES: usize = 4;

/// Rows of a register tile.
const TILE_ROWS: usize = 3;

/// Registers of columns per tile row (12 columns).
const TILE_VECS: usize = 3;

/// Columns of a packed `rhs` panel.
const PANEL: usize = TILE_VECS * LANES;

/// Depth of a packed panel: `PANEL · DEPTH_BLOCK` floats (24 KB) stay in L1.
const DEPTH_BLOCK: usize = 512;

/// Widest column chunk one task packs at a time, whole panels: `MAX_CHUNK · DEPTH_BLOCK`
/// floats (540 KB) stay in L2. [`matmul_panels`] splits its columns no wider either.
const MAX_CHUNK: usize = 22 * PANEL;

/// Most rows the banded kernel takes; from here on packing `rhs` pays.
const MAX_BAND_ROWS: usize = 64;

/// `rhs` rows the banded kernel consumes between loads and stores of its accumulators.
const BAND_DEPTH: usize = 16;

/// Bytes of output a band accumulates in (sized for L1), which sets its width.
const BAND_BYTES: usize = 32 * 1024;

/// Smallest product (`m·n·k`) spread over the thread pool.
const PARALLEL_WORK: usize = 1 << 21;

/// Most rows [`matmul_panels`] takes in bands; above, each group of three rows runs down
/// each panel in [`DEPTH_BLOCK`]s.
const MAX_PANEL_BAND_ROWS: usize = 32;

/// Depth of a panel band's steps: its panels are read [`PANEL_BAND_DEPTH`] rows at a time,
/// side by side, so that memory streams from all of them at once.
const PANEL_BAND_DEPTH: usize = 32;

/// Widest panel band (16 panels; with 32 rows its outputs take 24 KB of L1).
const PANEL_BAND_COLS: usize = 16 * PANEL;

const _: () = assert!(
    PANEL == super::linear::PANEL,
    "the weights' panels are the tile's"
);

/// `a·b + c`, fused with the `relaxed-simd` feature (inlined into [`Tile::run`], which is
/// compiled with that target feature then).
#[inline(always)]
fn madd(a: v128, b: v128, c: v128) -> v128 {
    #[cfg(feature = "relaxed-simd")]
    return core::arch::wasm32::f32x4_relaxed_madd(a, b, c);
    #[cfg(not(feature = "relaxed-simd"))]
    f32x4_add(c, core::arch::wasm32::f32x4_mul(a, b))
}

/// `dst[m, n] = start + lhs[m, k] · rhs[k, n]`, `dst` row-major, `rhs` row-major (its
/// `col_stride` 1), on the pool when `parallel` and the product is large enough; each task
/// fills in `start` for its own columns. Panics (a bug, not bad input) if an operand is
/// smaller than its view, `rhs` is not row-major or a start row is not `n` long.
pub(super) fn matmul(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: Strided,
    rhs: Strided,
    start: Start,
    parallel: bool,
) {
    assert!(
        rhs.col_stride == 1
            && dst.len() >= m * n
            && lhs.holds(m, k)
            && rhs.holds(k, n)
            && !matches!(start, Start::Rows(row) if row.len() != n),
        "simd128::matmul operands do not match [{m}, {k}] × [{k}, {n}]"
    );
    let dst = &mut dst[..m * n];
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        for row in dst.chunks_exact_mut(n) {
            start.fill(row, 0);
        }
        return;
    }
    let parallel = parallel && m * n * k >= PARALLEL_WORK && rayon::current_num_threads() > 1;
    if m <= MAX_BAND_ROWS {
        banded(dst, (m, n, k), lhs, rhs, start, parallel);
    } else {
        packed(dst, (m, n, k), lhs, rhs, start, parallel);
    }
}

impl Start<'_> {
    /// Sets `dst`, columns `j0..j0 + dst.len()` of one output row, to what the output starts
    /// from (leaves it for [`Start::Dst`]).
    fn fill(self, dst: &mut [f32], j0: usize) {
        match self {
            Start::Dst => {}
            Start::Zero => dst.fill(0.0),
            Start::Rows(row) => dst.copy_from_slice(&row[j0..j0 + dst.len()]),
        }
    }
}

impl Strided<'_> {
    /// The view without its first `cols` columns.
    fn skip_cols(self, cols: usize) -> Self {
        Self {
            data: &self.data[(cols * self.col_stride).min(self.data.len())..],
            ..self
        }
    }
}

/// The packed kernel: each column chunk of `rhs` is packed, [`DEPTH_BLOCK`] rows at a time,
/// into panels of 12 columns, contiguous down their rows; then each group of three `lhs`
/// rows runs down each panel. Chunks run in parallel, each filling in `start` and packing only
/// for its own columns, so no thread waits on another's packing.
fn packed(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: Strided,
    rhs: Strided,
    start: Start,
    parallel: bool,
) {
    let width = n / LANES * LANES;
    let out = OutPtr(dst.as_mut_ptr());
    // Columns `j_start..j_end` of every row; `out` writes no other column.
    let columns = |(j_start, j_end): (usize, usize)| {
        // SAFETY: columns `j_start..j_end` of the `m` rows lie inside `dst`, and only this
        // task touches them.
        unsafe { out.fill_columns((m, n), (j_start, j_end), start) };
        let mut panels = vec![0.0f32; (j_end - j_start) * DEPTH_BLOCK];
        for k0 in (0..k).step_by(DEPTH_BLOCK) {
            let depth = DEPTH_BLOCK.min(k - k0);
            pack(&mut panels, rhs, (k0, depth), (j_start, j_end));
            for j0 in (j_start..j_end).step_by(PANEL) {
                let cols = PANEL.min(j_end - j0);
                let panel = &panels[(j0 - j_start) * depth..][..cols * depth];
                for r in (0..m).step_by(TILE_ROWS) {
                    let tile = Tile {
                        // SAFETY: row `r`, column `j0` lies inside `dst` (`m·n` values).
                        dst: unsafe { out.at(r * n + j0) },
                        dst_stride: n,
                        lhs: lhs.data[r * lhs.row_stride + k0 * lhs.col_stride..].as_ptr(),
                        lhs_strides: (lhs.row_stride, lhs.col_stride),
                        rhs: panel.as_ptr(),
                        rhs_stride: cols,
                        depth,
                    };
                    // SAFETY: the tile's rows, columns and depth lie inside `dst`, `lhs` and
                    // the panel (`matmul`'s assertion and the bounds above), and its
                    // columns inside this task's `j_start..j_end`.
                    unsafe { tile.run(TILE_ROWS.min(m - r), cols / LANES) };
                }
            }
        }
    };
    if parallel {
        // A few chunks per thread, whole panels each, for balance.
        let chunk = (width / (4 * rayon::current_num_threads()))
            .clamp(PANEL, MAX_CHUNK)
            .next_multiple_of(PANEL);
        let chunks: Vec<(usize, usize)> = (0..width)
            .step_by(chunk)
            .map(|j| (j, (j + chunk).min(width)))
            .collect();
        chunks.into_par_iter().for_each(columns);
    } else {
        for j in (0..width).step_by(MAX_CHUNK) {
            columns((j, (j + MAX_CHUNK).min(width)));
        }
    }
    if width < n {
        for row in dst.chunks_exact_mut(n) {
            start.fill(&mut row[width..], width);
        }
        scalar_columns(dst, (m, n), lhs, rhs, (width, n), (0, k));
    }
}

/// `dst[m, n] = start + lhs[m, k] · w[k, n]` for a weight `w` in panel order (`panels`,
/// `k·n` values; see [`super::linear::panels_from_out_in`]), on the pool when `parallel` and
/// the product is large enough. Column chunks of whole panels run in parallel, each filling
/// in `start` for its own columns. Panics (a bug, not bad input) if an operand is smaller
/// than its view or a start row is not `n` long.
pub(super) fn matmul_panels(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: Strided,
    panels: &[f32],
    start: Start,
    parallel: bool,
) {
    assert!(
        dst.len() >= m * n
            && panels.len() >= k * n
            && lhs.holds(m, k)
            && !matches!(start, Start::Rows(row) if row.len() != n),
        "simd128::matmul_panels operands do not match [{m}, {k}] × [{k}, {n}]"
    );
    if m == 0 || n == 0 {
        return;
    }
    let parallel = parallel && m * n * k >= PARALLEL_WORK && rayon::current_num_threads() > 1;
    let banded = m <= MAX_PANEL_BAND_ROWS;
    let out = OutPtr(dst.as_mut_ptr());
    // Columns `j_start..j_end` (from a panel's first column) of every row.
    let columns = |(j_start, j_end): (usize, usize)| {
        // SAFETY: columns `j_start..j_end` of the `m` rows lie inside `dst`, and only this
        // task touches them.
        unsafe { out.fill_columns((m, n), (j_start, j_end), start) };
        let panel_run = |j0: usize, (r0, rows): (usize, usize), (k0, depth): (usize, usize)| {
            let cols = PANEL.min(n - j0);
            // Panels left of `j0` are all `PANEL` wide.
            let panel = &panels[j0 * k..][..cols * k];
            let tile = Tile {
                // SAFETY: row `r0`, column `j0` lies inside `dst` (`m·n` values).
                dst: unsafe { out.at(r0 * n + j0) },
                dst_stride: n,
                lhs: lhs.data[r0 * lhs.row_stride + k0 * lhs.col_stride..].as_ptr(),
                lhs_strides: (lhs.row_stride, lhs.col_stride),
                rhs: panel[k0 * cols..].as_ptr(),
                rhs_stride: cols,
                depth,
            };
            let vecs = cols / LANES;
            if vecs > 0 {
                // SAFETY: the tile's rows, columns and depth lie inside `dst`, `lhs` and the
                // panel (the assertion and the bounds above), and its columns inside this
                // task's `j_start..j_end`.
                unsafe { tile.run(rows, vecs) };
            }
            for r in r0..r0 + rows {
                for c in vecs * LANES..cols {
                    let mut sum = 0.0f32;
                    for d in k0..k0 + depth {
                        sum +=
                            lhs.data[r * lhs.row_stride + d * lhs.col_stride] * panel[d * cols + c];
                    }
                    // SAFETY: row `r`, column `j0 + c` lies inside this task's columns.
                    unsafe { *out.at(r * n + j0 + c) += sum };
                }
            }
        };
        if banded {
            for k0 in (0..k).step_by(PANEL_BAND_DEPTH) {
                let depth = PANEL_BAND_DEPTH.min(k - k0);
                for r0 in (0..m).step_by(TILE_ROWS) {
                    for j0 in (j_start..j_end).step_by(PANEL) {
                        panel_run(j0, (r0, TILE_ROWS.min(m - r0)), (k0, depth));
                    }
                }
            }
        } else {
            for j0 in (j_start..j_end).step_by(PANEL) {
                for k0 in (0..k).step_by(DEPTH_BLOCK) {
                    let depth = DEPTH_BLOCK.min(k - k0);
                    for r0 in (0..m).step_by(TILE_ROWS) {
                        panel_run(j0, (r0, TILE_ROWS.min(m - r0)), (k0, depth));
                    }
                }
            }
        }
    };
    let widest = if banded { PANEL_BAND_COLS } else { MAX_CHUNK };
    let chunk = if parallel {
        // A few chunks per thread, whole panels each, for balance.
        (n / (4 * rayon::current_num_threads()))
            .next_multiple_of(PANEL)
            .clamp(PANEL, widest)
    } else {
        widest
    };
    let chunks: Vec<(usize, usize)> = (0..n)
        .step_by(chunk)
        .map(|j| (j, (j + chunk).min(n)))
        .collect();
    if parallel {
        chunks.into_par_iter().for_each(columns);
    } else {
        chunks.into_iter().for_each(columns);
    }
}

/// Copies `rhs[k0..k0 + depth, j_start..j_end]` (a multiple of 4 columns) into `panels`:
/// panel after panel of 12 columns (the last maybe fewer), each `depth` rows of its width.
/// Each `rhs` row segment is read front to back, which the prefetcher follows (reading one
/// panel at a time walks `rhs` down its columns, a page per row), with SIMD loads and stores
/// (`copy_from_slice` of a 64-byte row becomes a `memory.copy`, a call per row).
fn pack(
    panels: &mut [f32],
    rhs: Strided,
    (k0, depth): (usize, usize),
    (j_start, j_end): (usize, usize),
) {
    let width = j_end - j_start;
    assert!(
        width % LANES == 0 && panels.len() >= depth * width && rhs.holds(k0 + depth, j_end),
        "pack: the panels or rhs are smaller than [{depth}, {width}]"
    );
    let src = rhs.data.as_ptr();
    let dst = panels.as_mut_ptr();
    for d in 0..depth {
        let row = (k0 + d) * rhs.row_stride + j_start;
        for v in 0..width / LANES {
            let j = v * LANES;
            let (p, c) = (j / PANEL * PANEL, j % PANEL);
            let cols = PANEL.min(width - p);
            // SAFETY: the assertion keeps row `k0 + d`, column `j_start + j` inside `rhs`
            // and `p·depth + d·cols + c < depth · width` inside `panels`.
            unsafe {
                let value = v128_load(src.add(row + j).cast());
                v128_store(dst.add(p * depth + d * cols + c).cast(), value);
            }
        }
    }
}

/// The output of [`packed`], shared by tasks that each write their own columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);

// SAFETY: the tasks of `packed` write disjoint columns of the output through it, and
// `packed` returns only after every task has finished.
unsafe impl Send for OutPtr {}
// SAFETY: as for `Send`.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The address of output value `at`.
    ///
    /// # Safety
    /// `at` lies inside the output.
    unsafe fn at(self, at: usize) -> *mut f32 {
        // SAFETY: forwarded from the caller.
        unsafe { self.0.add(at) }
    }

    /// Sets columns `j_start..j_end` of every row of the `[m, n]` output to what it starts
    /// from.
    ///
    /// # Safety
    /// The output holds `m·n` values, and no other task touches these columns meanwhile.
    unsafe fn fill_columns(
        self,
        (m, n): (usize, usize),
        (j_start, j_end): (usize, usize),
        start: Start,
    ) {
        for r in 0..m {
            // SAFETY: row `r`'s columns `j_start..j_end` lie inside the output (the caller).
            let row = unsafe {
                core::slice::from_raw_parts_mut(self.at(r * n + j_start), j_end - j_start)
            };
            start.fill(row, j_start);
        }
    }
}

/// The banded kernel for few rows: bands of output columns sized to stay in L1, each
/// accumulated in its own buffer while `rhs` is read in place, [`BAND_DEPTH`] rows at a
/// time; bands in parallel, at least four per thread for balance.
fn banded(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: Strided,
    rhs: Strided,
    start: Start,
    parallel: bool,
) {
    let band_cols = (BAND_BYTES / (4 * m)).next_multiple_of(PANEL).max(PANEL);
    let band_cols = if parallel {
        let balanced = n / (4 * rayon::current_num_threads());
        band_cols.min(balanced.next_multiple_of(PANEL).max(PANEL))
    } else {
        band_cols
    };
    let held: &[f32] = dst;
    let band = |j0: usize| {
        let cols = band_cols.min(n - j0);
        let vecs = cols / LANES;
        let width = vecs * LANES;
        // The band's outputs, `[m, cols]`, from `start`.
        let mut acc = vec![0.0f32; m * cols];
        for (r, row) in acc.chunks_exact_mut(cols).enumerate() {
            match start {
                Start::Dst => row.copy_from_slice(&held[r * n + j0..r * n + j0 + cols]),
                _ => start.fill(row, j0),
            }
        }
        for k0 in (0..k).step_by(BAND_DEPTH) {
            let depth = BAND_DEPTH.min(k - k0);
            for r0 in (0..m).step_by(TILE_ROWS) {
                let rows = TILE_ROWS.min(m - r0);
                for v0 in (0..vecs).step_by(TILE_VECS) {
                    let tile = Tile {
                        dst: acc[r0 * cols + v0 * LANES..].as_mut_ptr(),
                        dst_stride: cols,
                        lhs: lhs.data[r0 * lhs.row_stride + k0 * lhs.col_stride..].as_ptr(),
                        lhs_strides: (lhs.row_stride, lhs.col_stride),
                        rhs: rhs.data[k0 * rhs.row_stride + j0 + v0 * LANES..].as_ptr(),
                        rhs_stride: rhs.row_stride,
                        depth,
                    };
                    // SAFETY: the tile lies inside `acc`, `lhs` and `rhs` (see `matmul`).
                    unsafe { tile.run(rows, TILE_VECS.min(vecs - v0)) };
                }
            }
            scalar_columns(
                &mut acc,
                (m, cols),
                lhs,
                rhs.skip_cols(j0),
                (width, cols),
                (k0, depth),
            );
        }
        (j0, acc)
    };
    let starts: Vec<usize> = (0..n).step_by(band_cols).collect();
    let bands: Vec<(usize, Vec<f32>)> = if parallel {
        starts.into_par_iter().map(band).collect()
    } else {
        starts.into_iter().map(band).collect()
    };
    for (j0, acc) in bands {
        let cols = acc.len() / m;
        for (row, src) in dst.chunks_exact_mut(n).zip(acc.chunks_exact(cols)) {
            row[j0..j0 + cols].copy_from_slice(src);
        }
    }
}

/// `dst[:, c0..c1] += lhs[:, k0..k0 + depth] · rhs[k0..k0 + depth, c0..c1]` one value at a
/// time: the columns left of a whole register.
fn scalar_columns(
    dst: &mut [f32],
    (m, n): (usize, usize),
    lhs: Strided,
    rhs: Strided,
    (c0, c1): (usize, usize),
    (k0, depth): (usize, usize),
) {
    for r in 0..m {
        for c in c0..c1 {
            let mut sum = 0.0f32;
            for d in k0..k0 + depth {
                sum += lhs.data[r * lhs.row_stride + d * lhs.col_stride]
                    * rhs.data[d * rhs.row_stride + c];
            }
            dst[r * n + c] += sum;
        }
    }
}

/// One register tile: up to 3 rows × 3 registers of accumulators, updated with `depth`
/// rows of `rhs`.
struct Tile {
    dst: *mut f32,
    dst_stride: usize,
    lhs: *const f32,
    lhs_strides: (usize, usize),
    rhs: *const f32,
    rhs_stride: usize,
    depth: usize,
}

impl Tile {
    /// Dispatches to the kernel of this many rows (1..=3) and registers (1..=3).
    ///
    /// # Safety
    /// As for [`Tile::kernel`].
    #[cfg_attr(feature = "relaxed-simd", target_feature(enable = "relaxed-simd"))]
    unsafe fn run(&self, rows: usize, vecs: usize) {
        macro_rules! by_vecs {
            ($r:literal) => {
                match vecs {
                    1 => self.kernel::<$r, 1>(),
                    2 => self.kernel::<$r, 2>(),
                    _ => self.kernel::<$r, 3>(),
                }
            };
        }
        // SAFETY: forwarded from the caller.
        unsafe {
            match rows {
                1 => by_vecs!(1),
                2 => by_vecs!(2),
                _ => by_vecs!(3),
            }
        }
    }

    /// `dst[r, ·] += Σ_d lhs[r, d] · rhs[d, ·]` over `R` rows, `V` registers and `depth`.
    ///
    /// # Safety
    /// `dst` holds `R` rows of `V·4` values at `dst_stride`, `lhs` `R` rows of `depth`
    /// values at its strides, `rhs` `depth` rows of `V·4` values at `rhs_stride`.
    #[inline(always)]
    unsafe fn kernel<const R: usize, const V: usize>(&self) {
        let (row_stride, col_stride) = self.lhs_strides;
        // SAFETY: every pointer below stays inside the extents the caller guarantees.
        unsafe {
            let mut c = [[f32x4_splat(0.0); V]; R];
            for d in 0..self.depth {
                let rhs_row = self.rhs.add(d * self.rhs_stride);
                let b: [v128; V] =
                    core::array::from_fn(|v| v128_load(rhs_row.add(v * LANES).cast()));
                for (r, row) in c.iter_mut().enumerate() {
                    let a = f32x4_splat(*self.lhs.add(r * row_stride + d * col_stride));
                    for (reg, &b) in row.iter_mut().zip(&b) {
                        *reg = madd(a, b, *reg);
                    }
                }
            }
            for (r, row) in c.iter().enumerate() {
                for (v, &reg) in row.iter().enumerate() {
                    let at = self.dst.add(r * self.dst_stride + v * LANES);
                    v128_store(at.cast(), f32x4_add(v128_load(at.cast()), reg));
                }
            }
        }
    }
}
