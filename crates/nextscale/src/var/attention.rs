//! Multi-head self-attention of a VAR block (official `basic_var.SelfAttention`), with the
//! optional L2-normalised q/k (`attn_l2_norm`) and a KV cache for scale-by-scale inference.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use crate::error::Result;
use crate::nn::Linear;
use crate::weights::{Init, ParamSource};

/// Keys and values of the scales seen so far, `[B, H, L_seen, head_dim]` each.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    k_bhlc: Option<Tensor<4>>,
    v_bhlc: Option<Tensor<4>>,
}

/// Self-attention with a bias-free qkv linear plus `(q_bias, 0, v_bias)`.
#[derive(Module, Debug)]
pub struct SelfAttention {
    mat_qkv: Linear,
    q_bias: Param<Tensor<1>>,
    v_bias: Param<Tensor<1>>,
    /// Learned per-head log-scale `[1, H, 1, 1]`, present with `attn_l2_norm`.
    scale_mul_1h11: Option<Param<Tensor<4>>>,
    proj: Linear,
    num_heads: usize,
}

impl SelfAttention {
    /// Builds `{name}.mat_qkv`, `q_bias`, `v_bias`, `proj` and, with `l2_norm`, `scale_mul_1H11`.
    pub fn new(
        src: &mut ParamSource,
        name: &str,
        c: usize,
        num_heads: usize,
        l2_norm: bool,
        proj_std: f64,
    ) -> Result<Self> {
        Ok(Self {
            mat_qkv: Linear::new(src, &format!("{name}.mat_qkv"), c, 3 * c, false)?,
            q_bias: src.param(&format!("{name}.q_bias"), [c], Init::Zeros)?,
            v_bias: src.param(&format!("{name}.v_bias"), [c], Init::Zeros)?,
            scale_mul_1h11: if l2_norm {
                Some(src.param(
                    &format!("{name}.scale_mul_1H11"),
                    [1, num_heads, 1, 1],
                    Init::Const(4f32.ln()),
                )?)
            } else {
                None
            },
            proj: Linear::with_std(src, &format!("{name}.proj"), c, c, true, proj_std)?,
            num_heads,
        })
    }

    /// Attends from `x` to itself (and to the cached scales when `cache` is given, which
    /// then grows by this input). `attn_bias` is an additive `[L, L]` mask.
    ///
    /// # Shapes
    /// - x: `[B, L, C]` → `[B, L, C]`
    pub fn forward(
        &self,
        x_blc: Tensor<3>,
        attn_bias_ll: Option<Tensor<2>>,
        cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [b, l, c] = x_blc.dims();
        let (h, hd) = (self.num_heads, c / self.num_heads);
        let k_bias = self.q_bias.val().zeros_like();
        let bias_3c = Tensor::cat(vec![self.q_bias.val(), k_bias, self.v_bias.val()], 0);
        let qkv_3bhlc = self
            .mat_qkv
            .forward_biased(x_blc, Some(bias_3c))
            .reshape([b, l, 3, h, hd])
            .permute([2, 0, 3, 1, 4]);
        let part = |i: usize| qkv_3bhlc.clone().narrow(0, i, 1).reshape([b, h, l, hd]);
        let (mut q_bhlc, mut k_bhlc, mut v_bhlc) = (part(0), part(1), part(2));
        let scale = match &self.scale_mul_1h11 {
            Some(scale_mul) => {
                let scale_mul_1h11 = scale_mul.val().clamp_max(100f64.ln()).exp();
                q_bhlc = l2_normalize(q_bhlc) * scale_mul_1h11;
                k_bhlc = l2_normalize(k_bhlc);
                1.0
            }
            None => 0.25 / (hd as f64).sqrt(),
        };
        if let Some(cache) = cache {
            if let (Some(k_old), Some(v_old)) = (cache.k_bhlc.take(), cache.v_bhlc.take()) {
                k_bhlc = Tensor::cat(vec![k_old, k_bhlc], 2);
                v_bhlc = Tensor::cat(vec![v_old, v_bhlc], 2);
            }
            cache.k_bhlc = Some(k_bhlc.clone());
            cache.v_bhlc = Some(v_bhlc.clone());
        }
        let out_bhlc = match attn_bias_ll {
            Some(bias_ll) => {
                let [lq, lk] = bias_ll.dims();
                let attn_bhll = (q_bhlc * scale).matmul(k_bhlc.swap_dims(2, 3))
                    + bias_ll.reshape([1, 1, lq, lk]);
                softmax(attn_bhll, 3).matmul(v_bhlc)
            }
            // Without a mask (scale-by-scale inference): a host kernel on the plain flex
            // device (`cpu::attention`, 1.4× faster than flex's fused attention at
            // VAR-d16's last scale), else the backend's fused attention (on flex 2.5×
            // faster there than the unfused ops above).
            None => {
                let options = AttentionModuleOptions {
                    scale: Some(scale),
                    softcap: None,
                    is_causal: false,
                };
                let fused = |q, k, v| attention(q, k, v, None, None, options);
                crate::cpu::attention::attention_or(q_bhlc, k_bhlc, v_bhlc, scale, fused)
            }
        };
        self.proj
            .forward(out_bhlc.swap_dims(1, 2).reshape([b, l, c]))
    }
}

/// `F.normalize(x, dim=-1)`: `x / max(‖x‖, 1e-12)`.
fn l2_normalize(x: Tensor<4>) -> Tensor<4> {
    let norm = x.clone().square().sum_dim(3).sqrt().clamp_min(1e-12);
    x / norm
}
