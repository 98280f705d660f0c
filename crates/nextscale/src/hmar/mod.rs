//! The HMAR transformer ("HMAR: Efficient Hierarchical Masked Auto-Regressive Image
//! Generation", Kumbong et al., CVPR 2025, <https://arxiv.org/abs/2506.04421>), with the
//! official `hmar.*` tensor names (NVlabs/HMAR `models/hmar.py`).
//!
//! VAR's blocks split three ways: `base_blocks`, then either the next-scale stack
//! (`ns_blocks`, `ns_head`) or the refinement stack (`mask_blocks`, `mask_head`). Each pass
//! sees one scale only (Markovian next-scale prediction: no KV cache), and refinement
//! passes re-predict a scale's least confident tokens behind `mask_embed`.

pub mod refine;

use burn::module::{Module, Param};
use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::nn::{INIT_STD, Linear};
use crate::var::{AdaLnBeforeHead, AdaLnSelfAttn, BlockCond, ScaleEmbed, scale_mask};
use crate::weights::{Init, ParamSource};

/// Which of the two stacks a pass runs after the base blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// `ns_blocks` and `ns_head`: predicts a whole scale from the coarser ones.
    NextScale,
    /// `mask_blocks` and `mask_head`: re-predicts a scale's masked tokens.
    Refine,
}

/// The class condition's modulations of every block and of both head norms, computed once
/// per request.
#[derive(Debug, Clone)]
pub struct HmarModulations {
    /// Per base block `[B, 1, 6, C]`.
    base: Vec<Tensor<4>>,
    /// Per next-scale block `[B, 1, 6, C]`.
    ns: Vec<Tensor<4>>,
    /// Per mask block `[B, 1, 6, C]`.
    mask: Vec<Tensor<4>>,
    /// `ns_head_nm` `[B, 1, 2, C]`.
    ns_head: Tensor<4>,
    /// `mask_head_nm` `[B, 1, 2, C]`.
    mask_head: Tensor<4>,
}

/// The HMAR transformer.
#[derive(Module, Debug)]
pub struct Hmar {
    word_embed: Linear,
    word_embed_bias: Param<Tensor<1>>,
    mask_embed: Param<Tensor<2>>,
    embed: ScaleEmbed,
    base_blocks: Vec<AdaLnSelfAttn>,
    ns_blocks: Vec<AdaLnSelfAttn>,
    mask_blocks: Vec<AdaLnSelfAttn>,
    ns_head_nm: AdaLnBeforeHead,
    ns_head: Linear,
    mask_head_nm: AdaLnBeforeHead,
    mask_head: Linear,
    patch_nums: Vec<usize>,
}

impl Hmar {
    /// Builds every `hmar.*` tensor of `config` (without the prefix; the source has it).
    /// `config.hmar` must be set.
    pub fn new(src: &mut ParamSource, config: &ModelConfig) -> Result<Self> {
        let hmar = config
            .hmar
            .as_ref()
            .ok_or_else(|| Error::Config("not an HMAR config (no `hmar` settings)".into()))?;
        let c = config.embed_dim;
        let init_std = (1.0 / c as f64 / 3.0).sqrt();
        let n_base = config.depth - hmar.n_layers_train;
        let word_embed = Linear::new(src, "word_embed", config.cvae, c, false)?;
        let word_embed_bias = src.param("word_embed_bias", [c], Init::Zeros)?;
        let mask_embed = src.param("mask_embed.weight", [1, c], Init::Normal(init_std))?;
        let embed = ScaleEmbed::new(src, config)?;
        let mut stack = |name: &str, n: usize| -> Result<Vec<AdaLnSelfAttn>> {
            (0..n)
                .map(|i| AdaLnSelfAttn::new(src, config, &format!("{name}.{i}")))
                .collect()
        };
        let base_blocks = stack("base_blocks", n_base)?;
        let ns_blocks = stack("ns_blocks", hmar.n_layers_train)?;
        let mask_blocks = stack("mask_blocks", hmar.n_layers_train)?;
        let v = config.vocab_size;
        Ok(Self {
            word_embed,
            word_embed_bias,
            mask_embed,
            embed,
            base_blocks,
            ns_blocks,
            mask_blocks,
            ns_head_nm: AdaLnBeforeHead::new(src, config, "ns_head_nm")?,
            ns_head: Linear::with_std(src, "ns_head", c, v, true, INIT_STD * 0.02)?,
            mask_head_nm: AdaLnBeforeHead::new(src, config, "mask_head_nm")?,
            mask_head: Linear::with_std(src, "mask_head", c, v, true, INIT_STD * 0.02)?,
            patch_nums: config.patch_nums.clone(),
        })
    }

