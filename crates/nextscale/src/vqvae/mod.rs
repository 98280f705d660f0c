//! The multi-scale VQ-VAE of VAR ("Visual Autoregressive Modeling", Tian et al. 2024,
//! <https://arxiv.org/abs/2404.02905>): a CNN autoencoder around a residual quantizer.

mod blocks;
mod decoder;
mod encoder;
mod quant;

use burn::module::Module;
use burn::tensor::{Int, Tensor};

pub use decoder::Decoder;
pub use encoder::Encoder;
pub use quant::{Phi, VectorQuantizer2, phi_index};

use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::nn::Conv2d;
use crate::weights::ParamSource;

/// The VQ-VAE (`vae.*` tensors).
#[derive(Module, Debug)]
pub struct Vqvae {
    /// Image → latent; `None` in a file written without it (`config.encoder` false), which
    /// can sample but not encode.
    pub encoder: Option<Encoder>,
    /// Latent → image.
    pub decoder: Decoder,
    /// 3×3 conv after the encoder (absent with it).
    pub quant_conv: Option<Conv2d>,
    /// 3×3 conv before the decoder.
    pub post_quant_conv: Conv2d,
    /// The residual quantizer.
    pub quantize: VectorQuantizer2,
}

impl Vqvae {
    /// Builds every `vae.*` tensor of `config` (without the `vae.` prefix; the source has
    /// it); the encoder and `quant_conv` only when `config.encoder` says the file has them.
    pub fn new(src: &mut ParamSource, config: &ModelConfig) -> Result<Self> {
        let (encoder, quant_conv) = if config.encoder {
            (
                Some(Encoder::new(src, config)?),
                Some(Conv2d::new(src, "quant_conv", config.cvae, config.cvae, 3)?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            encoder,
            decoder: Decoder::new(src, config)?,
            quant_conv,
            post_quant_conv: Conv2d::new(src, "post_quant_conv", config.cvae, config.cvae, 3)?,
            quantize: VectorQuantizer2::new(src, config)?,
        })
    }

    /// Encodes images to the pre-quantization latent f; [`Error::NoEncoder`] for a model
    /// file without the encoder.
    ///
    /// # Shapes
    /// - img: `[B, 3, H, W]` in [-1, 1] → `[B, Cvae, HW, HW]`
    pub fn img_to_f(&self, img_b3hw: Tensor<4>) -> Result<Tensor<4>> {
        match (&self.encoder, &self.quant_conv) {
            (Some(encoder), Some(quant_conv)) => Ok(quant_conv.forward(encoder.forward(img_b3hw))),
            _ => Err(Error::NoEncoder),
        }
    }

    /// Token maps of images, one `[B, pn²]` per scale (`img_to_idxBl`).
    pub fn img_to_idx(&self, img_b3hw: Tensor<4>) -> Result<Vec<Tensor<2, Int>>> {
        Ok(self.quantize.encode(self.img_to_f(img_b3hw)?).0)
    }

    /// Decodes f_hat to an image clamped to [-1, 1] (`fhat_to_img`).
    ///
    /// # Shapes
    /// - f_hat: `[B, Cvae, HW, HW]` → `[B, 3, H, W]`
    pub fn fhat_to_img(&self, f_hat_bchw: Tensor<4>) -> Tensor<4> {
        self.decoder
            .forward(self.post_quant_conv.forward(f_hat_bchw))
            .clamp(-1.0, 1.0)
    }

    /// Reconstructions after each scale (`img_to_reconstructed_img`, `last_one=False`).
    pub fn img_to_recon(&self, img_b3hw: Tensor<4>) -> Result<Vec<Tensor<4>>> {
        let (_, f_hats) = self.quantize.encode(self.img_to_f(img_b3hw)?);
        Ok(f_hats.into_iter().map(|f| self.fhat_to_img(f)).collect())
    }

    /// Image from token maps of every scale (`idxBl_to_img`, `last_one=True`).
    pub fn idx_to_img(&self, idx_bl: &[Tensor<2, Int>]) -> Tensor<4> {
        let f_hat = self
            .quantize
            .idx_to_fhats(idx_bl)
            .pop()
            .expect("at least one scale");
        self.fhat_to_img(f_hat)
    }
}
