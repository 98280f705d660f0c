//! Host kernels for the plain (non-autodiff) native flex device, where flex's general
//! kernels leave speed on the table: a Winograd 3×3 convolution, unmasked attention, and
//! pointwise maps with a vectorized `exp`. Each entry point takes tensors only when they are
//! f32 on that device and otherwise runs the caller's burn ops, which every other device,
//! autodiff and wasm (where this module is not built) keep using.

pub mod attention;
pub mod conv;
pub mod pointwise;

use burn::tensor::{DType, Device, Tensor};

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
