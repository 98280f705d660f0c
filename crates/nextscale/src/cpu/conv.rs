//! A 3×3, stride-1, padding-1 convolution on host memory, optionally of the input
//! nearest-upsampled 2× (read in place, never materialised). Maps of 32² and more use
//! Winograd's minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks", 2016); smaller ones one im2col matrix product.
//!
//! Each Winograd m×m output tile is `Aᵀ [Σ_c U_c ⊙ V_c] A`, with `U = G g Gᵀ` the α×α
//! (α = m + 2) transform of a 3×3 kernel and `V = Bᵀ d B` that of the α×α input tile. For
//! each of the α² transformed positions ξ the sum over channels is one matrix product
//! `[C_out, C_in] × [C_in, tiles]`. F(2×2, 3×3) takes 16 multiplications per 2×2 tile and
//! channel pair instead of 36: 2.25× less matrix work than a direct convolution, for a few
//! additions per value in the transforms, and results that agree to float rounding (its
//! transforms use only ±1 and ½). On the VQ-VAE decoder's 256²×160 layers it runs about 2×
//! faster than flex's im2col convolution (see `try_conv3x3`). The wasm build takes F(4×4,
//! 3×3) on maps of 128² and more: 4× less matrix work than direct, where the page's decoder
//! waits on arithmetic, with fractions in its kernel transform.

use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use gemm::Parallelism;

use super::{Start, Strided, matmul_into, vectorized};

/// Smallest output (`H·W`) the Winograd path takes: below 32², the transform of a wide
/// layer's weights costs about as much as its products, and one im2col matrix product over
/// all positions is faster.
const MIN_WINOGRAD_POSITIONS: usize = 32 * 32;

/// Smallest output (`H·W`) the wasm build convolves by [`F4`]: the VQ-VAE decoder's 128² and
/// 256² maps, where the products are most of the work (natively F4 measured no faster).
#[cfg(target_arch = "wasm32")]
const MIN_F4_POSITIONS: usize = 128 * 128;

/// [`conv3x3`] on tensors, optionally on the input nearest-upsampled 2× first (the
/// decoder's `Upsample`, without materialising the upsampled map), when they are f32 on the
/// plain (non-autodiff) flex device; `None` otherwise, for the caller to use the backend's
/// own ops. Measured against flex's convolution at the VQ-VAE decoder's shapes: 256²×160
/// 272 → 119 ms, 128²×320 234 → 103 ms, 64²×320 55 → 28 ms (2 cores).
///
/// # Shapes
/// - x: `[B, C_in, H, W]`, weight: `[C_out, C_in, 3, 3]`, bias: `[C_out]` → `[B, C_out, H, W]`,
///   or `[B, C_out, 2H, 2W]` with `upsample`
pub fn try_conv3x3(
    x_bchw: &Tensor<4>,
    weight_oikk: &Tensor<4>,
    bias_o: &Tensor<1>,
    upsample: bool,
) -> Option<Tensor<4>> {
    if !(super::on_host(x_bchw) && super::on_host(weight_oikk) && super::on_host(bias_o)) {
        return None;
    }
    let device = x_bchw.device();
    let [batch, c_in, h, w] = x_bchw.dims();
    let [c_out, weight_c_in, kh, kw] = weight_oikk.dims();
    if (weight_c_in, kh, kw) != (c_in, 3, 3) || bias_o.dims() != [c_out] || h * w == 0 {
        return None;
    }
    // Every operand is read in place; an input view is first copied out contiguously.
    let x = super::primitive(x_bchw)?;
    let x_copy;
    let x = match x.as_slice::<f32>() {
        Some(x) => x,
        None => {
            x_copy = x_bchw.clone().into_data();
            x_copy.as_slice().ok()?
        }
    };
    let weight = super::primitive(weight_oikk)?;
    let bias = super::primitive(bias_o)?;
    let factor = if upsample { 2 } else { 1 };
    let shape = Conv3x3Shape {
        batch,
        c_in,
        c_out,
        h: factor * h,
        w: factor * w,
        upsample,
    };
    let out = conv3x3(x, weight.as_slice()?, bias.as_slice()?, shape);
    Some(Tensor::from_data(
        TensorData::new(out, [batch, c_out, shape.h, shape.w]),
        &device,
    ))
}

/// Sizes of a batched 3×3 convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv3x3Shape {
    /// Batch size.
    pub batch: usize,
    /// Input channels.
    pub c_in: usize,
    /// Output channels.
    pub c_out: usize,
    /// Height of the output (and of the convolved input).
    pub h: usize,
    /// Width of the output (and of the convolved input).
    pub w: usize,
    /// Whether the input holds `[h/2, w/2]` maps, nearest-upsampled 2× before the
    /// convolution (`h` and `w` even).
    pub upsample: bool,
}

impl Conv3x3Shape {
    /// Height and width of the input maps.
    fn input_hw(&self) -> (usize, usize) {
        if self.upsample {
            (self.h / 2, self.w / 2)
        } else {
            (self.h, self.w)
        }
    }
}

