//! The VAR transformer ("Visual Autoregressive Modeling: Scalable Image Generation via
//! Next-Scale Prediction", Tian et al. 2024, <https://arxiv.org/abs/2404.02905>), with the
//! official `var.*` tensor names.

mod attention;
mod block;
mod embed;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};

pub use attention::{KvCache, SelfAttention};
pub use block::{AdaLnBeforeHead, AdaLnSelfAttn, BlockCond, Ffn};
pub use embed::ScaleEmbed;

use crate::config::ModelConfig;
use crate::error::Result;
use crate::nn::{INIT_STD, Linear, silu};
use crate::weights::ParamSource;

/// Additive mask value for blocked attention (finite, so WGSL stays well-defined).
const MASKED: f32 = -1e30;

/// Everything the class condition contributes, computed once per request: the modulation
/// of every block and of the head norm.
#[derive(Debug, Clone)]
pub struct Modulations {
    /// Per block `[B, 1, 6, C]`.
    pub blocks: Vec<Tensor<4>>,
    /// Head norm `[B, 1, 2, C]`.
    pub head: Tensor<4>,
}

/// The VAR transformer.
#[derive(Module, Debug)]
pub struct Var {
    word_embed: Linear,
    embed: ScaleEmbed,
    shared_ada_lin: Option<Linear>,
    blocks: Vec<AdaLnSelfAttn>,
    head_nm: AdaLnBeforeHead,
    head: Linear,
    patch_nums: Vec<usize>,
    embed_dim: usize,
}

impl Var {
    /// Builds every `var.*` tensor of `config` (without the prefix; the source has it).
    pub fn new(src: &mut ParamSource, config: &ModelConfig) -> Result<Self> {
        let c = config.embed_dim;
        let mut blocks = Vec::with_capacity(config.depth);
        let word_embed = Linear::new(src, "word_embed", config.cvae, c, true)?;
        let embed = ScaleEmbed::new(src, config)?;
        let shared_ada_lin = if config.shared_aln {
            Some(Linear::new(src, "shared_ada_lin.1", c, 6 * c, true)?)
        } else {
            None
        };
        for i in 0..config.depth {
            blocks.push(AdaLnSelfAttn::new(src, config, &format!("blocks.{i}"))?);
        }
        let head_nm = AdaLnBeforeHead::new(src, config, "head_nm")?;
        let head = Linear::with_std(src, "head", c, config.vocab_size, true, INIT_STD * 0.02)?;
        Ok(Self {
            word_embed,
            embed,
            shared_ada_lin,
            blocks,
            head_nm,
            head,
            patch_nums: config.patch_nums.clone(),
            embed_dim: c,
        })
    }

    /// Token offsets `(begin, end)` of each scale in the flattened sequence.
    pub fn begin_ends(&self) -> Vec<(usize, usize)> {
        self.embed.begin_ends()
    }

    /// The class condition; label [`ModelConfig::cond_classes`] is the null class.
    ///
    /// # Shapes
    /// - labels: `[B]` → `[B, D]`
    pub fn cond(&self, labels_b: Tensor<1, Int>) -> Tensor<2> {
        self.embed.cond(labels_b)
    }

    /// Index of the null (unconditional) class.
    pub fn null_class(&self) -> usize {
        self.embed.null_class()
    }

    /// The per-block condition (shared AdaLN computed once when enabled).
    fn block_cond(&self, cond_bd: Tensor<2>) -> BlockCond {
        match &self.shared_ada_lin {
            Some(lin) => {
                let b = cond_bd.dims()[0];
                BlockCond::Shared(
                    lin.forward(silu(cond_bd))
                        .reshape([b, 1, 6, self.embed_dim]),
                )
            }
            None => BlockCond::PerBlock(cond_bd),
        }
    }

    /// The modulations of every block and the head for a condition.
    pub fn modulations(&self, cond_bd: Tensor<2>) -> Modulations {
        let block_cond = self.block_cond(cond_bd.clone());
        Modulations {
            blocks: self
                .blocks
                .iter()
                .map(|b| b.modulation(&block_cond))
                .collect(),
            head: self.head_nm.modulation(cond_bd),
        }
    }

    /// Level plus position embedding of the tokens `begin..end`.
    ///
    /// # Shapes
    /// - returns `[1, end − begin, C]`
    pub fn lvl_pos(&self, begin: usize, end: usize) -> Tensor<3> {
        self.embed.lvl_pos(begin, end)
    }

    /// The first scale's input: class embedding + `pos_start` + level/position embedding.
    ///
    /// # Shapes
    /// - cond: `[B, D]` → `[B, pn₀², C]`
    pub fn sos(&self, cond_bd: Tensor<2>) -> Tensor<3> {
        self.embed.sos(cond_bd)
    }

