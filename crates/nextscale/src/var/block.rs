//! The AdaLN transformer block and the AdaLN head norm (official `basic_var.AdaLNSelfAttn`,
//! `AdaLNBeforeHead`, `FFN`).

use burn::module::{Module, Param};
use burn::tensor::Tensor;

use super::attention::{KvCache, SelfAttention};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::nn::{INIT_STD, Linear, gelu_tanh, layer_norm_plain, silu};
use crate::weights::{Init, ParamSource};

/// The condition a block modulates with.
#[derive(Debug, Clone)]
pub enum BlockCond {
    /// The class condition `[B, D]`; each block has its own `ada_lin`.
    PerBlock(Tensor<2>),
    /// The shared AdaLN output `[B, 1, 6, C]`; each block adds its `ada_gss`.
    Shared(Tensor<4>),
}

/// FFN: fc1 → GELU(tanh) → fc2.
#[derive(Module, Debug)]
pub struct Ffn {
    fc1: Linear,
    fc2: Linear,
}

impl Ffn {
    /// # Shapes
    /// - x: `[B, L, C]` → `[B, L, C]`
    pub fn forward(&self, x_blc: Tensor<3>) -> Tensor<3> {
        self.fc2.forward(gelu_tanh(self.fc1.forward(x_blc)))
    }
}

/// `AdaLNSelfAttn`: `x += attn(ln(x)·(1+scale1)+shift1)·gamma1`, then the FFN likewise.
#[derive(Module, Debug)]
pub struct AdaLnSelfAttn {
    attn: SelfAttention,
    ffn: Ffn,
    /// `SiLU → Linear(D, 6C)` when AdaLN is per block.
    ada_lin: Option<Linear>,
    /// `[1, 1, 6, C]` offsets added to the shared AdaLN output.
    ada_gss: Option<Param<Tensor<4>>>,
    embed_dim: usize,
    norm_eps: f64,
}

impl AdaLnSelfAttn {
    /// Builds the block `{name}.*` (VAR's `blocks.{i}`, HMAR's `base_blocks.{i}` …).
    pub fn new(src: &mut ParamSource, config: &ModelConfig, name: &str) -> Result<Self> {
        let (c, d) = (config.embed_dim, config.embed_dim);
        let out_std = INIT_STD / (2.0 * config.depth as f64).sqrt();
        let hidden = config.ffn_hidden();
        Ok(Self {
            attn: SelfAttention::new(
                src,
                &format!("{name}.attn"),
                c,
                config.num_heads,
                config.attn_l2_norm,
                out_std,
            )?,
            ffn: Ffn {
                fc1: Linear::new(src, &format!("{name}.ffn.fc1"), c, hidden, true)?,
                fc2: Linear::with_std(src, &format!("{name}.ffn.fc2"), hidden, c, true, out_std)?,
            },
            ada_lin: if config.shared_aln {
                None
            } else {
                Some(Linear::with_std(
                    src,
                    &format!("{name}.ada_lin.1"),
                    d,
                    6 * c,
                    true,
                    INIT_STD * 0.5,
                )?)
            },
            ada_gss: if config.shared_aln {
                Some(src.param(
                    &format!("{name}.ada_gss"),
                    [1, 1, 6, c],
                    Init::Normal(INIT_STD * 0.5),
                )?)
            } else {
                None
            },
            embed_dim: c,
            norm_eps: config.norm_eps,
        })
    }

    /// The block's six modulation vectors (gamma1, gamma2, scale1, scale2, shift1, shift2).
    /// They depend only on the condition, so generation computes them once.
    ///
    /// # Shapes
    /// - returns `[B, 1, 6, C]`
    pub fn modulation(&self, cond: &BlockCond) -> Tensor<4> {
        let c = self.embed_dim;
        match (cond, &self.ada_lin, &self.ada_gss) {
            (BlockCond::PerBlock(cond_bd), Some(ada_lin), _) => {
                let b = cond_bd.dims()[0];
                ada_lin.forward(silu(cond_bd.clone())).reshape([b, 1, 6, c])
            }
            (BlockCond::Shared(gss_b16c), _, Some(ada_gss)) => gss_b16c.clone() + ada_gss.val(),
            _ => unreachable!("the model builds blocks and their condition from one config"),
        }
    }

