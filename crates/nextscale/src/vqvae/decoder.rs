//! The VQ-VAE decoder (official `basic_vae.Decoder`), latent → image.

use burn::module::Module;
use burn::tensor::Tensor;

use super::blocks::{AttnBlock, ResnetBlock, normalize};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::nn::{Conv2d, GroupNorm};
use crate::weights::ParamSource;

/// One resolution level: `num_res_blocks + 1` ResNet blocks, attention at the lowest level,
/// then a nearest 2× upsample and conv (except at level 0).
#[derive(Module, Debug)]
pub struct UpLevel {
    block: Vec<ResnetBlock>,
    attn: Vec<AttnBlock>,
    upsample: Option<Conv2d>,
}

/// Decoder: conv_in, mid blocks with attention, levels from coarse to fine, conv_out.
#[derive(Module, Debug)]
pub struct Decoder {
    conv_in: Conv2d,
    mid_block_1: ResnetBlock,
    mid_attn_1: AttnBlock,
    mid_block_2: ResnetBlock,
    /// Levels in official index order (`up.0` is the finest); run in reverse.
    up: Vec<UpLevel>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    /// Builds the `decoder.*` tensors of `config`.
    pub fn new(src: &mut ParamSource, config: &ModelConfig) -> Result<Self> {
        let ch = config.ch;
        let levels = config.ch_mult.len();
        let mut block_in = ch * config.ch_mult[levels - 1];
        let conv_in = Conv2d::new(src, "decoder.conv_in", config.cvae, block_in, 3)?;
        let mid_block_1 = ResnetBlock::new(src, "decoder.mid.block_1", block_in, block_in)?;
        let mid_attn_1 = AttnBlock::new(src, "decoder.mid.attn_1", block_in)?;
        let mid_block_2 = ResnetBlock::new(src, "decoder.mid.block_2", block_in, block_in)?;
        let mut up_rev = Vec::with_capacity(levels);
        for i in (0..levels).rev() {
            let block_out = ch * config.ch_mult[i];
            let mut block = Vec::new();
            let mut attn = Vec::new();
            for b in 0..=config.num_res_blocks {
                block.push(ResnetBlock::new(
                    src,
                    &format!("decoder.up.{i}.block.{b}"),
                    block_in,
                    block_out,
                )?);
                block_in = block_out;
                if i == levels - 1 {
                    attn.push(AttnBlock::new(
                        src,
                        &format!("decoder.up.{i}.attn.{b}"),
                        block_in,
                    )?);
                }
            }
            let upsample = if i != 0 {
                Some(Conv2d::new(
                    src,
                    &format!("decoder.up.{i}.upsample.conv"),
                    block_in,
                    block_in,
                    3,
                )?)
            } else {
                None
            };
            up_rev.push(UpLevel {
                block,
                attn,
                upsample,
            });
        }
        up_rev.reverse();
        Ok(Self {
            conv_in,
            mid_block_1,
            mid_attn_1,
            mid_block_2,
            up: up_rev,
            norm_out: normalize(src, "decoder.norm_out", block_in)?,
            conv_out: Conv2d::new(src, "decoder.conv_out", block_in, 3, 3)?,
        })
    }

    /// # Shapes
    /// - z: `[B, Cvae, h, w]` → `[B, 3, h·ds, w·ds]` (not clamped)
    pub fn forward(&self, z_bchw: Tensor<4>) -> Tensor<4> {
        let h_bchw = self.conv_in.forward(z_bchw);
        let mut h_bchw = self
            .mid_block_2
            .forward(self.mid_attn_1.forward(self.mid_block_1.forward(h_bchw)));
        for level in self.up.iter().rev() {
            for (i, block) in level.block.iter().enumerate() {
                h_bchw = block.forward(h_bchw);
                if let Some(attn) = level.attn.get(i) {
                    h_bchw = attn.forward(h_bchw);
                }
            }
            if let Some(conv) = &level.upsample {
                h_bchw = conv.forward_upsampled(h_bchw);
            }
        }
        self.conv_out.forward(self.norm_out.forward_silu(h_bchw))
    }
}
