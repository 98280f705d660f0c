//! Host kernels for the plain (non-autodiff) native flex device, where flex's general
//! kernels leave speed on the table: a Winograd 3×3 convolution, unmasked attention, and
//! pointwise maps with a vectorized `exp`. Each entry point takes tensors only when they are
//! f32 on that device and otherwise runs the caller's burn ops, which every other device,
//! autodiff and wasm (where this module is not built) keep using.

pub mod attention;
pub mod conv;
pub mod pointwise;

use burn::tensor::{DType, Device, Tensor};
use gemm::{Parallelism, gemm};

/// Independent f32 accumulators in the host reductions, so that their loops vectorize.
const LANES: usize = 8;

/// Whether `tensor` may take a host kernel: f32 on the plain flex device.
fn on_host<const D: usize>(tensor: &Tensor<D>) -> bool {
    let device = tensor.device();
    // Device equality ignores autodiff; a traced tensor must stay on the backend.
    device == Device::flex() && !device.is_autodiff() && tensor.dtype() == DType::F32
}

/// Applies `f` to the values of `x` in place on the host when `x` may take a host kernel,
/// and `fallback(x)` otherwise.
fn map_on_host_or<const D: usize>(
    x: Tensor<D>,
    f: impl FnOnce(&mut [f32]),
    fallback: impl FnOnce(Tensor<D>) -> Tensor<D>,
) -> Tensor<D> {
    if !on_host(&x) {
        return fallback(x);
    }
    let device = x.device();
    // Zero-copy when `x` holds the only reference to its contiguous buffer.
    let mut data = x.into_data();
    match data.as_mut_slice::<f32>() {
        Ok(values) => {
            f(values);
            Tensor::from_data(data, &device)
        }
        Err(_) => fallback(Tensor::from_data(data, &device)),
    }
}

/// A matrix operand read in place from a slice: element (i, j) is
/// `data[i·row_stride + j·col_stride]`.
#[derive(Debug, Clone, Copy)]
struct Strided<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Strided<'a> {
    /// A row-major matrix with `cols` columns.
    fn rows(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// Whether every element of a `rows × cols` view lies inside `data`.
    fn holds(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
}

/// `dst = scale · lhs · rhs` with the gemm crate on the calling thread, for `dst` row-major
/// `[m, n]`, `lhs` `[m, k]` and `rhs` `[k, n]`. Panics (a bug, not bad input) if an operand
/// is smaller than its view.
fn matmul_into(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: Strided,
    rhs: Strided,
    scale: f32,
) {
    assert!(
        dst.len() >= m * n && lhs.holds(m, k) && rhs.holds(k, n),
        "matmul_into operands smaller than [{m}, {k}] × [{k}, {n}]"
    );
    // SAFETY: the assertion keeps every element gemm reads or writes inside its slice.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            Parallelism::None,
        );
    }
}
