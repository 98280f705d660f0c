//! The naive one-step baseline: the teacher predicts every scale in a single pass under
//! the block-causal mask, with an empty f_hat as the input of every scale after the first,
//! and every token is sampled independently. It ignores the dependence between tokens
//! that next-scale prediction models, which is the failure Distilled Decoding avoids.

use burn::tensor::{Int, Tensor, TensorData};

use super::{Generation, PassLogits, Passes};
use crate::error::{Error, Result};
use crate::sampler::{cfg_weight, sample_token};

impl Generation<'_> {
    /// The one pass: every scale's tokens, then f_hat assembled scale by scale. The
    /// event's tokens are the whole sequence.
    pub(super) async fn parallel_step(&mut self) -> Result<(Vec<Vec<u32>>, Tensor<4>)> {
        self.start_var().await?;
        let model = self.model;
        let var = model.var("the parallel baseline")?;
        let Passes::Var { modulations, .. } = &self.passes else {
            return Err(Error::BadRequest(
                "the parallel baseline needs a VAR model".into(),
            ));
        };
        let config = &model.config;
        let device = model.device();
        let sos_blc = self
            .next_x_blc
            .take()
            .ok_or_else(|| Error::BadRequest("the parallel pass already ran".into()))?;
        let n = sos_blc.dims()[0];
        let first_l = config.patch_nums[0] * config.patch_nums[0];
        let l = config.seq_len();
        let empty_blcv = Tensor::<3>::zeros([n, l - first_l, config.cvae], device);
        let rest_blc = var.word_embed(empty_blcv) + var.lvl_pos(first_l, l);
        let x_blc = Tensor::cat(vec![sos_blc, rest_blc], 1);
        let logits_nlv =
            var.forward_blocks(x_blc, modulations, Some(var.causal_mask(device)), None);
        let (b, sn) = (self.request.labels.len(), config.patch_nums.len());
        let logits = PassLogits::read(logits_nlv, b, self.guided).await?;
        let opts = self.request.sampling;
        let mut tokens: Vec<Vec<u32>> = vec![Vec::with_capacity(l); b];
        let mut f_hat = self.f_hat.clone();
        for (si, (begin, end)) in var.begin_ends().into_iter().enumerate() {
            let t = cfg_weight(self.request.cfg, si, sn);
            let mut scale = Vec::with_capacity(b * (end - begin));
            for (bi, (rng, toks)) in self.rngs.iter_mut().zip(tokens.iter_mut()).enumerate() {
                for li in begin..end {
                    let token = sample_token(&mut logits.row(bi, li, t), &opts, rng);
                    toks.push(token as u32);
                    scale.push(token as i64);
                }
            }
            let idx_bl =
                Tensor::<2, Int>::from_data(TensorData::new(scale, [b, end - begin]), device);
            f_hat = model
                .vae
                .quantize
                .next_input(si, f_hat, model.vae.quantize.lookup(idx_bl))
                .0;
        }
        self.f_hat = f_hat.clone();
        Ok((tokens, f_hat))
    }
}