/// `out[b, o, y, x] = bias[o] + Σ_{c, dy, dx} weight[o, c, dy, dx] · x[b, c, y+dy−1, x+dx−1]`,
/// with zeros outside the input (PyTorch `Conv2d(k=3, padding=1)`), after a nearest 2×
/// upsampling of `x` when `shape.upsample`: by Winograd's F(2×2, 3×3) on maps of 32² and
/// more (F(4×4, 3×3) from 128² in wasm), else as one im2col matrix product.
///
/// # Shapes
/// - x_bchw: `[batch, c_in, h, w]` (`[batch, c_in, h/2, w/2]` with `upsample`),
///   weight_oikk: `[c_out, c_in, 3, 3]`, bias_o: `[c_out]`
/// - returns `[batch, c_out, h, w]`
pub fn conv3x3(
    x_bchw: &[f32],
    weight_oikk: &[f32],
    bias_o: &[f32],
    shape: Conv3x3Shape,
) -> Vec<f32> {
    let (in_h, in_w) = shape.input_hw();
    assert!(
        !shape.upsample || (shape.h.is_multiple_of(2) && shape.w.is_multiple_of(2)),
        "conv3x3 upsampled size is odd"
    );
    assert_eq!(
        x_bchw.len(),
        shape.batch * shape.c_in * in_h * in_w,
        "conv3x3 input size"
    );
    assert_eq!(
        weight_oikk.len(),
        shape.c_out * shape.c_in * 9,
        "conv3x3 weight size"
    );
    assert_eq!(bias_o.len(), shape.c_out, "conv3x3 bias size");
    let positions = shape.h * shape.w;
    #[cfg(target_arch = "wasm32")]
    if positions >= MIN_F4_POSITIONS {
        return winograd_conv3x3::<F4>(x_bchw, weight_oikk, bias_o, shape);
    }
    if positions >= MIN_WINOGRAD_POSITIONS {
        winograd_conv3x3::<F2>(x_bchw, weight_oikk, bias_o, shape)
    } else {
        im2col_conv3x3(x_bchw, weight_oikk, bias_o, shape)
    }
}

/// [`conv3x3`] as `weight [c_out, 9·c_in] × columns [9·c_in, h·w]` per image, the columns
/// holding each position's 3×3 neighbourhood (zero outside the map).
fn im2col_conv3x3(
    x_bchw: &[f32],
    weight_oikk: &[f32],
    bias_o: &[f32],
    shape: Conv3x3Shape,
) -> Vec<f32> {
    let Conv3x3Shape {
        batch,
        c_in,
        c_out,
        h,
        w,
        upsample,
    } = shape;
    let (in_h, in_w) = shape.input_hw();
    let positions = h * w;
    let depth = 9 * c_in;
    let mut cols = vec![0.0f32; depth * positions];
    // Each output channel starts as its bias; the product accumulates onto it.
    let mut out_bchw: Vec<f32> = (0..batch)
        .flat_map(|_| {
            bias_o
                .iter()
                .flat_map(|&b| std::iter::repeat_n(b, positions))
        })
        .collect();
    for (x_chw, out_chw) in x_bchw
        .chunks_exact(c_in * in_h * in_w)
        .zip(out_bchw.chunks_exact_mut(c_out * positions))
    {
        cols.par_chunks_mut(9 * positions)
            .zip(x_chw.par_chunks(in_h * in_w))
            .for_each(|(taps, plane)| {
                for (tap, col) in taps.chunks_exact_mut(positions).enumerate() {
                    let (dy, dx) = (tap / 3, tap % 3);
                    for (y, row) in col.chunks_exact_mut(w).enumerate() {
                        // Input row y + dy − 1 (zero padding outside).
                        let Some(sy) = (y + dy).checked_sub(1).filter(|&sy| sy < h) else {
                            row.fill(0.0);
                            continue;
                        };
                        let src = if upsample { sy / 2 } else { sy };
                        let src_row = &plane[src * in_w..(src + 1) * in_w];
                        for (x, v) in row.iter_mut().enumerate() {
                            *v = match (x + dx).checked_sub(1).filter(|&sx| sx < w) {
                                Some(sx) if upsample => src_row[sx / 2],
                                Some(sx) => src_row[sx],
                                None => 0.0,
                            };
                        }
                    }
                }
            });
        matmul_into(
            out_chw,
            (c_out, positions, depth),
            Strided::rows(weight_oikk, depth),
            Strided::rows(&cols, positions),
            1.0,
            Parallelism::Rayon(0),
            Start::Dst,
        );
    }
    out_bchw
}

/// A Winograd input transform, [`Minimal::INPUT_TRANSFORM_ROW`].
type InputTransform = fn(&[f32], usize, &mut [f32], &mut [&mut [f32]]);

/// A Winograd output transform, [`Minimal::OUTPUT_TRANSFORM_ROW`].
type OutputTransform = fn(&[&[f32]], f32, usize, &mut [f32], &mut [f32]);