    /// Embeds a scale's input map (`word_embed` + level/position) for scale `si`.
    ///
    /// # Shapes
    /// - x: `[B, pn², Cvae]` → `[B, pn², C]`
    pub fn embed_scale(&self, si: usize, x_blcv: Tensor<3>) -> Tensor<3> {
        let (begin, end) = self.begin_ends()[si];
        self.word_embed.forward(x_blcv) + self.lvl_pos(begin, end)
    }

    /// Runs the blocks and the head.
    ///
    /// # Shapes
    /// - x: `[B, l, C]` → logits `[B, l, V]`
    pub fn forward_blocks(
        &self,
        x_blc: Tensor<3>,
        modulations: &Modulations,
        attn_bias_ll: Option<Tensor<2>>,
        caches: Option<&mut [KvCache]>,
    ) -> Tensor<3> {
        let h_blc = self.hidden(x_blc, modulations, attn_bias_ll, caches, None);
        self.logits(h_blc, modulations)
    }

    /// Runs the blocks; `n_d` gives each block its data/noise embedding (Distilled Decoding).
    ///
    /// # Shapes
    /// - x: `[B, l, C]` → `[B, l, C]`
    pub fn hidden(
        &self,
        mut x_blc: Tensor<3>,
        modulations: &Modulations,
        attn_bias_ll: Option<Tensor<2>>,
        mut caches: Option<&mut [KvCache]>,
        n_d: Option<&[Tensor<3>]>,
    ) -> Tensor<3> {
        for (i, (block, gss_b16c)) in self.blocks.iter().zip(&modulations.blocks).enumerate() {
            let cache = caches.as_deref_mut().map(|c| &mut c[i]);
            let n_d_blc = n_d.map(|n| n[i].clone());
            x_blc = block.forward(x_blc, gss_b16c, attn_bias_ll.clone(), cache, n_d_blc);
        }
        x_blc
    }

    /// The head: AdaLN head norm then the linear to V.
    ///
    /// # Shapes
    /// - h: `[B, l, C]` → logits `[B, l, V]`
    pub fn logits(&self, h_blc: Tensor<3>, modulations: &Modulations) -> Tensor<3> {
        self.head
            .forward(self.head_nm.forward(h_blc, &modulations.head))
    }

    /// Depth (number of blocks).
    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// Word embedding of VQ-VAE vectors into the width C (no position).
    ///
    /// # Shapes
    /// - x: `[B, l, Cvae]` → `[B, l, C]`
    pub fn word_embed(&self, x_blcv: Tensor<3>) -> Tensor<3> {
        self.word_embed.forward(x_blcv)
    }

    /// Fresh KV caches, one per block.
    pub fn new_caches(&self) -> Vec<KvCache> {
        vec![KvCache::default(); self.blocks.len()]
    }

    /// The block-causal mask: scale i attends to scales ≤ i.
    ///
    /// # Shapes
    /// - returns `[L, L]` (0 where allowed, a large negative value elsewhere)
    pub fn causal_mask(&self, device: &Device) -> Tensor<2> {
        scale_mask(&self.patch_nums, device, |q, k, _| q >= k)
    }

    /// The teacher-forced forward pass with the block-causal mask (`VAR.forward` without
    /// the label drop, which the caller applies).
    ///
    /// # Shapes
    /// - labels: `[B]`, x: `[B, L − pn₀², Cvae]` → logits `[B, L, V]`
    pub fn forward(&self, labels_b: Tensor<1, Int>, x_blcv_wo_first_l: Tensor<3>) -> Tensor<3> {
        let cond_bd = self.cond(labels_b);
        let device = cond_bd.device();
        let first_l = self.patch_nums[0] * self.patch_nums[0];
        let l = self.begin_ends().last().expect("validated").1;
        let sos_blc = self.sos(cond_bd.clone());
        let rest_blc = self.word_embed.forward(x_blcv_wo_first_l) + self.lvl_pos(first_l, l);
        let x_blc = Tensor::cat(vec![sos_blc, rest_blc], 1);
        let modulations = self.modulations(cond_bd);
        self.forward_blocks(x_blc, &modulations, Some(self.causal_mask(&device)), None)
    }
}

/// An additive attention mask `[L, L]` over the tokens of a scale schedule: 0 where
/// `allow(query_scale, key_scale, same_token)` holds, a large negative value elsewhere.
pub(crate) fn scale_mask(
    patch_nums: &[usize],
    device: &Device,
    allow: impl Fn(usize, usize, bool) -> bool,
) -> Tensor<2> {
    let d: Vec<usize> = patch_nums
        .iter()
        .enumerate()
        .flat_map(|(si, pn)| std::iter::repeat_n(si, pn * pn))
        .collect();
    let l = d.len();
    let mask: Vec<f32> = (0..l * l)
        .map(|i| {
            let (q, k) = (i / l, i % l);
            if allow(d[q], d[k], q == k) {
                0.0
            } else {
                MASKED
            }
        })
        .collect();
    Tensor::from_data(TensorData::new(mask, [l, l]), device)
}
