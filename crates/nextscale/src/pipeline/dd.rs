//! Distilled-Decoding generation: the student maps each image's noise sequence
//! ([`dd_noise`] of its seed) to the whole token sequence in one or two passes.

use burn::tensor::{Int, Tensor, TensorData};

use super::{GenerateRequest, Generation};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::readback::read_i64;
use crate::sampler::dd_noise;

/// The student's inputs and its current sequence.
pub(super) struct DdState {
    labels_b: Tensor<1, Int>,
    noise_blc: Tensor<3>,
    x_blc: Tensor<3>,
    t_list: Vec<usize>,
}

impl DdState {
    /// The state of a DD request (`None` for the other modes). The request is validated.
    pub(super) fn new(model: &Model, request: &GenerateRequest) -> Result<Option<Self>> {
        let steps = request.mode.dd_steps();
        let Some(dd) = model.config.dd.as_ref().filter(|_| steps > 0) else {
            return Ok(None);
        };
        let device = model.device();
        let (l, cvae) = (model.config.seq_len(), model.config.cvae);
        let b = request.labels.len();
        let labels = request.conditions(&model.config)?;
        let noise: Vec<f32> = (0..b as u64)
            .flat_map(|i| dd_noise(request.seed + i, l, cvae))
            .collect();
        let noise_blc = Tensor::<3>::from_data(TensorData::new(noise, [b, l, cvae]), device);
        Ok(Some(Self {
            labels_b: Tensor::from_data(TensorData::new(labels, [b]), device),
            x_blc: noise_blc.clone(),
            noise_blc,
            t_list: dd.t_list[..steps].to_vec(),
        }))
    }
}

impl Generation<'_> {
    /// One student pass: re-noise past the kept scales, predict, assemble f_hat. The
    /// event's tokens are the nearest codes of the whole sequence.
    pub(super) async fn dd_step(&mut self) -> Result<(Vec<Vec<u32>>, Tensor<4>)> {
        let model = self.model;
        let missing = || Error::BadRequest("this model has no Distilled-Decoding student".into());
        let student = model.dd.as_ref().ok_or_else(missing)?;
        let state = self.dd.as_mut().ok_or_else(missing)?;
        let t = state.t_list[self.si];
        let x_blc = student.renoise(state.x_blc.clone(), state.noise_blc.clone(), t)?;
        let x_blc = student
            .step(&model.vae, state.labels_b.clone(), x_blc, t)
            .await?;
        state.x_blc = x_blc.clone();
        let [b, l, cv] = x_blc.dims();
        let idx = read_i64(
            model
                .vae
                .quantize
                .nearest(x_blc.clone().reshape([b * l, cv])),
        )
        .await?;
        let tokens = idx
            .chunks(l)
            .map(|seq| seq.iter().map(|&t| t as u32).collect())
            .collect();
        let f_hat = student.sequence_to_fhat(&model.vae, x_blc);
        self.f_hat = f_hat.clone();
        Ok((tokens, f_hat))
    }
}