/// A Winograd algorithm F(m×m, 3×3) (Lavin & Gray): each m×m output tile is
/// `Aᵀ [Σ_c U_c ⊙ V_c] A`, over the α×α (α = m + 2) transforms `U = G g Gᵀ` of the 3×3
/// kernels and `V = Bᵀ d B` of the α×α input tiles.
trait Minimal {
    /// Outputs per tile side, m.
    const M: usize;
    /// Input values per tile side, and transformed values per side: m + 2.
    const ALPHA: usize = Self::M + 2;
    /// Tiles processed together: enough for the matrix kernel, while a block's transformed
    /// input and products (`α²·C·T` values each) stay near L2.
    const BLOCK_TILES: usize = 128;
    /// Rows of scratch [`Minimal::OUTPUT_TRANSFORM_ROW`] takes.
    const OUTPUT_SCRATCH_ROWS: usize;

    /// `G (a, b, c)ᵀ`: one column (then row) of a 3×3 kernel transformed to α values.
    fn kernel_line(a: f32, b: f32, c: f32, out: &mut [f32]);

    /// `Bᵀ d B` for a row of input tiles, `(rows, stride, db, v)`: `rows` holds α padded
    /// input rows of `m` blocks of `stride` values each, block `r` holding the columns ≡ r
    /// (mod m), so that column c of tile t is `block[c mod m][t + c div m]`; value
    /// ξ = α·r + s of tile t goes to `v[ξ][t]`. `db` is scratch of α² rows.
    const INPUT_TRANSFORM_ROW: InputTransform;

    /// `Aᵀ m A + bias` for a row of tiles, `(m, bias, w, scratch, dst)`: `m[ξ][t]` is the
    /// product ξ of tile t; writes the up to m output rows `dst` of width `w`. `scratch`
    /// holds `OUTPUT_SCRATCH_ROWS` rows.
    const OUTPUT_TRANSFORM_ROW: OutputTransform;
}

/// F(2×2, 3×3): 16 products per 2×2 tile and channel pair instead of 36, 2.25× less matrix
/// work than a direct convolution; exact on small integers (its transforms use only ±1 and
/// ½).
struct F2;

impl Minimal for F2 {
    const M: usize = 2;
    const OUTPUT_SCRATCH_ROWS: usize = 6;
    const INPUT_TRANSFORM_ROW: InputTransform = f2_input_transform_row;
    const OUTPUT_TRANSFORM_ROW: OutputTransform = f2_output_transform_row;

    /// G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]].
    fn kernel_line(a: f32, b: f32, c: f32, out: &mut [f32]) {
        out.copy_from_slice(&[a, 0.5 * (a + b + c), 0.5 * (a - b + c), c]);
    }
}

/// F(4×4, 3×3): 36 products per 4×4 tile and channel pair instead of 144, 4× less matrix
/// work than a direct convolution and 1.78× less than [`F2`], with interpolation points 0,
/// ±1, ±2 and ∞. Its kernel transform has ¼, ⅙, 1/12 and 1/24, so unlike F2 it is exact
/// only to float rounding; the wasm build takes it on large maps, where arithmetic is what
/// the page waits for.
#[cfg(any(target_arch = "wasm32", test))]
struct F4;

#[cfg(any(target_arch = "wasm32", test))]
impl Minimal for F4 {
    const M: usize = 4;
    const OUTPUT_SCRATCH_ROWS: usize = 28;
    const INPUT_TRANSFORM_ROW: InputTransform = f4_input_transform_row;
    const OUTPUT_TRANSFORM_ROW: OutputTransform = f4_output_transform_row;

    /// G = [[¼, 0, 0], [−⅙, −⅙, −⅙], [−⅙, ⅙, −⅙], [1/24, 1/12, ⅙], [1/24, −1/12, ⅙], [0, 0, 1]].
    fn kernel_line(a: f32, b: f32, c: f32, out: &mut [f32]) {
        let (even, odd) = (a + c, b);
        out.copy_from_slice(&[
            a / 4.0,
            -(even + odd) / 6.0,
            -(even - odd) / 6.0,
            (a / 4.0 + c + odd / 2.0) / 6.0,
            (a / 4.0 + c - odd / 2.0) / 6.0,
            c,
        ]);
    }
}