    /// # Shapes
    /// - x: `[B, L, C]`, gss (from [`AdaLnSelfAttn::modulation`]): `[B, 1, 6, C]` → `[B, L, C]`;
    ///   `attn_bias`: `[L, L]`
    ///
    /// `n_d` (Distilled Decoding's data/noise embedding, already through this block's
    /// layer-wise linear) is added between the attention and the FFN, as in the official
    /// `dd.py` blocks.
    pub fn forward(
        &self,
        x_blc: Tensor<3>,
        gss_b16c: &Tensor<4>,
        attn_bias_ll: Option<Tensor<2>>,
        cache: Option<&mut KvCache>,
        n_d_blc: Option<Tensor<3>>,
    ) -> Tensor<3> {
        let c = self.embed_dim;
        let b = gss_b16c.dims()[0];
        let m = |i: usize| gss_b16c.clone().narrow(2, i, 1).reshape([b, 1, c]);
        let (gamma1, gamma2, scale1, scale2, shift1, shift2) = (m(0), m(1), m(2), m(3), m(4), m(5));
        let h_blc = layer_norm_plain(x_blc.clone(), self.norm_eps) * (scale1 + 1.0) + shift1;
        let mut x_blc = x_blc + self.attn.forward(h_blc, attn_bias_ll, cache) * gamma1;
        if let Some(n_d_blc) = n_d_blc {
            x_blc = x_blc + n_d_blc;
        }
        let h_blc = layer_norm_plain(x_blc.clone(), self.norm_eps) * (scale2 + 1.0) + shift2;
        x_blc + self.ffn.forward(h_blc) * gamma2
    }
}

/// `AdaLNBeforeHead`: `ln(x)·(1+scale)+shift` with `SiLU → Linear(D, 2C)` into (scale, shift).
#[derive(Module, Debug)]
pub struct AdaLnBeforeHead {
    ada_lin: Linear,
    embed_dim: usize,
    norm_eps: f64,
}

impl AdaLnBeforeHead {
    /// Builds `{name}.ada_lin.1` (VAR's `head_nm`, HMAR's `ns_head_nm` and `mask_head_nm`).
    pub fn new(src: &mut ParamSource, config: &ModelConfig, name: &str) -> Result<Self> {
        let c = config.embed_dim;
        let ada_lin = format!("{name}.ada_lin.1");
        Ok(Self {
            ada_lin: Linear::with_std(src, &ada_lin, c, 2 * c, true, INIT_STD * 0.5)?,
            embed_dim: c,
            norm_eps: config.norm_eps,
        })
    }

    /// The (scale, shift) pair from the condition.
    ///
    /// # Shapes
    /// - cond: `[B, D]` → `[B, 1, 2, C]`
    pub fn modulation(&self, cond_bd: Tensor<2>) -> Tensor<4> {
        let b = cond_bd.dims()[0];
        self.ada_lin
            .forward(silu(cond_bd))
            .reshape([b, 1, 2, self.embed_dim])
    }

    /// # Shapes
    /// - x: `[B, L, C]`, ss (from [`AdaLnBeforeHead::modulation`]): `[B, 1, 2, C]` → `[B, L, C]`
    pub fn forward(&self, x_blc: Tensor<3>, ss_b12c: &Tensor<4>) -> Tensor<3> {
        let c = self.embed_dim;
        let b = ss_b12c.dims()[0];
        let ss_b12c = ss_b12c.clone();
        let scale = ss_b12c.clone().narrow(2, 0, 1).reshape([b, 1, c]);
        let shift = ss_b12c.narrow(2, 1, 1).reshape([b, 1, c]);
        layer_norm_plain(x_blc, self.norm_eps) * (scale + 1.0) + shift
    }
}