    /// Freezes every parameter but the refinement stack's (`mask_embed`, `mask_blocks`,
    /// `mask_head_nm`, `mask_head`), as the official masked fine-tune does.
    pub fn train_refinement_only(self) -> Self {
        Self {
            word_embed: self.word_embed.no_grad(),
            word_embed_bias: self.word_embed_bias.set_require_grad(false),
            embed: self.embed.no_grad(),
            base_blocks: self.base_blocks.no_grad(),
            ns_blocks: self.ns_blocks.no_grad(),
            ns_head_nm: self.ns_head_nm.no_grad(),
            ns_head: self.ns_head.no_grad(),
            ..self
        }
    }

    /// The class, start, level and position embeddings (the class condition, the null
    /// class, the first scale's input).
    pub fn embed(&self) -> &ScaleEmbed {
        &self.embed
    }

    /// The modulations of every block and both head norms for a condition.
    pub fn modulations(&self, cond_bd: Tensor<2>) -> HmarModulations {
        let cond = BlockCond::PerBlock(cond_bd.clone());
        let of = |blocks: &[AdaLnSelfAttn]| blocks.iter().map(|b| b.modulation(&cond)).collect();
        HmarModulations {
            base: of(&self.base_blocks),
            ns: of(&self.ns_blocks),
            mask: of(&self.mask_blocks),
            ns_head: self.ns_head_nm.modulation(cond_bd.clone()),
            mask_head: self.mask_head_nm.modulation(cond_bd),
        }
    }

    /// `word_embed(x) + word_embed_bias`.
    ///
    /// # Shapes
    /// - x: `[B, l, Cvae]` → `[B, l, C]`
    fn embed_tokens(&self, x_blcv: Tensor<3>) -> Tensor<3> {
        self.word_embed.forward(x_blcv) + self.word_embed_bias.val().unsqueeze::<3>()
    }

    /// The next-scale input of scale `si ≥ 1`: its area-downsampled f_hat embedded, plus
    /// level/position.
    ///
    /// # Shapes
    /// - f_hat: `[B, pn², Cvae]` → `[B, pn², C]`
    pub fn scale_input(&self, si: usize, f_hat_blcv: Tensor<3>) -> Tensor<3> {
        let (begin, end) = self.embed.begin_ends()[si];
        self.embed_tokens(f_hat_blcv) + self.embed.lvl_pos(begin, end)
    }

    /// The refinement input of scale `si`: row r is `word_embed(f_hat)[r]` plus
    /// `mask_embed` where r is among image b's `masked[b]` positions, else `word_embed(h)[r]`
    /// (the scale's own tokens through φ), plus `word_embed_bias` and level/position.
    ///
    /// # Shapes
    /// - f_hat, h: `[B, pn², Cvae]` → `[B, pn², C]`
    pub fn refine_input(
        &self,
        si: usize,
        f_hat_blcv: Tensor<3>,
        h_blcv: Tensor<3>,
        masked: &[Vec<usize>],
    ) -> Tensor<3> {
        let (begin, end) = self.embed.begin_ends()[si];
        let masked_bl = mask_flags(masked, end - begin, &f_hat_blcv.device());
        self.refine_rows(f_hat_blcv, h_blcv, masked_bl, begin, end)
    }

    /// [`Self::refine_input`] for the rows `begin..end` of the sequence.
    fn refine_rows(
        &self,
        f_hat_blcv: Tensor<3>,
        h_blcv: Tensor<3>,
        masked_bl: Tensor<2>,
        begin: usize,
        end: usize,
    ) -> Tensor<3> {
        let masked_bl1 = masked_bl.unsqueeze_dim::<3>(2);
        let own_blc = self.word_embed.forward(h_blcv) * (masked_bl1.clone().neg() + 1.0)
            + self.mask_embed.val().unsqueeze::<3>() * masked_bl1;
        self.word_embed.forward(f_hat_blcv)
            + own_blc
            + self.word_embed_bias.val().unsqueeze::<3>()
            + self.embed.lvl_pos(begin, end)
    }

