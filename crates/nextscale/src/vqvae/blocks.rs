//! The ResNet and self-attention blocks of the VQ-VAE CNN (official `basic_vae.py`).

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;

use crate::error::Result;
use crate::nn::{Conv2d, GroupNorm};
use crate::weights::ParamSource;

/// GroupNorm(32, eps 1e-6) as the official `Normalize`.
pub fn normalize(src: &mut ParamSource, name: &str, c: usize) -> Result<GroupNorm> {
    GroupNorm::new(src, name, c, 32, 1e-6)
}

/// `ResnetBlock`: two GroupNorm → SiLU → 3×3 conv stages plus a (1×1) shortcut.
#[derive(Module, Debug)]
pub struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    nin_shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    /// Builds `{name}.norm1`, `conv1`, `norm2`, `conv2` and, when widths differ, `nin_shortcut`.
    pub fn new(src: &mut ParamSource, name: &str, c_in: usize, c_out: usize) -> Result<Self> {
        Ok(Self {
            norm1: normalize(src, &format!("{name}.norm1"), c_in)?,
            conv1: Conv2d::new(src, &format!("{name}.conv1"), c_in, c_out, 3)?,
            norm2: normalize(src, &format!("{name}.norm2"), c_out)?,
            conv2: Conv2d::new(src, &format!("{name}.conv2"), c_out, c_out, 3)?,
            nin_shortcut: if c_in != c_out {
                Some(Conv2d::new(
                    src,
                    &format!("{name}.nin_shortcut"),
                    c_in,
                    c_out,
                    1,
                )?)
            } else {
                None
            },
        })
    }

    /// # Shapes
    /// - x: `[B, c_in, H, W]` → `[B, c_out, H, W]`
    pub fn forward(&self, x_bchw: Tensor<4>) -> Tensor<4> {
        let h_bchw = self.conv1.forward(self.norm1.forward_silu(x_bchw.clone()));
        let h_bchw = self.conv2.forward(self.norm2.forward_silu(h_bchw));
        let shortcut_bchw = match &self.nin_shortcut {
            Some(conv) => conv.forward(x_bchw),
            None => x_bchw,
        };
        shortcut_bchw + h_bchw
    }
}

/// `AttnBlock`: single-head self-attention over all positions, scale `C^-0.5`.
#[derive(Module, Debug)]
pub struct AttnBlock {
    norm: GroupNorm,
    qkv: Conv2d,
    proj_out: Conv2d,
}

impl AttnBlock {
    /// Builds `{name}.norm`, `{name}.qkv` (1×1, 3C) and `{name}.proj_out`.
    pub fn new(src: &mut ParamSource, name: &str, c: usize) -> Result<Self> {
        Ok(Self {
            norm: normalize(src, &format!("{name}.norm"), c)?,
            qkv: Conv2d::new(src, &format!("{name}.qkv"), c, 3 * c, 1)?,
            proj_out: Conv2d::new(src, &format!("{name}.proj_out"), c, c, 1)?,
        })
    }

    /// # Shapes
    /// - x: `[B, C, H, W]` → `[B, C, H, W]`
    pub fn forward(&self, x_bchw: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x_bchw.dims();
        let qkv_b3cn = self
            .qkv
            .forward(self.norm.forward(x_bchw.clone()))
            .reshape([b, 3, c, h * w]);
        let q_bnc = qkv_b3cn
            .clone()
            .narrow(1, 0, 1)
            .reshape([b, c, h * w])
            .swap_dims(1, 2);
        let k_bcn = qkv_b3cn.clone().narrow(1, 1, 1).reshape([b, c, h * w]);
        let v_bcn = qkv_b3cn.narrow(1, 2, 1).reshape([b, c, h * w]);
        let attn_bnn = softmax(q_bnc.matmul(k_bcn) * (c as f64).powf(-0.5), 2);
        let h_bcn = v_bcn.matmul(attn_bnn.swap_dims(1, 2));
        x_bchw + self.proj_out.forward(h_bcn.reshape([b, c, h, w]))
    }
}