/// [`conv3x3`] by the Winograd algorithm `W`.
fn winograd_conv3x3<W: Minimal>(
    x_bchw: &[f32],
    weight_oikk: &[f32],
    bias_o: &[f32],
    shape: Conv3x3Shape,
) -> Vec<f32> {
    let Conv3x3Shape {
        batch,
        c_in,
        c_out,
        h,
        w,
        upsample,
    } = shape;
    let (in_h, in_w) = shape.input_hw();
    let (m, alpha) = (W::M, W::ALPHA);
    let positions = alpha * alpha;

    let u_xoi = winograd_weights::<W>(weight_oikk, c_out, c_in);
    let (tiles_h, tiles_w) = (h.div_ceil(m), w.div_ceil(m));
    // Padded input rows hold `m` blocks of `tiles_w + 1` columns, block r the columns ≡ r
    // (mod m), so that a tile's columns `m·t .. m·t + α` are unit strides in t for the
    // transform loops.
    let (rows_pad, stride) = (m * tiles_h + 2, tiles_w + 1);
    let pitch = m * stride;
    let plane = rows_pad * pitch;
    let tile_rows_per_block = (W::BLOCK_TILES / tiles_w).clamp(1, tiles_h);
    let mut out_bchw = vec![0.0f32; batch * c_out * h * w];
    for b in 0..batch {
        let x_chw = &x_bchw[b * c_in * in_h * in_w..(b + 1) * c_in * in_h * in_w];
        let mut xpad_cp = vec![0.0f32; c_in * plane];
        xpad_cp
            .par_chunks_mut(plane)
            .zip(x_chw.par_chunks(in_h * in_w))
            .for_each(|(padded, channel)| {
                for y in 0..h {
                    // Input column x sits at padded column x + 1.
                    let row = if upsample {
                        // Columns 2j and 2j + 1 both repeat value j of input row y / 2.
                        &channel[(y / 2) * in_w..(y / 2 + 1) * in_w]
                    } else {
                        &channel[y * w..(y + 1) * w]
                    };
                    let padded_row = &mut padded[(y + 1) * pitch..(y + 2) * pitch];
                    // Padded column `i·m + r` is column `i·m + r − 1` of the (upsampled) row,
                    // so block r reads `row` from there in steps of m (m/2 upsampled; m is
                    // even).
                    let (factor, step) = if upsample { (2, m / 2) } else { (1, m) };
                    for (r, block) in padded_row.chunks_exact_mut(stride).enumerate() {
                        let first = usize::from(r == 0);
                        let last = (w + 1).saturating_sub(r).div_ceil(m).min(stride);
                        if first >= last {
                            continue;
                        }
                        let source = row[(first * m + r - 1) / factor..].iter().step_by(step);
                        for (value, &x) in block[first..last].iter_mut().zip(source) {
                            *value = x;
                        }
                    }
                }
            });

        let out_chw = &mut out_bchw[b * c_out * h * w..(b + 1) * c_out * h * w];
        let rows_per_block = m * tile_rows_per_block * w;
        let mut blocks: Vec<Vec<&mut [f32]>> = (0..tiles_h.div_ceil(tile_rows_per_block))
            .map(|_| Vec::with_capacity(c_out))
            .collect();
        for channel in out_chw.chunks_mut(h * w) {
            for (block, rows) in blocks.iter_mut().zip(channel.chunks_mut(rows_per_block)) {
                block.push(rows);
            }
        }

        let xpad = xpad_cp.as_slice();
        let u = u_xoi.as_slice();
        blocks
            .into_par_iter()
            .enumerate()
            // Scratch reused from block to block (each block overwrites what it reads).
            .for_each_init(
                || (Vec::new(), Vec::new()),
                |(v_scratch, m_scratch), (i, mut out_rows)| {
                    let ty0 = i * tile_rows_per_block;
                    let n_ty = (out_rows[0].len() / w).div_ceil(m);
                    let n = n_ty * tiles_w;
                    // V[ξ][c][t] = (Bᵀ d B)[ξ] of channel c's input tile t.
                    let v_xct = grown(v_scratch, positions * c_in * n);
                    {
                        // One `[tiles_w]` row of each ξ slab per (channel, tile row).
                        let mut rows: Vec<std::slice::ChunksExactMut<f32>> = v_xct
                            .chunks_exact_mut(c_in * n)
                            .map(|slab| slab.chunks_exact_mut(tiles_w))
                            .collect();
                        let mut db = vec![0.0f32; positions * tiles_w];
                        for c in 0..c_in {
                            for ty in 0..n_ty {
                                let mut v: Vec<&mut [f32]> = rows
                                    .iter_mut()
                                    .map(|slab| slab.next().expect("a row per tile row"))
                                    .collect();
                                let top = c * plane + m * (ty0 + ty) * pitch;
                                (W::INPUT_TRANSFORM_ROW)(
                                    &xpad[top..top + alpha * pitch],
                                    stride,
                                    &mut db,
                                    &mut v,
                                );
                            }
                        }
                    }
                    let m_xot = grown(m_scratch, positions * c_out * n);
                    // M_ξ = U_ξ V_ξ: `[c_out, c_in] × [c_in, n]` for each of the α² positions.
                    for ((m, u), v) in m_xot
                        .chunks_exact_mut(c_out * n)
                        .zip(u.chunks_exact(c_out * c_in))
                        .zip(v_xct.chunks_exact(c_in * n))
                    {
                        let (u, v) = (Strided::rows(u, c_in), Strided::rows(v, n));
                        matmul_into(
                            m,
                            (c_out, n, c_in),
                            u,
                            v,
                            1.0,
                            Parallelism::None,
                            Start::Zero,
                        );
                    }
                    let mut scratch = vec![0.0f32; W::OUTPUT_SCRATCH_ROWS * tiles_w];
                    for (o, dst) in out_rows.iter_mut().enumerate() {
                        let rows = dst.len() / w;
                        for ty in 0..n_ty {
                            // The α² products of this tile row (at most F4's 36), on the stack.
                            let products: [&[f32]; 36] = std::array::from_fn(|xi| {
                                let start = (xi * c_out + o) * n + ty * tiles_w;
                                if xi < positions {
                                    &m_xot[start..start + tiles_w]
                                } else {
                                    &[]
                                }
                            });
                            let (y0, tile_rows) = (m * ty, (rows - m * ty).min(m));
                            (W::OUTPUT_TRANSFORM_ROW)(
                                &products[..positions],
                                bias_o[o],
                                w,
                                &mut scratch,
                                &mut dst[y0 * w..(y0 + tile_rows) * w],
                            );
                        }
                    }
                },
            );
    }
    out_bchw
}

