//! Host kernels for the plain (non-autodiff) flex device, natively and in wasm, where flex's
//! general kernels leave speed on the table: 3×3 convolutions (Winograd, im2col, with the
//! decoder's 2× upsampling fused in), unmasked attention, products with few rows, and
//! pointwise maps and GroupNorm over a vectorized `exp`. Each entry point takes tensors only
//! when they are f32 on that device and otherwise runs the caller's burn ops, which every
//! other device (wgpu, WebGPU) and autodiff keep using.
//!
//! In wasm the same code runs on SIMD128 (the gemm crate's kernels, and loops the compiler
//! vectorizes), on rayon's pool in the threaded build and on the calling thread otherwise.

pub mod attention;
pub mod conv;
#[cfg(target_arch = "x86_64")]
pub mod few_rows;
pub mod linear;
pub mod pointwise;
#[cfg(target_arch = "wasm32")]
mod simd128;

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Device, Tensor};
use gemm::{Parallelism, gemm};

/// Independent f32 accumulators in the host reductions, so that their loops vectorize.
const LANES: usize = 8;

/// Whether the CPU runs the AVX-512 versions of [`vectorized!`] kernels (Skylake-X and Zen 4
/// level): every feature in their `target_feature` list.
#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    use std::arch::is_x86_feature_detected as has;
    has!("avx512f")
        && has!("avx512vl")
        && has!("avx512bw")
        && has!("avx512dq")
        && has!("avx2")
        && has!("fma")
        && has!("bmi1")
        && has!("bmi2")
}

/// Defines a kernel function whose body also gets an AVX-512 build, chosen at run time, so
/// that its loops vectorize 16 lanes wide rather than the baseline's 4. Results do not
/// depend on the build: the kernels fix their summation order with explicit lanes, and the
/// compiler fuses no multiply-adds on its own. (A closure passed to a target-feature function
/// would be compiled on its own, for the baseline; the body here is inlined into each build.)
macro_rules! vectorized {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if $crate::cpu::has_avx512() {
                    // SAFETY: the CPU has every feature `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
use vectorized;

/// Whether `device` is the one the host kernels serve: the plain flex device.
pub fn host_device(device: &Device) -> bool {
    // Device equality ignores autodiff; a traced tensor must stay on the backend.
    *device == Device::flex() && !device.is_autodiff()
}

/// Whether `tensor` may take a host kernel: f32 on the [`host_device`].
fn on_host<const D: usize>(tensor: &Tensor<D>) -> bool {
    host_device(&tensor.device()) && tensor.dtype() == DType::F32
}

/// The flex primitive of a host tensor, sharing its buffer: read its values with
/// `as_slice` (in place, where contiguous) instead of copying them out with `into_data`.
fn primitive<const D: usize>(tensor: &Tensor<D>) -> Option<FlexTensor> {
    tensor.clone().try_into_primitive::<Flex>().ok()
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

/// What a matrix product's output starts from before the product is added to it.
#[derive(Debug, Clone, Copy)]
enum Start<'a> {
    /// The values `dst` holds: the product accumulates onto them.
    Dst,
    /// Zero: `dst`'s values are overwritten.
    Zero,
    /// Every row a copy of this one (a `Linear` bias, `n` values).
    Rows(&'a [f32]),
}

/// `dst = start + scale · lhs · rhs` with the gemm crate, for `dst` row-major `[m, n]`,
/// `lhs` `[m, k]` and `rhs` `[k, n]`, on the calling thread or the pool as `parallelism`
/// says. In wasm, unscaled products with a row-major `rhs` take the SIMD128 kernels of
/// [`simd128`] instead, which fill in `start` inside their parallel tasks. Panics (a bug,
/// not bad input) if an operand is smaller than its view or a start row is not `n` long.
fn matmul_into(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: Strided,
    rhs: Strided,
    scale: f32,
    parallelism: Parallelism,
    start: Start,
) {
    assert!(
        dst.len() >= m * n
            && lhs.holds(m, k)
            && rhs.holds(k, n)
            && !matches!(start, Start::Rows(row) if row.len() != n),
        "matmul_into operands smaller than [{m}, {k}] × [{k}, {n}]"
    );
    #[cfg(target_arch = "wasm32")]
    if rhs.col_stride == 1 && scale == 1.0 {
        let parallel = !matches!(parallelism, Parallelism::None);
        return simd128::matmul(dst, (m, n, k), lhs, rhs, start, parallel);
    }
    let accumulate = match start {
        Start::Dst => true,
        Start::Zero => false,
        Start::Rows(row) => {
            for dst_row in dst[..m * n].chunks_exact_mut(n) {
                dst_row.copy_from_slice(row);
            }
            true
        }
    };
    // SAFETY: the assertion keeps every element gemm reads or writes inside its slice.
    unsafe {
        gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
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
            parallelism,
        );
    }
}
