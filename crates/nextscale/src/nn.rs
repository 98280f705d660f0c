//! The few layers the models share, built from a [`ParamSource`] under official names.

use burn::module::{Module, Param};
use burn::tensor::module::{conv2d, layer_norm, linear};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Int, Tensor};

use crate::activation::{MAX_LOGISTIC_EXPONENT, SQRT_2_OVER_PI};
use crate::error::Result;
use crate::resample::upsample_nearest_2x;
use crate::weights::{Init, ParamSource};

/// Default std of random weights (the official `init_std` of 0.02).
pub const INIT_STD: f64 = 0.02;

/// The order of a [`Linear`] weight's values in its `[in, out]` tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightOrder {
    /// Row-major, as burn's ops read it.
    Rows,
    /// Panels of output columns for the wasm CPU engine's products
    /// ([`crate::cpu::linear::PANEL`]), loaded so in the wasm CPU engine (the plain flex
    /// device in wasm); only [`crate::cpu::linear::panels_linear_or`] reads them.
    Panels,
}

/// `nn.Linear`; the weight is kept `[in, out]` for burn's `linear`.
#[derive(Module, Debug)]
pub struct Linear {
    /// Weight `[d_in, d_out]`, its values in `order`.
    pub weight: Param<Tensor<2>>,
    /// Bias `[d_out]`.
    pub bias: Option<Param<Tensor<1>>>,
    /// The order of `weight`'s values: panels in the wasm CPU engine, rows elsewhere.
    #[module(skip)]
    pub order: WeightOrder,
}

impl Linear {
    /// Builds `{name}.weight` (`[d_out, d_in]` in the file) and optionally `{name}.bias`.
    pub fn new(
        src: &mut ParamSource,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Self> {
        Self::with_std(src, name, d_in, d_out, bias, INIT_STD)
    }

    /// Like [`Linear::new`] with a chosen init std.
    pub fn with_std(
        src: &mut ParamSource,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
        std: f64,
    ) -> Result<Self> {
        let weight_name = format!("{name}.weight");
        let init = Init::Normal(std);
        let device = src.device();
        // The wasm CPU engine: the host kernels' device in wasm.
        let panels = cfg!(target_arch = "wasm32") && crate::cpu::host_device(device);
        let (weight, order) = if panels {
            let weight = src.linear_weight_as(&weight_name, d_out, d_in, init, |w_nk| {
                crate::cpu::linear::panels_from_out_in(w_nk, (d_out, d_in))
            })?;
            (weight, WeightOrder::Panels)
        } else {
            let weight = src.linear_weight(&weight_name, d_out, d_in, init)?;
            (weight, WeightOrder::Rows)
        };
        let bias = if bias {
            Some(src.param(&format!("{name}.bias"), [d_out], Init::Zeros)?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            order,
        })
    }

    /// All leading dimensions fold into the rows of one `[rows, d_in] × [d_in, d_out]`
    /// product. burn's own policy keeps a batched product whenever the rows per batch are a
    /// multiple of 32, and flex then packs the shared weight once per batch: with CFG's batch
    /// of 2, `[2, 64, 1024] × [1024, 4096]` took 15.1 ms batched against 7.9 ms folded
    /// (2 cores).
    ///
    /// # Shapes
    /// - x: `[..., d_in]` → `[..., d_out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.forward_biased(x, self.bias.as_ref().map(Param::val))
    }

    /// [`Linear::forward`] with a bias given by the caller in place of the layer's own (the
    /// attention's `(q_bias, 0, v_bias)` on its bias-free `mat_qkv`), added inside the product.
    ///
    /// # Shapes
    /// - x: `[..., d_in]`, bias: `[d_out]` → `[..., d_out]`
    pub fn forward_biased<const D: usize>(
        &self,
        x: Tensor<D>,
        bias: Option<Tensor<1>>,
    ) -> Tensor<D> {
        let mut dims = x.dims();
        let d_in = dims[D - 1];
        let rows = dims[..D - 1].iter().product();
        let x_rd = x.reshape([rows, d_in]);
        let y_rd = match self.order {
            WeightOrder::Rows => {
                crate::cpu::linear::linear_or(x_rd, self.weight.val(), bias, linear)
            }
            WeightOrder::Panels => crate::cpu::linear::panels_linear_or(
                x_rd,
                self.weight.val(),
                bias,
                crate::cpu::linear::panels_linear_by_rows,
            ),
        };
        dims[D - 1] = y_rd.dims()[1];
        y_rd.reshape(dims)
    }
}

/// `nn.Conv2d` with square kernels and symmetric padding.
#[derive(Module, Debug)]
pub struct Conv2d {
    /// Weight `[out, in, k, k]`.
    pub weight: Param<Tensor<4>>,
    /// Bias `[out]`.
    pub bias: Param<Tensor<1>>,
    /// Stride.
    pub stride: usize,
    /// Padding before each spatial axis.
    pub pad_begin: usize,
    /// Padding after each spatial axis.
    pub pad_end: usize,
}

