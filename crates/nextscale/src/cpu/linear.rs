//! `Linear` products on the host, `x · w + bias`: the output starts as the bias rows and
//! the product accumulates onto it (in wasm, each parallel task of the product fills in its
//! own columns), which saves the separate pass over the output that burn's `linear` makes
//! for its bias. Products with few rows take `few_rows` where the CPU
//! has AVX-512F, the rest the gemm crate on the thread pool. The operands are read in place
//! from their tensors. In the wasm CPU engine the weights are stored in panel order
//! ([`PANEL`]) for the SIMD128 kernels, which then need not pack them.

use burn::tensor::{Tensor, TensorData};
use gemm::Parallelism;

use super::{Start, Strided, matmul_into, on_host, primitive};

/// Smallest product (`m·n·k`) that runs on the thread pool; smaller ones stay on the calling
/// thread (flex's own threshold).
const PARALLEL_WORK: usize = 192 * 192 * 192;

/// `x · w + bias` on the host when every tensor may take a host kernel and is contiguous,
/// `fallback(x, w, bias)` otherwise.
///
/// # Shapes
/// - x: `[m, k]`, w: `[k, n]`, bias: `[n]` → `[m, n]`
pub fn linear_or(
    x_mk: Tensor<2>,
    w_kn: Tensor<2>,
    bias_n: Option<Tensor<1>>,
    fallback: impl FnOnce(Tensor<2>, Tensor<2>, Option<Tensor<1>>) -> Tensor<2>,
) -> Tensor<2> {
    let ([m, k], [_, n]) = (x_mk.dims(), w_kn.dims());
    let y_mn = if m > 0 && k > 0 && n > 0 {
        on_host_operands(&x_mk, &w_kn, bias_n.as_ref(), linear)
    } else {
        None
    };
    y_mn.unwrap_or_else(|| fallback(x_mk, w_kn, bias_n))
}

/// `product(x, w, bias, (m, k, n))` on the values of `x` `[m, k]`, `w` `[k, n]` and `bias`
/// `[n]`, read in place, when the shapes agree and every tensor may take a host kernel and
/// is contiguous; `None` otherwise.
fn on_host_operands(
    x_mk: &Tensor<2>,
    w_kn: &Tensor<2>,
    bias_n: Option<&Tensor<1>>,
    product: impl FnOnce(&[f32], &[f32], Option<&[f32]>, (usize, usize, usize)) -> Vec<f32>,
) -> Option<Tensor<2>> {
    let [m, k] = x_mk.dims();
    let [wk, n] = w_kn.dims();
    let host = wk == k
        && on_host(x_mk)
        && on_host(w_kn)
        && bias_n.is_none_or(|b| on_host(b) && b.dims() == [n]);
    if !host {
        return None;
    }
    let (x, w) = (primitive(x_mk)?, primitive(w_kn)?);
    let bias = match bias_n {
        None => None,
        Some(b) => Some(primitive(b)?),
    };
    let (x_s, w_s) = (x.as_slice::<f32>()?, w.as_slice::<f32>()?);
    let bias_s = match &bias {
        None => None,
        Some(b) => Some(b.as_slice::<f32>()?),
    };
    let out = product(x_s, w_s, bias_s, (m, k, n));
    Some(Tensor::from_data(
        TensorData::new(out, [m, n]),
        &x_mk.device(),
    ))
}

/// Output columns of a weight panel. In the wasm CPU engine a `Linear` weight `[k, n]` is
/// stored in panel order: panels of this many columns (the SIMD128 register tile's width),
/// one after another, each holding its `k` rows contiguously, so that the products read
/// the weight front to back in place instead of packing it for every product.
pub const PANEL: usize = 12;

