//! HMAR generation (`HMAR.generate`): at every scale the next-scale pass samples each
//! token; then, as the mask schedule says, refinement passes re-predict the least
//! confident tokens behind `mask_embed` and fix the most confident of them, pass by pass.

use std::collections::HashMap;

use burn::tensor::{Int, Tensor, TensorData};

use super::{GenerateRequest, Generation, PassLogits, Passes, PreviewMode};
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::hmar::refine::{REFINE_CFG_RATIO, confidence, least_confident, still_masked};
use crate::hmar::{Hmar, HmarModulations, Pass};
use crate::model::Transformer;
use crate::sampler::{SamplingOptions, TokenRng, cfg_weight, filter, sample_token};

/// What an HMAR generation keeps between scales, and between the passes of a scale.
pub(super) struct HmarState {
    modulations: HmarModulations,
    schedule: Vec<Vec<usize>>,
    /// The current scale between two of its passes.
    progress: Option<ScaleProgress>,
}

/// A scale whose passes are not all done.
struct ScaleProgress {
    /// The tokens so far, per image.
    tokens: Vec<Vec<u32>>,
    /// Per image, the positions the next pass re-predicts.
    masked: Vec<Vec<usize>>,
    /// The next pass (≥ 1: a refinement pass).
    step: usize,
    /// f_hat of the scales before, area-downsampled to this one: `[B, pn², Cvae]`.
    f_hat_blcv: Tensor<3>,
}

/// What [`Generation::hmar_step`] did.
pub(super) enum HmarStep {
    /// A pass that leaves tokens masked.
    Pass(PassDone),
    /// The scale's last pass: its tokens and f_hat after it.
    Scale {
        tokens: Vec<Vec<u32>>,
        f_hat: Tensor<4>,
    },
}

/// A pass that leaves some of its scale's tokens masked for the next.
pub(super) struct PassDone {
    /// 0 for the next-scale pass, then the refinement passes.
    pub pass: usize,
    /// Passes of the scale.
    pub passes: usize,
    /// The tokens so far, per image.
    pub tokens: Vec<Vec<u32>>,
    /// Per image, the positions the next pass re-predicts.
    pub masked: Vec<Vec<usize>>,
    /// f_hat with these tokens in place, `[B, Cvae, HW, HW]`, when the request asks for
    /// previews.
    pub f_hat: Option<Tensor<4>>,
}

impl HmarState {
    /// The state of a validated request on an HMAR model: the condition's modulations and
    /// the request's mask schedule, else the model's.
    pub(super) fn new(
        hmar: &Hmar,
        cond_bd: Tensor<2>,
        config: &ModelConfig,
        request: &GenerateRequest,
    ) -> Result<Self> {
        let schedule = match (&request.mask_schedule, &config.hmar) {
            (Some(schedule), _) => schedule.clone(),
            (None, Some(h)) => h.mask_schedule.clone(),
            (None, None) => return Err(Error::Config("not an HMAR config".into())),
        };
        Ok(Self {
            modulations: hmar.modulations(cond_bd),
            schedule,
            progress: None,
        })
    }
}

/// Tokens to use in place of the sampler's draws, per scale and pass: for parity with the
/// official sampler, whose PyTorch random stream cannot be reproduced. Filtering, the
/// confidences and the re-masking still run as usual on the replayed tokens.
#[derive(Debug, Clone, Default)]
pub struct DrawReplay {
    draws: HashMap<(usize, usize), Vec<Vec<u32>>>,
}

impl DrawReplay {
    /// Sets the draws of pass `step` (0: next-scale) at scale `si`, per image and position.
    pub fn insert(&mut self, si: usize, step: usize, draws: Vec<Vec<u32>>) {
        self.draws.insert((si, step), draws);
    }

    fn get(&self, si: usize, step: usize, bi: usize, li: usize) -> Result<u32> {
        self.draws
            .get(&(si, step))
            .and_then(|d| d.get(bi))
            .and_then(|d| d.get(li))
            .copied()
            .ok_or_else(|| {
                Error::BadRequest(format!(
                    "no replayed draw for scale {si}, pass {step}, image {bi}, position {li}"
                ))
            })
    }
}

/// Where a pass's tokens come from.
struct Picker<'a> {
    opts: SamplingOptions,
    replay: Option<&'a DrawReplay>,
    si: usize,
    step: usize,
}

impl Picker<'_> {
    /// The token at position `li` of image `bi`, and its confidence: the probability of the
    /// token under the filtered row it came from.
    fn pick(
        &self,
        row: &mut [f32],
        rng: &mut TokenRng,
        bi: usize,
        li: usize,
    ) -> Result<(u32, f64)> {
        let token = match self.replay {
            Some(replay) => {
                filter(row, &self.opts);
                replay.get(self.si, self.step, bi, li)? as usize
            }
            None => sample_token(row, &self.opts, rng),
        };
        if token >= row.len() {
            return Err(Error::BadRequest(format!(
                "replayed token {token} is past the model's {} tokens",
                row.len()
            )));
        }
        Ok((token as u32, confidence(row, token)))
    }
}