impl Conv2d {
    /// Builds `{name}.weight` and `{name}.bias` of a `k×k` convolution, padding `k/2`.
    pub fn new(
        src: &mut ParamSource,
        name: &str,
        c_in: usize,
        c_out: usize,
        k: usize,
    ) -> Result<Self> {
        let fan_in = (c_in * k * k) as f64;
        let weight = src.param(
            &format!("{name}.weight"),
            [c_out, c_in, k, k],
            Init::Normal((1.0 / fan_in).sqrt()),
        )?;
        let bias = src.param(&format!("{name}.bias"), [c_out], Init::Zeros)?;
        Ok(Self {
            weight,
            bias,
            stride: 1,
            pad_begin: k / 2,
            pad_end: k / 2,
        })
    }

    /// The official `Downsample2x` conv: pad (0, 1) then a 3×3 conv with stride 2.
    pub fn downsample(src: &mut ParamSource, name: &str, c: usize) -> Result<Self> {
        let mut conv = Self::new(src, name, c, c, 3)?;
        conv.stride = 2;
        conv.pad_begin = 0;
        conv.pad_end = 1;
        Ok(conv)
    }

    /// On the plain flex device, 3×3 stride-1 layers run as a host kernel
    /// (`cpu::conv`: Winograd from 32², im2col below); everywhere else burn's `conv2d`.
    ///
    /// # Shapes
    /// - x: `[B, in, H, W]` → `[B, out, H', W']`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if let Some(y) = self.host_conv3x3(&x, false) {
            return y;
        }
        let pad = (self.pad_begin, self.pad_end);
        let options = ConvOptions {
            stride: [self.stride; 2],
            padding: [pad; 2],
            dilation: [1; 2],
            groups: 1,
        };
        conv2d(x, self.weight.val(), Some(self.bias.val()), options)
    }

    /// `forward` of the input nearest-upsampled 2× (the VQ-VAE decoder's `Upsample`); the
    /// host kernel reads the input in place of materialising the upsampled map.
    ///
    /// # Shapes
    /// - x: `[B, in, H, W]` → `[B, out, 2H', 2W']`
    pub fn forward_upsampled(&self, x: Tensor<4>) -> Tensor<4> {
        if let Some(y) = self.host_conv3x3(&x, true) {
            return y;
        }
        self.forward(upsample_nearest_2x(x))
    }

    /// The host kernel's output where this is a stride-1, padding-1 layer and the kernel
    /// takes it (`try_conv3x3` checks the 3×3 weights and the tensors).
    fn host_conv3x3(&self, x: &Tensor<4>, upsample: bool) -> Option<Tensor<4>> {
        if (self.stride, self.pad_begin, self.pad_end) != (1, 1, 1) {
            return None;
        }
        crate::cpu::conv::try_conv3x3(x, &self.weight.val(), &self.bias.val(), upsample)
    }
}

/// `nn.GroupNorm` with affine weight and bias.
#[derive(Module, Debug)]
pub struct GroupNorm {
    /// Scale `[C]`.
    pub weight: Param<Tensor<1>>,
    /// Shift `[C]`.
    pub bias: Param<Tensor<1>>,
    /// Number of groups.
    pub groups: usize,
    /// Variance epsilon.
    pub eps: f64,
}

impl GroupNorm {
    /// Builds `{name}.weight` and `{name}.bias`.
    pub fn new(
        src: &mut ParamSource,
        name: &str,
        c: usize,
        groups: usize,
        eps: f64,
    ) -> Result<Self> {
        Ok(Self {
            weight: src.param(&format!("{name}.weight"), [c], Init::Ones)?,
            bias: src.param(&format!("{name}.bias"), [c], Init::Zeros)?,
            groups,
            eps,
        })
    }

    /// # Shapes
    /// - x: `[B, C, H, W]` → `[B, C, H, W]`
    pub fn forward(&self, x_bchw: Tensor<4>) -> Tensor<4> {
        self.forward_then(x_bchw, false)
    }

    /// `silu(self.forward(x))`, in one pass where a host kernel takes it.
    ///
    /// # Shapes
    /// - x: `[B, C, H, W]` → `[B, C, H, W]`
    pub fn forward_silu(&self, x_bchw: Tensor<4>) -> Tensor<4> {
        self.forward_then(x_bchw, true)
    }

    fn forward_then(&self, x_bchw: Tensor<4>, then_silu: bool) -> Tensor<4> {
        let ops = |x_bchw: Tensor<4>| {
            let normed_bchw = self.normalize(x_bchw);
            if then_silu {
                silu(normed_bchw)
            } else {
                normed_bchw
            }
        };
        crate::cpu::pointwise::group_norm_or(
            x_bchw,
            &self.weight.val(),
            &self.bias.val(),
            (self.groups, self.eps, then_silu),
            ops,
        )
    }