/// The panel order of a weight given as PyTorch stores it, `[n, k]` (row `o` is column `o`
/// of `w` `[k, n]`): panel `p`, columns `12p..12p + c` with `c = min(12, n − 12p)`, holds
/// `w[d, 12p + j]` at `12p·k + d·c + j`.
pub fn panels_from_out_in(w_nk: &[f32], (n, k): (usize, usize)) -> Vec<f32> {
    assert_eq!(w_nk.len(), n * k, "a [{n}, {k}] weight");
    let mut panels = vec![0.0; n * k];
    fill_panels(&mut panels, Strided::rows(w_nk, k), (n, k));
    panels
}

/// Writes the panel order of `w` `[k, n]`, read through its transpose `w_nk` `[n, k]` (any
/// strides), into the first `n·k` values of `panels` (see [`panels_from_out_in`]). Panics
/// (a bug) if either is smaller than that.
pub(super) fn fill_panels(panels: &mut [f32], w_nk: Strided, (n, k): (usize, usize)) {
    assert!(
        panels.len() >= n * k && w_nk.holds(n, k),
        "fill_panels: smaller than [{n}, {k}]"
    );
    let mut at = 0;
    for p0 in (0..n).step_by(PANEL) {
        let cols = PANEL.min(n - p0);
        for d in 0..k {
            for o in p0..p0 + cols {
                panels[at] = w_nk.data[o * w_nk.row_stride + d * w_nk.col_stride];
                at += 1;
            }
        }
    }
}

/// The row-major `[k, n]` values of a weight in panel order.
fn rows_from_panels(panels: &[f32], (k, n): (usize, usize)) -> Vec<f32> {
    let mut w_kn = vec![0.0; k * n];
    for p0 in (0..n).step_by(PANEL) {
        let cols = PANEL.min(n - p0);
        for (d, row) in panels[p0 * k..][..cols * k].chunks_exact(cols).enumerate() {
            w_kn[d * n + p0..][..cols].copy_from_slice(row);
        }
    }
    w_kn
}

/// `x · w + bias` for a weight `w` `[k, n]` whose values are in panel order (see
/// [`PANEL`]): the SIMD128 kernels in wasm when every tensor may take a host kernel and is
/// contiguous, `fallback(x, w, bias)` otherwise (natively, always).
///
/// # Shapes
/// - x: `[m, k]`, w: `[k, n]` (panel order), bias: `[n]` → `[m, n]`
pub fn panels_linear_or(
    x_mk: Tensor<2>,
    w_kn: Tensor<2>,
    bias_n: Option<Tensor<1>>,
    fallback: impl FnOnce(Tensor<2>, Tensor<2>, Option<Tensor<1>>) -> Tensor<2>,
) -> Tensor<2> {
    #[cfg(target_arch = "wasm32")]
    if let Some(y_mn) = panels_on_host(&x_mk, &w_kn, bias_n.as_ref()) {
        return y_mn;
    }
    fallback(x_mk, w_kn, bias_n)
}

/// `x · w + bias` for a weight in panel order, put back in row order for [`linear_or`]:
/// the fallback of [`panels_linear_or`].
///
/// # Shapes
/// - x: `[m, k]`, w: `[k, n]` (panel order), bias: `[n]` → `[m, n]`
pub fn panels_linear_by_rows(
    x_mk: Tensor<2>,
    w_kn: Tensor<2>,
    bias_n: Option<Tensor<1>>,
) -> Tensor<2> {
    let [k, n] = w_kn.dims();
    let device = w_kn.device();
    let panels: Vec<f32> = w_kn
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 values after conversion");
    let w_kn = Tensor::from_data(
        TensorData::new(rows_from_panels(&panels, (k, n)), [k, n]),
        &device,
    );
    linear_or(x_mk, w_kn, bias_n, burn::tensor::module::linear)
}

/// [`panels_linear_or`] on the SIMD128 panel kernel, if every tensor may take it.
#[cfg(target_arch = "wasm32")]
fn panels_on_host(
    x_mk: &Tensor<2>,
    w_kn: &Tensor<2>,
    bias_n: Option<&Tensor<1>>,
) -> Option<Tensor<2>> {
    on_host_operands(x_mk, w_kn, bias_n, |x, w, bias, (m, k, n)| {
        let mut out = vec![0.0; m * n];
        super::simd128::matmul_panels(
            &mut out,
            (m, n, k),
            Strided::rows(x, k),
            w,
            bias.map_or(Start::Zero, Start::Rows),
            m * n * k >= PARALLEL_WORK,
        );
        out
    })
}