    /// Runs the base blocks, then the stack of `pass`, then its head. Without a mask every
    /// row attends to every other (one scale's pass).
    ///
    /// # Shapes
    /// - x: `[B, l, C]` → logits `[B, l, V]`; attn_bias: `[l, l]`
    pub fn forward_pass(
        &self,
        x_blc: Tensor<3>,
        modulations: &HmarModulations,
        pass: Pass,
        attn_bias_ll: Option<Tensor<2>>,
    ) -> Tensor<3> {
        let (blocks, gss, head_nm, head_ss, head) = match pass {
            Pass::NextScale => (
                &self.ns_blocks,
                &modulations.ns,
                &self.ns_head_nm,
                &modulations.ns_head,
                &self.ns_head,
            ),
            Pass::Refine => (
                &self.mask_blocks,
                &modulations.mask,
                &self.mask_head_nm,
                &modulations.mask_head,
                &self.mask_head,
            ),
        };
        let mut x_blc = x_blc;
        let stack = self.base_blocks.iter().zip(&modulations.base);
        for (block, gss_b16c) in stack.chain(blocks.iter().zip(gss)) {
            x_blc = block.forward(x_blc, gss_b16c, attn_bias_ll.clone(), None, None);
        }
        head.forward(head_nm.forward(x_blc, head_ss))
    }

    /// The block-diagonal mask of the teacher-forced passes: each scale attends within
    /// itself only.
    ///
    /// # Shapes
    /// - returns `[L, L]` (0 where allowed, a large negative value elsewhere)
    pub fn block_diagonal_mask(&self, device: &Device) -> Tensor<2> {
        scale_mask(&self.patch_nums, device, |q, k, _| q == k)
    }

    /// The teacher-forced next-scale pass over every scale (official `NextScalePrediction`
    /// without its label drop).
    ///
    /// # Shapes
    /// - labels: `[B]`, ns_input: `[B, L − pn₀², Cvae]` → logits `[B, L, V]`
    pub fn forward_next_scale(
        &self,
        labels_b: Tensor<1, Int>,
        ns_input_blcv: Tensor<3>,
    ) -> Tensor<3> {
        let cond_bd = self.embed.cond(labels_b);
        let device = cond_bd.device();
        let (first_l, l) = self.rows();
        let rest_blc = self.embed_tokens(ns_input_blcv) + self.embed.lvl_pos(first_l, l);
        let x_blc = Tensor::cat(vec![self.embed.sos(cond_bd.clone()), rest_blc], 1);
        let modulations = self.modulations(cond_bd);
        let mask_ll = self.block_diagonal_mask(&device);
        self.forward_pass(x_blc, &modulations, Pass::NextScale, Some(mask_ll))
    }

    /// The teacher-forced refinement pass over every scale (official `MaskedPrediction`):
    /// rows `1 + i` for `i` in `mask_idx` (indices into the rows after the first scale, the
    /// same for every image) get `mask_embed` in place of their own token.
    ///
    /// # Shapes
    /// - labels: `[B]`, ns_input, mask_input: `[B, L − pn₀², Cvae]` → logits `[B, L, V]`
    pub fn forward_refine(
        &self,
        labels_b: Tensor<1, Int>,
        ns_input_blcv: Tensor<3>,
        mask_input_blcv: Tensor<3>,
        mask_idx: &[usize],
    ) -> Tensor<3> {
        let cond_bd = self.embed.cond(labels_b);
        let device = cond_bd.device();
        let (first_l, l) = self.rows();
        let [b, rest, _] = ns_input_blcv.dims();
        let masked_bl = mask_flags(&vec![mask_idx.to_vec(); b], rest, &device);
        let rest_blc = self.refine_rows(ns_input_blcv, mask_input_blcv, masked_bl, first_l, l);
        let x_blc = Tensor::cat(vec![self.embed.sos(cond_bd.clone()), rest_blc], 1);
        let modulations = self.modulations(cond_bd);
        let mask_ll = self.block_diagonal_mask(&device);
        self.forward_pass(x_blc, &modulations, Pass::Refine, Some(mask_ll))
    }

    /// Rows of the first scale and of the whole sequence.
    fn rows(&self) -> (usize, usize) {
        let begin_ends = self.embed.begin_ends();
        (begin_ends[0].1, begin_ends.last().expect("validated").1)
    }
}

/// 1 at each image's masked positions among `l`, 0 elsewhere (positions past `l` ignored).
///
/// # Shapes
/// - returns `[masked.len(), l]`
fn mask_flags(masked: &[Vec<usize>], l: usize, device: &Device) -> Tensor<2> {
    let mut flags = vec![0f32; masked.len() * l];
    for (row, positions) in flags.chunks_mut(l).zip(masked) {
        positions
            .iter()
            .filter(|&&i| i < l)
            .for_each(|&i| row[i] = 1.0);
    }
    Tensor::from_data(TensorData::new(flags, [masked.len(), l]), device)
}
