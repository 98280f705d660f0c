//! The VQ-VAE encoder (official `basic_vae.Encoder`), image → latent `z`.

use burn::module::Module;
use burn::tensor::Tensor;

use super::blocks::{AttnBlock, ResnetBlock, normalize};
use crate::config::ModelConfig;
use crate::error::Result;
use crate::nn::{Conv2d, GroupNorm};
use crate::weights::ParamSource;

/// One resolution level: ResNet blocks, attention at the lowest level, then a downsample.
#[derive(Module, Debug)]
pub struct DownLevel {
    block: Vec<ResnetBlock>,
    attn: Vec<AttnBlock>,
    downsample: Option<Conv2d>,
}

/// Encoder: conv_in, levels of `ch·ch_mult[i]` channels, mid blocks with attention, conv_out.
#[derive(Module, Debug)]
pub struct Encoder {
    conv_in: Conv2d,
    down: Vec<DownLevel>,
    mid_block_1: ResnetBlock,
    mid_attn_1: AttnBlock,
    mid_block_2: ResnetBlock,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    /// Builds the `encoder.*` tensors of `config`.
    pub fn new(src: &mut ParamSource, config: &ModelConfig) -> Result<Self> {
        let ch = config.ch;
        let levels = config.ch_mult.len();
        let conv_in = Conv2d::new(src, "encoder.conv_in", 3, ch, 3)?;
        let mut down = Vec::with_capacity(levels);
        let mut block_in = ch;
        for (i, mult) in config.ch_mult.iter().enumerate() {
            let block_out = ch * mult;
            let mut block = Vec::new();
            let mut attn = Vec::new();
            for b in 0..config.num_res_blocks {
                let name = format!("encoder.down.{i}.block.{b}");
                block.push(ResnetBlock::new(src, &name, block_in, block_out)?);
                block_in = block_out;
                if i == levels - 1 {
                    attn.push(AttnBlock::new(
                        src,
                        &format!("encoder.down.{i}.attn.{b}"),
                        block_in,
                    )?);
                }
            }
            let downsample = if i != levels - 1 {
                Some(Conv2d::downsample(
                    src,
                    &format!("encoder.down.{i}.downsample.conv"),
                    block_in,
                )?)
            } else {
                None
            };
            down.push(DownLevel {
                block,
                attn,
                downsample,
            });
        }
        Ok(Self {
            conv_in,
            down,
            mid_block_1: ResnetBlock::new(src, "encoder.mid.block_1", block_in, block_in)?,
            mid_attn_1: AttnBlock::new(src, "encoder.mid.attn_1", block_in)?,
            mid_block_2: ResnetBlock::new(src, "encoder.mid.block_2", block_in, block_in)?,
            norm_out: normalize(src, "encoder.norm_out", block_in)?,
            conv_out: Conv2d::new(src, "encoder.conv_out", block_in, config.cvae, 3)?,
        })
    }

    /// # Shapes
    /// - img: `[B, 3, H, W]` in [-1, 1] → `[B, Cvae, H/ds, W/ds]`
    pub fn forward(&self, img_b3hw: Tensor<4>) -> Tensor<4> {
        let mut h_bchw = self.conv_in.forward(img_b3hw);
        for level in &self.down {
            for (i, block) in level.block.iter().enumerate() {
                h_bchw = block.forward(h_bchw);
                if let Some(attn) = level.attn.get(i) {
                    h_bchw = attn.forward(h_bchw);
                }
            }
            if let Some(ds) = &level.downsample {
                h_bchw = ds.forward(h_bchw);
            }
        }
        let h_bchw = self
            .mid_block_2
            .forward(self.mid_attn_1.forward(self.mid_block_1.forward(h_bchw)));
        self.conv_out.forward(self.norm_out.forward_silu(h_bchw))
    }
}
