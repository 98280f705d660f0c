//! Constants of the logistic activations (SiLU, tanh-GELU), shared by their burn-op form (the
//! `nn` layers) and the host kernels (`cpu::pointwise`), which sit on lower layers than `nn`.

/// Largest exponent the logistic activations pass to `exp`: beyond it `1 + e^z` is already
/// `e^z` to f32 precision, and `e^z` stays finite, so the gradient through `exp` is 0
/// instead of `0·∞ = NaN`.
pub const MAX_LOGISTIC_EXPONENT: f64 = 80.0;

/// `√(2/π)`, the scale inside the tanh approximation of GELU.
pub const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