    fn normalize(&self, x_bchw: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x_bchw.dims();
        let x_bgn = x_bchw.reshape([b, self.groups, (c / self.groups) * h * w]);
        let mean_bg1 = x_bgn.clone().mean_dim(2);
        let centered_bgn = x_bgn - mean_bg1;
        let var_bg1 = centered_bgn.clone().square().mean_dim(2);
        let normed_bchw = (centered_bgn / (var_bg1 + self.eps).sqrt()).reshape([b, c, h, w]);
        normed_bchw * self.weight.val().reshape([1, c, 1, 1])
            + self.bias.val().reshape([1, c, 1, 1])
    }
}

/// `nn.Embedding`.
#[derive(Module, Debug)]
pub struct Embedding {
    /// Table `[n, d]`.
    pub weight: Param<Tensor<2>>,
}

impl Embedding {
    /// Builds `{name}.weight`.
    pub fn new(src: &mut ParamSource, name: &str, n: usize, d: usize, std: f64) -> Result<Self> {
        Ok(Self {
            weight: src.param(&format!("{name}.weight"), [n, d], Init::Normal(std))?,
        })
    }

    /// Looks up rows.
    ///
    /// # Shapes
    /// - idx: `[N]` → `[N, d]`
    pub fn forward(&self, idx_n: Tensor<1, Int>) -> Tensor<2> {
        self.weight.val().select(0, idx_n)
    }
}

/// `x / (1 + e^z)`, which is `x·σ(−z)`, with `z` clamped to [`MAX_LOGISTIC_EXPONENT`].
fn over_one_plus_exp<const D: usize>(x: Tensor<D>, z: Tensor<D>) -> Tensor<D> {
    x / (z.clamp_max(MAX_LOGISTIC_EXPONENT).exp() + 1.0)
}

/// SiLU, `x·σ(x)`, as `x / (1 + e^{−x})`: one `exp` and one division. burn's `silu` goes
/// through a branchy scalar sigmoid on flex, about 1.4× slower on the VQ-VAE decoder. On
/// the plain flex device the same formula runs as a host kernel (`cpu::pointwise`).
///
/// # Shapes
/// - x: any → same
pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let ops = |x: Tensor<D>| over_one_plus_exp(x.clone(), -x);
    crate::cpu::pointwise::silu_or(x, ops)
}

/// GELU with the tanh approximation (PyTorch `approximate='tanh'`),
/// `0.5·x·(1 + tanh(u))` with `u = √(2/π)·(x + 0.044715·x³)`, computed through the identity
/// `0.5·(1 + tanh(u)) = σ(2u)` as `x / (1 + e^{−2u})`: on flex, `tanh` is a scalar libm call
/// about 4× slower than this. The cube is two multiplications (a `powf` per element is
/// several times slower on CPU). On the plain flex device the same formula runs as a
/// host kernel (`cpu::pointwise`).
///
/// # Shapes
/// - x: any → same
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let ops = |x: Tensor<D>| {
        let cube = x.clone() * x.clone() * x.clone();
        let minus_2u = (x.clone() + cube * 0.044715) * (-2.0 * SQRT_2_OVER_PI);
        over_one_plus_exp(x, minus_2u)
    };
    crate::cpu::pointwise::gelu_tanh_or(x, ops)
}

/// LayerNorm over the last axis without affine parameters (`ln_wo_grad`).
///
/// # Shapes
/// - x: `[..., C]` → `[..., C]`
pub fn layer_norm_plain<const D: usize>(x: Tensor<D>, eps: f64) -> Tensor<D> {
    let n = x.dims()[D - 1];
    let ones = Tensor::<1>::ones([n], &x.device());
    layer_norm(x, ones, None, eps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    /// Points across the useful range plus extremes where `e^{-x}` over- or underflows f32.
    fn points() -> Vec<f32> {
        (-400..=400)
            .map(|i| i as f32 * 0.05)
            .chain([-1e4, -200.0, -90.0, 90.0, 200.0, 1e4])
            .collect()
    }

    fn apply(f: fn(Tensor<1>) -> Tensor<1>, xs: &[f32]) -> Vec<f32> {
        let device = Device::flex();
        let x = Tensor::<1>::from_data(TensorData::new(xs.to_vec(), [xs.len()]), &device);
        f(x).into_data().try_to_vec::<f32>().unwrap()
    }

    fn assert_close(got: &[f32], xs: &[f32], reference: impl Fn(f64) -> f64) {
        for (&g, &x) in got.iter().zip(xs) {
            let want = reference(x as f64);
            let tol = 1e-6 * want.abs().max(1.0);
            assert!(
                ((g as f64) - want).abs() <= tol,
                "x {x}: got {g}, want {want}"
            );
        }
    }

    #[test]
    fn silu_matches_x_sigmoid_x() {
        let xs = points();
        assert_close(&apply(silu, &xs), &xs, |x| x / (1.0 + (-x).exp()));
    }

    #[test]
    fn gelu_tanh_matches_the_tanh_formula() {
        let xs = points();
        assert_close(&apply(gelu_tanh, &xs), &xs, |x| {
            let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
            0.5 * x * (1.0 + u.tanh())
        });
    }
}