/// The first `len` values of `scratch`, grown with zeros when shorter.
fn grown(scratch: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if scratch.len() < len {
        scratch.resize(len, 0.0);
    }
    &mut scratch[..len]
}

/// U[ξ][o][c] = (G g Gᵀ)[ξ] for the 3×3 kernel g of (o, c), ξ = α·r + s.
fn winograd_weights<W: Minimal>(weight_oikk: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    /// Kernels per parallel work item.
    const KERNELS: usize = 4096;
    let alpha = W::ALPHA;
    let pairs = c_out * c_in;
    let mut u_xoi = vec![0.0f32; alpha * alpha * pairs];
    // Work item t fills kernels t·KERNELS.. of each of the α² slabs.
    let mut slabs: Vec<_> = u_xoi
        .chunks_exact_mut(pairs)
        .map(|slab| slab.chunks_mut(KERNELS))
        .collect();
    let items: Vec<Vec<&mut [f32]>> = (0..pairs.div_ceil(KERNELS))
        .map(|_| {
            slabs
                .iter_mut()
                .map(|slab| slab.next().expect("a chunk per item"))
                .collect()
        })
        .collect();
    items
        .into_par_iter()
        .zip(weight_oikk.par_chunks(9 * KERNELS))
        .for_each(|(mut u_x, kernels)| {
            // G g: each column of g transformed to α rows, `cols[j][r]`.
            let mut cols = vec![0.0f32; 3 * alpha];
            let mut row = vec![0.0f32; alpha];
            for (i, g) in kernels.chunks_exact(9).enumerate() {
                for (j, col) in cols.chunks_exact_mut(alpha).enumerate() {
                    W::kernel_line(g[j], g[3 + j], g[6 + j], col);
                }
                for r in 0..alpha {
                    W::kernel_line(cols[r], cols[alpha + r], cols[2 * alpha + r], &mut row);
                    for (s, &value) in row.iter().enumerate() {
                        u_x[alpha * r + s][i] = value;
                    }
                }
            }
        });
    u_xoi
}

/// `dst[t] = a[t] + sign·b[t]`, a loop the compiler vectorizes.
fn combine(dst: &mut [f32], a: &[f32], b: &[f32], sign: f32) {
    for ((d, &a), &b) in dst.iter_mut().zip(a).zip(b) {
        *d = a + sign * b;
    }
}

vectorized! {
    /// Bᵀ d B for a row of input tiles, with Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0],
    /// [0, 1, 0, −1]]. `rows` holds 4 padded input rows (`half` even columns, then `half` odd
    /// ones); value ξ = 4r + s of tile t goes to `v[ξ][t]`. `db` is scratch of 16 rows.
    fn f2_input_transform_row(rows: &[f32], half: usize, db: &mut [f32], v: &mut [&mut [f32]]) {
        let tiles = v[0].len();
        let mut db_rows: Vec<&mut [f32]> = db.chunks_exact_mut(tiles).collect();
        // d B for each input row r: [d0 − d2, d1 + d2, d2 − d1, d1 − d3] with
        // d0..d3 = even[t], odd[t], even[t+1], odd[t+1].
        for (r, db_r) in db_rows.chunks_exact_mut(4).enumerate() {
            let (even, odd) = rows[r * 2 * half..(r + 1) * 2 * half].split_at(half);
            let (d0, d1, d2, d3) = (
                &even[..tiles],
                &odd[..tiles],
                &even[1..=tiles],
                &odd[1..=tiles],
            );
            combine(db_r[0], d0, d2, -1.0);
            combine(db_r[1], d1, d2, 1.0);
            combine(db_r[2], d2, d1, -1.0);
            combine(db_r[3], d1, d3, -1.0);
        }
        // Bᵀ (d B): the same combination across rows, for each column s.
        for s in 0..4 {
            let row = |r: usize| &*db_rows[4 * r + s];
            combine(v[s], row(0), row(2), -1.0);
            combine(v[4 + s], row(1), row(2), 1.0);
            combine(v[8 + s], row(2), row(1), -1.0);
            combine(v[12 + s], row(1), row(3), -1.0);
        }
    }
}