impl Generation<'_> {
    /// Replays `draws` in place of sampling (HMAR models; see [`DrawReplay`]).
    pub fn replay_draws(mut self, draws: DrawReplay) -> Self {
        self.replay = Some(draws);
        self
    }

    /// The next pass of the current HMAR scale: the next-scale pass, then the refinement
    /// passes of its schedule entry; after the last, f_hat and the next scale's input. Passes
    /// that leave tokens masked return when the request asks for pass events, and the next
    /// call resumes with the pass after.
    pub(super) async fn hmar_step(&mut self) -> Result<HmarStep> {
        let model = self.model;
        let (Transformer::Hmar(hmar), Passes::Hmar(state)) = (&model.transformer, &mut self.passes)
        else {
            return Err(Error::BadRequest("an HMAR pass on a VAR model".into()));
        };
        let config = &model.config;
        let quant = &model.vae.quantize;
        let device = model.device();
        let (si, sn) = (self.si, config.patch_nums.len());
        let pn = config.patch_nums[si];
        let (b, l, cvae) = (self.request.labels.len(), pn * pn, config.cvae);
        let guided = self.guided;
        let schedule = state.schedule[si].clone();
        let passes = if l > 1 { schedule.len() } else { 1 };
        let mut picker = Picker {
            opts: self.request.sampling,
            replay: self.replay.as_ref(),
            si,
            step: 0,
        };
        let rows = |map_bchw: Tensor<4>| map_bchw.reshape([b, cvae, l]).swap_dims(1, 2);
        let idx_bl = |tokens: &[Vec<u32>]| {
            let flat: Vec<i64> = tokens.iter().flatten().map(|&t| t as i64).collect();
            Tensor::<2, Int>::from_data(TensorData::new(flat, [b, l]), device)
        };
        let tokens = loop {
            let progress = match state.progress.take() {
                None => {
                    let x_blc = self.next_x_blc.take().ok_or_else(|| {
                        Error::BadRequest("the generation is past its last scale".into())
                    })?;
                    let logits_nlv =
                        hmar.forward_pass(x_blc, &state.modulations, Pass::NextScale, None);
                    let logits = PassLogits::read(logits_nlv, b, guided).await?;
                    let t = cfg_weight(self.request.cfg, si, sn);
                    let mut tokens = vec![Vec::with_capacity(l); b];
                    let mut conf = vec![Vec::with_capacity(l); b];
                    for (bi, rng) in self.rngs.iter_mut().enumerate() {
                        for li in 0..l {
                            let (token, c) =
                                picker.pick(&mut logits.row(bi, li, t), rng, bi, li)?;
                            tokens[bi].push(token);
                            conf[bi].push(c);
                        }
                    }
                    if passes == 1 {
                        break tokens;
                    }
                    ScaleProgress {
                        tokens,
                        masked: conf
                            .iter()
                            .map(|c| least_confident(c, still_masked(&schedule, 0)))
                            .collect(),
                        step: 1,
                        f_hat_blcv: rows(quant.area_down(si, self.f_hat.clone())),
                    }
                }
                Some(mut progress) => {
                    let step = progress.step;
                    picker.step = step;
                    let h_bchw = quant.scale_residual(si, quant.lookup(idx_bl(&progress.tokens)));
                    let h_blcv = rows(quant.area_down(si, h_bchw));
                    let x_blc = hmar.refine_input(
                        si,
                        progress.f_hat_blcv.clone(),
                        h_blcv,
                        &progress.masked,
                    );
                    let x_blc = if guided {
                        x_blc.repeat_dim(0, 2)
                    } else {
                        x_blc
                    };
                    let logits_nlv =
                        hmar.forward_pass(x_blc, &state.modulations, Pass::Refine, None);
                    let logits = PassLogits::read(logits_nlv, b, guided).await?;
                    let t_refine = self.request.cfg * REFINE_CFG_RATIO;
                    let keep = still_masked(&schedule, step);
                    for (bi, rng) in self.rngs.iter_mut().enumerate() {
                        let masked = &mut progress.masked[bi];
                        let mut conf_m = Vec::with_capacity(masked.len());
                        for &li in masked.iter() {
                            let (token, c) =
                                picker.pick(&mut logits.row(bi, li, t_refine), rng, bi, li)?;
                            progress.tokens[bi][li] = token;
                            conf_m.push(c);
                        }
                        if step + 1 < passes {
                            *masked = least_confident(&conf_m, keep)
                                .into_iter()
                                .map(|i| masked[i])
                                .collect();
                        }
                    }
                    if step + 1 == passes {
                        break progress.tokens;
                    }
                    progress.step += 1;
                    progress
                }
            };
            if self.request.pass_events {
                let f_hat = (self.request.preview != PreviewMode::None).then(|| {
                    let h_bchw = quant.lookup(idx_bl(&progress.tokens));
                    self.f_hat.clone() + quant.scale_residual(si, h_bchw)
                });
                let done = PassDone {
                    pass: progress.step - 1,
                    passes,
                    tokens: progress.tokens.clone(),
                    masked: progress.masked.clone(),
                    f_hat,
                };
                state.progress = Some(progress);
                return Ok(HmarStep::Pass(done));
            }
            state.progress = Some(progress);
        };
        let h_bchw = quant.lookup(idx_bl(&tokens));
        let (f_hat, next) = quant.next_input(si, self.f_hat.clone(), h_bchw);
        self.f_hat = f_hat.clone();
        if let Some(next_bchw) = next {
            self.set_next_input(si + 1, next_bchw, |s, x| hmar.scale_input(s, x));
        }
        Ok(HmarStep::Scale { tokens, f_hat })
    }
}