/// `x · w + bias` for row-major `x` `[m, k]`, `w` `[k, n]` and `bias` `[n]`.
fn linear(
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    (m, k, n): (usize, usize, usize),
) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if let Some(out) = super::few_rows::try_matmul(x, w, bias, (m, k, n)) {
        return out;
    }
    let mut out = vec![0.0; m * n];
    let parallelism = if m * n * k >= PARALLEL_WORK {
        Parallelism::Rayon(0)
    } else {
        Parallelism::None
    };
    matmul_into(
        &mut out,
        (m, n, k),
        Strided::rows(x, k),
        Strided::rows(w, n),
        1.0,
        parallelism,
        bias.map_or(Start::Zero, Start::Rows),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::linear;
    use burn::tensor::{Device, Distribution};

    /// A weight put in panel order (one panel, several, a last narrow one) comes back in
    /// row order, and its product by way of rows is the row-major weight's, bit for bit.
    #[test]
    fn panel_order_round_trips() {
        let device = Device::flex();
        let normal = Distribution::Normal(0.0, 1.0);
        for (m, k, n) in [(3, 5, 7), (4, 9, 12), (2, 17, 29), (1, 1, 1)] {
            let x = Tensor::<2>::random([m, k], normal, &device);
            let w_nk = Tensor::<2>::random([n, k], normal, &device);
            let b = Tensor::<1>::random([n], normal, &device);
            let values: Vec<f32> = w_nk.clone().into_data().try_to_vec().unwrap();
            let panels = panels_from_out_in(&values, (n, k));
            assert_eq!(panels.len(), n * k);
            let w_kn = w_nk.transpose();
            let rows: Vec<f32> = w_kn.clone().into_data().try_to_vec().unwrap();
            assert_eq!(rows_from_panels(&panels, (k, n)), rows);
            // Contiguous, as the fallback's, so that both take the same kernel.
            let w_panels = Tensor::<2>::from_data(TensorData::new(panels, [k, n]), &device);
            let w_kn = Tensor::<2>::from_data(TensorData::new(rows, [k, n]), &device);
            let want = linear_or(x.clone(), w_kn, Some(b.clone()), linear);
            let got = panels_linear_or(x, w_panels, Some(b), panels_linear_by_rows);
            let want: Vec<f32> = want.into_data().try_to_vec().unwrap();
            let got: Vec<f32> = got.into_data().try_to_vec().unwrap();
            assert_eq!(got, want, "{m}×{k}×{n}");
        }
    }

    /// Row counts on both sides of the few-row kernel's limit, column counts it declines,
    /// with and without bias: the backend's `linear` to float rounding.
    #[test]
    fn matches_the_backend_linear() {
        let device = Device::flex();
        let normal = Distribution::Normal(0.0, 1.0);
        for (m, k, n) in [
            (1, 1, 1),
            (3, 5, 7),
            (70, 33, 48),
            (130, 64, 100),
            (200, 257, 96),
        ] {
            let x = Tensor::<2>::random([m, k], normal, &device);
            let w = Tensor::<2>::random([k, n], normal, &device);
            let b = Tensor::<1>::random([n], normal, &device);
            for bias in [None, Some(b)] {
                let want = linear(x.clone(), w.clone(), bias.clone());
                let got = linear_or(x.clone(), w.clone(), bias, |_, _, _| {
                    unreachable!("host path")
                });
                let want: Vec<f32> = want.into_data().try_to_vec().unwrap();
                let got: Vec<f32> = got.into_data().try_to_vec().unwrap();
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() < 1e-4 * (1.0 + w.abs()),
                        "{m}×{k}×{n}: {g} vs {w}"
                    );
                }
            }
        }
    }
}