vectorized! {
    /// Aᵀ m A + bias for a row of tiles, with Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]; `m[ξ][t]` is
    /// product ξ = 4r + s of tile t. Writes the one or two output rows `dst` of width `w`.
    /// `scratch` holds 6 rows.
    fn f2_output_transform_row(
        m: &[&[f32]],
        bias: f32,
        w: usize,
        scratch: &mut [f32],
        dst: &mut [f32],
    ) {
        let tiles = m[0].len();
        let (a, y) = scratch.split_at_mut(4 * tiles);
        let (y0, y1) = y.split_at_mut(tiles);
        for (i, dst_row) in dst.chunks_exact_mut(w).enumerate() {
            // Row i of Aᵀ m, per column j: m0j + m1j + m2j, or m1j − m2j − m3j.
            for (j, a_j) in a.chunks_exact_mut(tiles).enumerate() {
                let (m0, m1, m2, m3) = (m[j], m[4 + j], m[8 + j], m[12 + j]);
                if i == 0 {
                    for (((a, &p), &q), &r) in a_j.iter_mut().zip(m0).zip(m1).zip(m2) {
                        *a = p + q + r;
                    }
                } else {
                    for (((a, &p), &q), &r) in a_j.iter_mut().zip(m1).zip(m2).zip(m3) {
                        *a = p - q - r;
                    }
                }
            }
            // Times A: output columns 2t (a0 + a1 + a2) and 2t+1 (a1 − a2 − a3).
            let (a0, rest) = a.split_at(tiles);
            let (a1, rest) = rest.split_at(tiles);
            let (a2, a3) = rest.split_at(tiles);
            for ((((y0, y1), &p), &q), (&r, &s)) in y0
                .iter_mut()
                .zip(y1.iter_mut())
                .zip(a0)
                .zip(a1)
                .zip(a2.iter().zip(a3))
            {
                *y0 = bias + p + q + r;
                *y1 = bias + q - r - s;
            }
            let (pairs, last) = dst_row.split_at_mut(w / 2 * 2);
            for (pair, (&even, &odd)) in pairs.chunks_exact_mut(2).zip(y0.iter().zip(y1.iter())) {
                pair[0] = even;
                pair[1] = odd;
            }
            if let Some(x) = last.first_mut() {
                *x = y0[tiles - 1];
            }
        }
    }
}

vectorized! {
    #[cfg(any(target_arch = "wasm32", test))]
    /// [`F4`]'s `Bᵀ d B` (see [`Minimal::INPUT_TRANSFORM_ROW`]), with
    /// Bᵀ = [[4, 0, −5, 0, 1, 0], [0, −4, −4, 1, 1, 0], [0, 4, −4, −1, 1, 0],
    /// [0, −2, −1, 2, 1, 0], [0, 2, −1, −2, 1, 0], [0, 4, 0, −5, 0, 1]].
    fn f4_input_transform_row(rows: &[f32], stride: usize, db: &mut [f32], v: &mut [&mut [f32]]) {
        let tiles = v[0].len();
        let pitch = 4 * stride;
        // d B for each input row i: the six columns of tile t are blocks 0..3 at t, then
        // blocks 0 and 1 at t + 1.
        for (i, db_i) in db.chunks_exact_mut(6 * tiles).take(6).enumerate() {
            let row = &rows[i * pitch..(i + 1) * pitch];
            let col = |c: usize| &row[(c % 4) * stride + c / 4..][..tiles];
            let cols = [col(0), col(1), col(2), col(3), col(4), col(5)];
            transform_b(cols, six(db_i, tiles));
        }
        // Bᵀ (d B): the same combination across rows, for each column s.
        let db: &[f32] = db;
        for s in 0..6 {
            let row = |r: usize| &db[(6 * r + s) * tiles..][..tiles];
            let cols = [row(0), row(1), row(2), row(3), row(4), row(5)];
            // Values ξ = 6·j + s for j = 0..5.
            let mut outs = v.iter_mut().skip(s).step_by(6).map(|out| &mut **out);
            let outs = std::array::from_fn(|_| outs.next().expect("six rows"));
            transform_b(cols, outs);
        }
    }
}

#[cfg(any(target_arch = "wasm32", test))]
/// The first six `tiles`-long rows of `buf`, mutably.
fn six(buf: &mut [f32], tiles: usize) -> [&mut [f32]; 6] {
    let mut rows = buf.chunks_exact_mut(tiles);
    std::array::from_fn(|_| rows.next().expect("six rows"))
}

#[cfg(any(target_arch = "wasm32", test))]
/// `out[j] = Σ_c Bᵀ[j][c] · d[c]` elementwise over tiles, for F4's Bᵀ.
#[inline(always)]
fn transform_b(d: [&[f32]; 6], out: [&mut [f32]; 6]) {
    let [d0, d1, d2, d3, d4, d5] = d;
    let [o0, o1, o2, o3, o4, o5] = out;
    let tiles = o0.len();
    let (d0, d1, d2, d3, d4, d5) = (
        &d0[..tiles],
        &d1[..tiles],
        &d2[..tiles],
        &d3[..tiles],
        &d4[..tiles],
        &d5[..tiles],
    );
    let (o1, o2, o3, o4, o5) = (
        &mut o1[..tiles],
        &mut o2[..tiles],
        &mut o3[..tiles],
        &mut o4[..tiles],
        &mut o5[..tiles],
    );
    for t in 0..tiles {
        o0[t] = 4.0 * d0[t] - 5.0 * d2[t] + d4[t];
        o1[t] = (d3[t] + d4[t]) - 4.0 * (d1[t] + d2[t]);
        o2[t] = (d4[t] - d3[t]) + 4.0 * (d1[t] - d2[t]);
        o3[t] = (d4[t] - d2[t]) + 2.0 * (d3[t] - d1[t]);
        o4[t] = (d4[t] - d2[t]) - 2.0 * (d3[t] - d1[t]);
        o5[t] = 4.0 * d1[t] - 5.0 * d3[t] + d5[t];
    }
}

