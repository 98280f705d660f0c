//! `Linear` products on the host, `x · w + bias`: the output starts as the bias rows and
//! the product accumulates onto it (in wasm, each parallel task of the product fills in its
//! own columns), which saves the separate pass over the output that burn's `linear` makes
//! for its bias. Products with few rows take `few_rows` where the CPU
//! has AVX-512F, the rest the gemm crate on the thread pool. The operands are read in place
//! from their tensors.

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
    let [m, k] = x_mk.dims();
    let [wk, n] = w_kn.dims();
    let takes = m > 0
        && k > 0
        && n > 0
        && wk == k
        && on_host(&x_mk)
        && on_host(&w_kn)
        && bias_n
            .as_ref()
            .is_none_or(|b| on_host(b) && b.dims() == [n]);
    if !takes {
        return fallback(x_mk, w_kn, bias_n);
    }
    let (Some(x), Some(w)) = (primitive(&x_mk), primitive(&w_kn)) else {
        return fallback(x_mk, w_kn, bias_n);
    };
    let bias = bias_n.as_ref().map(primitive);
    let (Some(x_s), Some(w_s)) = (x.as_slice::<f32>(), w.as_slice::<f32>()) else {
        return fallback(x_mk, w_kn, bias_n);
    };
    let bias_s = match &bias {
        None => None,
        Some(b) => match b.as_ref().and_then(|b| b.as_slice::<f32>()) {
            Some(s) => Some(s),
            None => return fallback(x_mk, w_kn, bias_n),
        },
    };
    let out = linear(x_s, w_s, bias_s, (m, k, n));
    Tensor::from_data(TensorData::new(out, [m, n]), &x_mk.device())
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
