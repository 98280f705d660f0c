//! A 3×3, stride-1, padding-1 convolution on host memory, optionally of the input
//! nearest-upsampled 2× (read in place, never materialised). Maps of 32² and more use
//! Winograd's minimal filtering F(2×2, 3×3) (Lavin & Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2016); smaller ones one im2col matrix product.
//!
//! Each Winograd 2×2 output tile is `Aᵀ [Σ_c U_c ⊙ V_c] A`, with `U = G g Gᵀ` the 4×4
//! transform of a 3×3 kernel and `V = Bᵀ d B` that of the 4×4 input tile. For each of the 16
//! transformed positions ξ the sum over channels is one matrix product
//! `[C_out, C_in] × [C_in, tiles]`, so the products take 16 multiplications per tile and
//! channel pair instead of 36: 2.25× less matrix work than a direct convolution, for a few
//! additions per value in the transforms. On the VQ-VAE decoder's 256²×160 layers this runs
//! about 2× faster than flex's im2col convolution (see `try_conv3x3`); results agree to float
//! rounding (the transforms use only ±1 and ½).

use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use gemm::Parallelism;

use super::{Start, Strided, matmul_into, vectorized};

/// Smallest output (`H·W`) the Winograd path takes: below 32², the transform of a wide
/// layer's weights costs about as much as its products, and one im2col matrix product over
/// all positions is faster.
const MIN_WINOGRAD_POSITIONS: usize = 32 * 32;

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
/// more, else as one im2col matrix product.
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
    if shape.h * shape.w >= MIN_WINOGRAD_POSITIONS {
        winograd_conv3x3(x_bchw, weight_oikk, bias_o, shape)
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

/// Winograd F(2×2, 3×3) tiles processed together: enough for the matrix kernel, while a
/// block's transformed input and products (`16·C·T` values each) stay near L2.
const WINOGRAD_BLOCK_TILES: usize = 128;

/// [`conv3x3`] by Winograd's F(2×2, 3×3).
fn winograd_conv3x3(
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

    let u_xoi = winograd_weights(weight_oikk, c_out, c_in);
    let (tiles_h, tiles_w) = (h.div_ceil(2), w.div_ceil(2));
    // Padded input rows hold `tiles_w + 1` even columns, then `tiles_w + 1` odd ones, so a
    // tile's four columns `2t .. 2t+3` are `even[t], odd[t], even[t+1], odd[t+1]`: unit
    // strides in t for the transform loops.
    let (rows_pad, half) = (2 * tiles_h + 2, tiles_w + 1);
    let pitch = 2 * half;
    let plane = rows_pad * pitch;
    let tile_rows_per_block = (WINOGRAD_BLOCK_TILES / tiles_w).clamp(1, tiles_h);
    let mut out_bchw = vec![0.0f32; batch * c_out * h * w];
    for b in 0..batch {
        let x_chw = &x_bchw[b * c_in * in_h * in_w..(b + 1) * c_in * in_h * in_w];
        let mut xpad_cp = vec![0.0f32; c_in * plane];
        xpad_cp
            .par_chunks_mut(plane)
            .zip(x_chw.par_chunks(in_h * in_w))
            .for_each(|(padded, channel)| {
                for y in 0..h {
                    let (even, odd) = padded[(y + 1) * pitch..(y + 2) * pitch].split_at_mut(half);
                    // Input column x sits at padded column x + 1: x = 2j goes to odd[j],
                    // x = 2j + 1 to even[j + 1].
                    if upsample {
                        // Columns 2j and 2j + 1 both repeat value j of input row y / 2.
                        let row = &channel[(y / 2) * in_w..(y / 2 + 1) * in_w];
                        odd[..in_w].copy_from_slice(row);
                        even[1..=in_w].copy_from_slice(row);
                        continue;
                    }
                    let row = &channel[y * w..(y + 1) * w];
                    let pairs = row.chunks_exact(2);
                    if let [last] = pairs.remainder() {
                        odd[w / 2] = *last;
                    }
                    for ((pair, o), e) in pairs.zip(odd.iter_mut()).zip(&mut even[1..]) {
                        *o = pair[0];
                        *e = pair[1];
                    }
                }
            });

        let out_chw = &mut out_bchw[b * c_out * h * w..(b + 1) * c_out * h * w];
        let rows_per_block = 2 * tile_rows_per_block * w;
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
                    let n_ty = (out_rows[0].len() / w).div_ceil(2);
                    let n = n_ty * tiles_w;
                    // V[ξ][c][t] = (Bᵀ d B)[ξ] of channel c's input tile t.
                    let v_xct = grown(v_scratch, 16 * c_in * n);
                    {
                        // One `[tiles_w]` row of each ξ slab per (channel, tile row).
                        let mut rows: Vec<std::slice::ChunksExactMut<f32>> = v_xct
                            .chunks_exact_mut(c_in * n)
                            .map(|slab| slab.chunks_exact_mut(tiles_w))
                            .collect();
                        let mut db = vec![0.0f32; 16 * tiles_w];
                        for c in 0..c_in {
                            for ty in 0..n_ty {
                                let mut v: Vec<&mut [f32]> = rows
                                    .iter_mut()
                                    .map(|slab| slab.next().expect("a row per tile row"))
                                    .collect();
                                let top = c * plane + 2 * (ty0 + ty) * pitch;
                                input_transform_row(
                                    &xpad[top..top + 4 * pitch],
                                    half,
                                    &mut db,
                                    &mut v,
                                );
                            }
                        }
                    }
                    let m_xot = grown(m_scratch, 16 * c_out * n);
                    // M_ξ = U_ξ V_ξ: `[c_out, c_in] × [c_in, n]` for each of the 16 positions.
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
                    let mut scratch = vec![0.0f32; 6 * tiles_w];
                    for (o, dst) in out_rows.iter_mut().enumerate() {
                        let rows = dst.len() / w;
                        for ty in 0..n_ty {
                            let m: [&[f32]; 16] = std::array::from_fn(|xi| {
                                let start = (xi * c_out + o) * n + ty * tiles_w;
                                &m_xot[start..start + tiles_w]
                            });
                            let (y0, two_rows) = (2 * ty, (rows - 2 * ty).min(2));
                            output_transform_row(
                                &m,
                                bias_o[o],
                                w,
                                &mut scratch,
                                &mut dst[y0 * w..(y0 + two_rows) * w],
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

/// U[ξ][o][c] = (G g G^T)[ξ] for the 3×3 kernel g of (o, c), with
/// G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]].
fn winograd_weights(weight_oikk: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    /// Kernels per parallel work item.
    const KERNELS: usize = 4096;
    let transform = |a: f32, b: f32, c: f32| [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
    let pairs = c_out * c_in;
    let mut u_xoi = vec![0.0f32; 16 * pairs];
    // Work item t fills kernels t·KERNELS.. of each of the 16 slabs.
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
            for (i, g) in kernels.chunks_exact(9).enumerate() {
                // G g: each column of g transformed to 4 rows.
                let cols: [[f32; 4]; 3] =
                    std::array::from_fn(|j| transform(g[j], g[3 + j], g[6 + j]));
                for r in 0..4 {
                    let row = transform(cols[0][r], cols[1][r], cols[2][r]);
                    for (s, &value) in row.iter().enumerate() {
                        u_x[4 * r + s][i] = value;
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
    fn input_transform_row(rows: &[f32], half: usize, db: &mut [f32], v: &mut [&mut [f32]]) {
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
    fn output_transform_row(
        m: &[&[f32]; 16],
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::conv2d;
    use burn::tensor::ops::ConvOptions;
    use burn::tensor::{Device, Distribution, Tensor};

    /// Both paths, whatever the size: `conv3x3` picks one by size alone.
    type Path = fn(&[f32], &[f32], &[f32], Conv3x3Shape) -> Vec<f32>;
    const PATHS: [(&str, Path); 2] = [("winograd", winograd_conv3x3), ("im2col", im2col_conv3x3)];

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
    /// 6 on an edge, 4 in a corner (zero padding), for odd and even sizes.
    #[test]
    fn box_filter_counts_neighbours() {
        for (h, w) in [(4, 4), (5, 3), (1, 1), (2, 9)] {
            let shape = Conv3x3Shape {
                batch: 1,
                c_in: 1,
                c_out: 1,
                h,
                w,
                upsample: false,
            };
            for (name, path) in PATHS {
                let out = path(&vec![1.0; h * w], &[1.0; 9], &[0.0], shape);
                for y in 0..h {
                    for x in 0..w {
                        let rows = (y.saturating_sub(1)..=(y + 1).min(h - 1)).count();
                        let cols = (x.saturating_sub(1)..=(x + 1).min(w - 1)).count();
                        assert_eq!(
                            out[y * w + x],
                            (rows * cols) as f32,
                            "{name} {h}×{w} at ({y}, {x})"
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
            for (name, path) in PATHS {
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