#[cfg(any(target_arch = "wasm32", test))]
/// `out[i] = Σ_k Aᵀ[i][k] · m[k]` elementwise over tiles, for F4's Aᵀ.
#[inline(always)]
fn transform_a(m: [&[f32]; 6], out: [&mut [f32]; 4]) {
    let [m0, m1, m2, m3, m4, m5] = m;
    let [y0, y1, y2, y3] = out;
    let tiles = y0.len();
    let (m0, m1, m2, m3, m4, m5) = (
        &m0[..tiles],
        &m1[..tiles],
        &m2[..tiles],
        &m3[..tiles],
        &m4[..tiles],
        &m5[..tiles],
    );
    let (y1, y2, y3) = (&mut y1[..tiles], &mut y2[..tiles], &mut y3[..tiles]);
    for t in 0..tiles {
        let (sum, diff) = (m1[t] + m2[t], m1[t] - m2[t]);
        let (sum2, diff2) = (m3[t] + m4[t], m3[t] - m4[t]);
        y0[t] = m0[t] + sum + sum2;
        y1[t] = diff + 2.0 * diff2;
        y2[t] = sum + 4.0 * sum2;
        y3[t] = diff + 8.0 * diff2 + m5[t];
    }
}

vectorized! {
    #[cfg(any(target_arch = "wasm32", test))]
    /// [`F4`]'s `Aᵀ m A + bias` (see [`Minimal::OUTPUT_TRANSFORM_ROW`]), with
    /// Aᵀ = [[1, 1, 1, 1, 1, 0], [0, 1, −1, 2, −2, 0], [0, 1, 1, 4, 4, 0], [0, 1, −1, 8, −8, 1]].
    fn f4_output_transform_row(
        m: &[&[f32]],
        bias: f32,
        w: usize,
        scratch: &mut [f32],
        dst: &mut [f32],
    ) {
        let tiles = m[0].len();
        let (a, y) = scratch.split_at_mut(24 * tiles);
        // Aᵀ m: row i, column s at `a[(6·i + s)·tiles ..]`.
        for s in 0..6 {
            let col: [&[f32]; 6] = std::array::from_fn(|r| m[6 * r + s]);
            let mut rows = a.chunks_exact_mut(tiles).skip(s).step_by(6);
            let out: [&mut [f32]; 4] = std::array::from_fn(|_| rows.next().expect("four rows"));
            transform_a(col, out);
        }
        let a: &[f32] = a;
        for (i, dst_row) in dst.chunks_exact_mut(w).enumerate() {
            // Times A: output columns 4t + j.
            let row: [&[f32]; 6] = std::array::from_fn(|s| &a[(6 * i + s) * tiles..][..tiles]);
            let mut ys = y.chunks_exact_mut(tiles);
            let out: [&mut [f32]; 4] = std::array::from_fn(|_| ys.next().expect("four rows"));
            transform_a(row, out);
            let ys: [&[f32]; 4] = std::array::from_fn(|j| &y[j * tiles..(j + 1) * tiles]);
            let (quads, last) = dst_row.split_at_mut(w / 4 * 4);
            for (t, quad) in quads.chunks_exact_mut(4).enumerate() {
                for (value, y_j) in quad.iter_mut().zip(ys) {
                    *value = bias + y_j[t];
                }
            }
            for (value, y_j) in last.iter_mut().zip(ys) {
                *value = bias + y_j[w / 4];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Device, Distribution, Tensor};

    /// Both paths, whatever the size: `conv3x3` picks one by size alone.
    type Path = fn(&[f32], &[f32], &[f32], Conv3x3Shape) -> Vec<f32>;
    /// The paths exact on small integers.
    const PATHS: [(&str, Path); 2] = [
        ("winograd F2", winograd_conv3x3::<F2>),
        ("im2col", im2col_conv3x3),
    ];
    /// Every path.
    const ALL_PATHS: [(&str, Path); 3] =
        [PATHS[0], PATHS[1], ("winograd F4", winograd_conv3x3::<F4>)];

    /// A kernel that is 1 at tap (1, 1) copies the input, plus the bias.
    #[test]
    fn centre_tap_is_identity_plus_bias() {
        let shape = Conv3x3Shape {
            batch: 2,
            c_in: 3,
            c_out: 3,
            h: 5,
            w: 7,
            upsample: false,
        };
        let x: Vec<f32> = (0..2 * 3 * 5 * 7).map(|i| i as f32 * 0.25 - 3.0).collect();
        let mut weight = vec![0.0; 3 * 3 * 9];
        for c in 0..3 {
            weight[(c * 3 + c) * 9 + 4] = 1.0;
        }
        for (name, path) in PATHS {
            let out = path(&x, &weight, &[0.5, -1.0, 2.0], shape);
            for (i, (&got, &input)) in out.iter().zip(&x).enumerate() {
                let bias = [0.5, -1.0, 2.0][(i / 35) % 3];
                assert_eq!(got, input + bias, "{name} at position {i}");
            }
        }
    }

    /// An all-ones kernel on an all-ones input counts the in-bounds neighbours: 9 inside,
    /// 6 on an edge, 4 in a corner (zero padding), for odd and even sizes; exactly, and F4
    /// to float rounding.
    #[test]
    fn box_filter_counts_neighbours() {
        let tolerances = [0.0, 0.0, 1e-6];
        for (h, w) in [(4, 4), (5, 3), (1, 1), (2, 9), (9, 14)] {
            let shape = Conv3x3Shape {
                batch: 1,
                c_in: 1,
                c_out: 1,
                h,
                w,
                upsample: false,
            };
            for ((name, path), tolerance) in ALL_PATHS.into_iter().zip(tolerances) {
                let out = path(&vec![1.0; h * w], &[1.0; 9], &[0.0], shape);
                for y in 0..h {
                    for x in 0..w {
                        let rows = (y.saturating_sub(1)..=(y + 1).min(h - 1)).count();
                        let count =
                            (rows * (x.saturating_sub(1)..=(x + 1).min(w - 1)).count()) as f32;
                        let got = out[y * w + x];
                        assert!(
                            (got - count).abs() <= tolerance * count,
                            "{name} {h}×{w} at ({y}, {x}): {got}, not {count}"
                        );
                    }
                }
            }
        }
    }

    /// Random layers, odd and even sizes, more tile rows than one block, with and without
    /// the fused 2× upsampling, by both paths: the same as burn's own convolution (of burn's
    /// upsampled input) to float rounding.
    #[test]
    fn matches_the_backend_convolution() {
        let device = Device::flex();
        let cases = [
            (2, 5, 7, 9, 11, false),
            (1, 16, 8, 40, 33, false),
            (1, 3, 4, 300, 6, false),
            (2, 6, 5, 4, 7, true),
            (1, 8, 4, 20, 17, true),
        ];
        for (batch, c_in, c_out, in_h, in_w, upsample) in cases {
            let x = Tensor::<4>::random(
                [batch, c_in, in_h, in_w],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let weight =
                Tensor::<4>::random([c_out, c_in, 3, 3], Distribution::Normal(0.0, 0.3), &device);
            let bias = Tensor::<1>::random([c_out], Distribution::Normal(0.0, 1.0), &device);
            let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
            let input = if upsample {
                crate::resample::upsample_nearest_2x(x.clone())
            } else {
                x.clone()
            };
            let [_, _, h, w] = input.dims();
            let want = conv2d(input, weight.clone(), Some(bias.clone()), options)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let shape = Conv3x3Shape {
                batch,
                c_in,
                c_out,
                h,
                w,
                upsample,
            };
            let data = |t: Tensor<4>| t.into_data().try_to_vec::<f32>().unwrap();
            let (x, weight) = (data(x), data(weight));
            let bias = bias.into_data().try_to_vec::<f32>().unwrap();
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (name, path) in ALL_PATHS {
                let got = path(&x, &weight, &bias, shape);
                assert_eq!(got.len(), want.len());
                for (i, (g, r)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - r).abs() <= 1e-5 * scale,
                        "{name} {shape:?} at {i}: {g} vs {r}"
                    );
                }
            }
        }
    }

    /// The tensor entry point takes flex f32 layers of any size, upsampled or not, and
    /// declines other kernel shapes so that the caller uses the backend (autodiff devices:
    /// `nextscale-cli`'s tests).
    #[test]
    fn tensor_path_takes_3x3_layers() {
        let device = Device::flex();
        let weight = Tensor::<4>::ones([2, 2, 3, 3], &device);
        let bias = Tensor::<1>::zeros([2], &device);
        for hw in [[32, 32], [16, 64], [3, 5]] {
            let x = Tensor::<4>::ones([1, 2, hw[0], hw[1]], &device);
            let y = try_conv3x3(&x, &weight, &bias, false).expect("host path");
            assert_eq!(y.dims(), [1, 2, hw[0], hw[1]]);
            let y = try_conv3x3(&x, &weight, &bias, true).expect("host path");
            assert_eq!(y.dims(), [1, 2, 2 * hw[0], 2 * hw[1]]);
        }
        let wide = Tensor::<4>::ones([2, 2, 1, 1], &device);
        let x = Tensor::<4>::ones([1, 2, 8, 8], &device);
        assert!(try_conv3x3(&x, &wide, &bias, false).is_none());
    }
}
