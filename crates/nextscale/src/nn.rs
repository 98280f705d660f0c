//! The few layers the models share, built from a [`ParamSource`] under official names.

use burn::module::{Module, Param};
use burn::tensor::module::{conv2d, layer_norm, linear};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Int, Tensor};

use crate::error::Result;
use crate::weights::{Init, ParamSource};

/// Default std of random weights (the official `init_std` of 0.02).
pub const INIT_STD: f64 = 0.02;

/// `nn.Linear`; the weight is kept `[in, out]` for burn's `linear`.
#[derive(Module, Debug)]
pub struct Linear {
    /// Weight `[d_in, d_out]`.
    pub weight: Param<Tensor<2>>,
    /// Bias `[d_out]`.
    pub bias: Option<Param<Tensor<1>>>,
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
        let weight =
            src.linear_weight(&format!("{name}.weight"), d_out, d_in, Init::Normal(std))?;
        let bias = if bias {
            Some(src.param(&format!("{name}.bias"), [d_out], Init::Zeros)?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    /// # Shapes
    /// - x: `[..., d_in]` → `[..., d_out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear(x, self.weight.val(), self.bias.as_ref().map(Param::val))
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

    /// # Shapes
    /// - x: `[B, in, H, W]` → `[B, out, H', W']`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let pad = (self.pad_begin, self.pad_end);
        let options = ConvOptions {
            stride: [self.stride; 2],
            padding: [pad; 2],
            dilation: [1; 2],
            groups: 1,
        };
        conv2d(x, self.weight.val(), Some(self.bias.val()), options)
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

/// LayerNorm over the last axis without affine parameters (`ln_wo_grad`).
///
/// # Shapes
/// - x: `[..., C]` → `[..., C]`
pub fn layer_norm_plain<const D: usize>(x: Tensor<D>, eps: f64) -> Tensor<D> {
    let n = x.dims()[D - 1];
    let ones = Tensor::<1>::ones([n], &x.device());
    layer_norm(x, ones, None, eps)
}
