//! Scale-by-scale generation with a KV cache, classifier-free guidance and streamed events.
//!
//! [`Generation::next_event`] advances one scale per call and yields an [`Event`]; callers
//! stream previews as they land and cancel by dropping the generation. Tensors are read back
//! with `into_data_async`, so the same code runs in a browser on WebGPU.
//!
//! An HMAR model runs [`Mode::Var`] as its own next-scale pass plus masked refinement
//! passes (in [`hmar`]). Besides the teacher's scale-by-scale [`Mode::Var`], a generation can run the
//! Distilled-Decoding student ([`Mode::Dd1`], [`Mode::Dd2`], in [`dd`]) or the naive
//! one-pass baseline ([`Mode::Parallel`], in [`parallel`]); each of their steps is an event.

mod dd;
mod hmar;
mod parallel;
mod posterior;

pub use hmar::DrawReplay;

use hmar::HmarStep;

use burn::tensor::{Device, Int, Tensor, TensorData};
use web_time::Instant;

use crate::config::{HmarConfig, ModelConfig, Sampling};
use crate::dd::flow::FlowMap;
use crate::edit::Edit;
use crate::error::{Error, Result};
use crate::model::{Model, Transformer};
use crate::preview::{RgbaImage, fast_preview, to_rgba};
use crate::readback::read_f32;
use crate::sampler::{
    SamplingOptions, TokenRng, cfg_weight, dd_noise, filter, guide, gumbel_soft, sample_token,
    softmax,
};
use crate::var::{KvCache, Modulations};

/// Largest batch a request may ask for.
pub const MAX_BATCH: usize = 64;

/// What preview each scale's event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PreviewMode {
    /// No preview.
    None,
    /// The linear Cvae → RGB map at latent resolution (nearly free).
    #[default]
    Fast,
    /// A full decoder pass (exact, costs one decode per scale).
    Full,
}

/// Which sampler produces the tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The next-scale teacher, an event per scale: VAR's pass with its KV cache, or HMAR's
    /// next-scale pass and refinement passes.
    #[default]
    Var,
    /// The Distilled-Decoding student in one pass.
    Dd1,
    /// The student in two passes; the first pass's image is the preview.
    Dd2,
    /// The naive baseline: the teacher predicts every scale in one pass from an empty
    /// f_hat and every token is sampled independently.
    Parallel,
}

impl Mode {
    /// Parses `var`, `dd1`, `dd2` or `parallel`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "var" => Ok(Self::Var),
            "dd1" => Ok(Self::Dd1),
            "dd2" => Ok(Self::Dd2),
            "parallel" => Ok(Self::Parallel),
            other => Err(Error::BadRequest(format!(
                "unknown mode `{other}` (expected var, dd1, dd2 or parallel)"
            ))),
        }
    }

    /// Student passes of a DD mode (0 for the others).
    pub fn dd_steps(self) -> usize {
        match self {
            Self::Dd1 => 1,
            Self::Dd2 => 2,
            Self::Var | Self::Parallel => 0,
        }
    }
}

/// One generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// One entry per image: a class label, or `None` for unconditional.
    pub labels: Vec<Option<usize>>,
    /// Image i uses the random stream of `seed + i`.
    pub seed: u64,
    /// Classifier-free guidance strength.
    pub cfg: f64,
    /// Sampling masks and smoothing.
    pub sampling: SamplingOptions,
    /// Per-scale preview.
    pub preview: PreviewMode,
    /// The sampler.
    pub mode: Mode,
    /// Zero-shot editing: the input tokens to keep at each scale (`var` mode only), one
    /// input image per entry of `labels`.
    pub edit: Option<Edit>,
    /// HMAR only: the mask schedule, in place of the model's
    /// ([`HmarConfig::mask_schedule`](crate::config::HmarConfig::mask_schedule)).
    pub mask_schedule: Option<Vec<Vec<usize>>>,
    /// HMAR only: also an [`Event::Pass`] after every pass that leaves tokens of its scale
    /// masked for the next.
    pub pass_events: bool,
}

impl GenerateRequest {
    /// `count` images of one class (or unconditional) with the official sampling
    /// ([`Sampling::OFFICIAL`]: cfg 1.5, top-k 900, top-p 0.96).
    pub fn new(label: Option<usize>, count: usize, seed: u64) -> Self {
        let official = Sampling::OFFICIAL;
        Self {
            labels: vec![label; count],
            seed,
            cfg: official.cfg,
            sampling: SamplingOptions {
                top_k: official.top_k,
                top_p: official.top_p,
                more_smooth: false,
            },
            preview: PreviewMode::Fast,
            mode: Mode::Var,
            edit: None,
            mask_schedule: None,
            pass_events: false,
        }
    }

    /// Takes cfg, top-k and top-p from `sampling` (for instance a model's
    /// [`ModelConfig::default_sampling`](crate::ModelConfig::default_sampling)).
    pub fn with_sampling(mut self, sampling: Sampling) -> Self {
        self.cfg = sampling.cfg;
        self.sampling.top_k = sampling.top_k;
        self.sampling.top_p = sampling.top_p;
        self
    }

    /// The class-embedding row of each image: the null row for no class, the class itself
    /// in a model without subclasses, else one of the class's subclasses drawn by their
    /// shares from the image's seed (`seed + i`) on a stream of its own
    /// ([`TokenRng::for_condition`]), so that the tokens' stream is the same either way.
    /// A label that is not one of the model's classes is an error.
    pub fn conditions(&self, config: &ModelConfig) -> Result<Vec<i64>> {
        let draw = |class: usize, seed: u64| {
            let rows: Vec<usize> = (0..config.subclasses.len())
                .filter(|&row| config.subclasses[row].class == class)
                .collect();
            let shares: Vec<f64> = rows.iter().map(|&r| config.subclasses[r].share).collect();
            // A valid config gives every class a subclass with a positive share.
            rows[TokenRng::for_condition(seed).categorical(&shares)]
        };
        (self.labels.iter().enumerate())
            .map(|(i, &label)| {
                let row = match label.map(|class| config.check_class(class)).transpose()? {
                    None => config.cond_classes(),
                    Some(class) if config.subclasses.is_empty() => class,
                    Some(class) => draw(class, self.seed.wrapping_add(i as u64)),
                };
                Ok(row as i64)
            })
            .collect()
    }

    /// Checks every option against the model.
    pub fn validate(&self, model: &Model) -> Result<()> {
        let bad = |m: String| Err(Error::BadRequest(m));
        if self.labels.is_empty() || self.labels.len() > MAX_BATCH {
            return bad(format!(
                "batch size {} must be in 1..={MAX_BATCH}",
                self.labels.len()
            ));
        }
        for label in self.labels.iter().flatten() {
            model.config.check_class(*label)?;
        }
        let sampling = Sampling {
            cfg: self.cfg,
            top_k: self.sampling.top_k,
            top_p: self.sampling.top_p,
        };
        if let Some(problem) = sampling.problem() {
            return bad(problem);
        }
        if self.seed.checked_add(self.labels.len() as u64).is_none() {
            return bad(format!("seed {} overflows with the batch size", self.seed));
        }
        match (&model.config.hmar, &self.mask_schedule) {
            (Some(_), Some(schedule)) => {
                if let Some(problem) =
                    HmarConfig::schedule_problem(schedule, &model.config.patch_nums)
                {
                    return bad(problem);
                }
            }
            (None, Some(_)) => return bad("a mask schedule needs an HMAR model".into()),
            _ => {}
        }
        if self.pass_events && model.config.hmar.is_none() {
            return bad(
                "pass events need an HMAR model (VAR predicts each scale in one pass)".into(),
            );
        }
        if model.config.hmar.is_some() {
            let unsupported = if self.mode != Mode::Var {
                Some(format!("mode {:?}", self.mode))
            } else if self.edit.is_some() {
                Some("editing".to_string())
            } else if self.sampling.more_smooth {
                Some("more_smooth (HMAR has no Gumbel path)".to_string())
            } else {
                None
            };
            if let Some(what) = unsupported {
                return bad(format!(
                    "{what} needs a VAR model; an HMAR model samples scale by scale (mode var)"
                ));
            }
        }
        if let Some(edit) = &self.edit {
            if self.mode != Mode::Var {
                return bad(format!(
                    "mode {:?} cannot edit: only the VAR teacher can keep given tokens scale by scale (the distilled student and the one-pass baseline have no teacher forcing)",
                    self.mode
                ));
            }
            let scales = &model.config.patch_nums;
            let fits = edit.input_idx.len() == self.labels.len()
                && edit.keep.len() == scales.len()
                && edit.keep.iter().zip(scales).all(|(k, p)| k.len() == p * p)
                && edit.input_idx.iter().all(|image| {
                    image.len() == scales.len()
                        && image.iter().zip(scales).all(|(t, p)| t.len() == p * p)
                        && image
                            .iter()
                            .flatten()
                            .all(|&t| (t as usize) < model.config.vocab_size)
                });
            if !fits {
                return bad(format!(
                    "the edit's input tokens and masks do not fit {} image(s) of this model's scales {scales:?}",
                    self.labels.len()
                ));
            }
        }
        let steps = self.mode.dd_steps();
        if steps > 0 {
            match (&model.dd, &model.config.dd) {
                (Some(_), Some(dd)) if dd.t_list.len() >= steps => {}
                (Some(_), Some(dd)) => {
                    return bad(format!(
                        "the student has {} step(s) in its t_list; {steps} asked",
                        dd.t_list.len()
                    ));
                }
                _ => {
                    return bad("this model has no Distilled-Decoding student; use mode var".into());
                }
            }
        }
        Ok(())
    }
}

/// Wall time of each stage of one generation, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timings {
    /// Transformer + sampling + f_hat update, per scale.
    pub scale_ms: Vec<f64>,
    /// Preview work, per scale.
    pub preview_ms: Vec<f64>,
    /// The final decoder pass.
    pub decode_ms: f64,
    /// Everything.
    pub total_ms: f64,
}

/// What a generation reports.
#[derive(Debug, Clone)]
pub enum Event {
    /// Scale `index` (0-based) of `of` is done.
    Scale {
        /// Scale index.
        index: usize,
        /// Number of scales.
        of: usize,
        /// Token indices of this scale, per image, row-major `pn × pn`.
        tokens: Vec<Vec<u32>>,
        /// f_hat after this scale, `[B, Cvae, HW, HW]`.
        f_hat: Tensor<4>,
        /// The preview the request asked for, one per image.
        preview: Option<Vec<RgbaImage>>,
        /// Milliseconds since the generation started.
        elapsed_ms: f64,
    },
    /// HMAR: pass `pass` of the `passes` of scale `scale` is done, and `masked` tokens
    /// remain for the next pass to re-predict (only with
    /// [`GenerateRequest::pass_events`]; the scale's last pass ends in its `Scale` event).
    Pass {
        /// Scale index.
        scale: usize,
        /// Pass index: 0 is the next-scale pass, then the refinement passes.
        pass: usize,
        /// Passes of this scale (its mask schedule entry's length).
        passes: usize,
        /// The scale's tokens so far, per image, row-major `pn × pn`.
        tokens: Vec<Vec<u32>>,
        /// Per image, the positions (raster indices within the scale) the next pass
        /// re-predicts, least confident first.
        masked: Vec<Vec<usize>>,
        /// The preview the request asked for, with these tokens in place, one per image.
        preview: Option<Vec<RgbaImage>>,
        /// Milliseconds since the generation started.
        elapsed_ms: f64,
    },
    /// The final images.
    Done {
        /// `[B, 3, H, W]` in [0, 1].
        image01: Tensor<4>,
        /// The same as 8-bit RGBA.
        images: Vec<RgbaImage>,
        /// Where the time went.
        timings: Timings,
    },
}

/// What a generation keeps of its transformer between scales.
enum Passes {
    /// VAR before its first scale: each image's condition (class or subclass row), unless
    /// an edit redraws them ([`Generation::start_var`]).
    VarPending(Vec<i64>),
    /// VAR: the KV cache of every block and the modulations of the class condition.
    Var {
        caches: Vec<KvCache>,
        modulations: Box<Modulations>,
    },
    /// HMAR: its modulations and mask schedule.
    Hmar(Box<hmar::HmarState>),
}

/// A generation in progress. Advance it with [`Generation::next_event`].
pub struct Generation<'m> {
    model: &'m Model,
    request: GenerateRequest,
    rngs: Vec<TokenRng>,
    /// The transformer's per-request state; its condition has batch `2B` with guidance
    /// (cond then null), else `B`.
    passes: Passes,
    guided: bool,
    next_x_blc: Option<Tensor<3>>,
    f_hat: Tensor<4>,
    si: usize,
    started: Instant,
    timings: Timings,
    finished: bool,
    /// Ψ and each image's noise, when tokens follow the flow map instead of sampling.
    flow: Option<(FlowMap, Vec<Vec<f32>>)>,
    /// The student's state in a DD mode.
    dd: Option<dd::DdState>,
    /// Tokens replayed in place of HMAR's draws ([`Generation::replay_draws`]).
    replay: Option<DrawReplay>,
    /// Milliseconds of the current scale spent in earlier events (HMAR's passes): its
    /// passes, and their previews.
    carried_ms: (f64, f64),
}

impl<'m> Generation<'m> {
    /// Validates the request and draws its conditions; the transformer starts at the first
    /// step.
    pub fn new(model: &'m Model, request: GenerateRequest) -> Result<Self> {
        request.validate(model)?;
        let device = model.device();
        let b = request.labels.len();
        // cfg = 0 makes t = 0 at every scale, so the unconditional half cannot change the
        // result and is skipped.
        let guided = request.cfg > 0.0;
        let labels = request.conditions(&model.config)?;
        let (next_x_blc, passes) = match &model.transformer {
            Transformer::Var(_) => (None, Passes::VarPending(labels)),
            Transformer::Hmar(h) => {
                let null = model.config.cond_classes() as i64;
                let labels_n = pass_labels(labels, guided, null, device);
                let cond_bd = h.embed().cond(labels_n);
                let sos_blc = h.embed().sos(cond_bd.clone());
                let state = hmar::HmarState::new(h, cond_bd, &model.config, &request)?;
                (Some(sos_blc), Passes::Hmar(Box::new(state)))
            }
        };
        let hw = model.config.latent_size();
        let f_hat = Tensor::zeros([b, model.config.cvae, hw, hw], device);
        let rngs = (0..b as u64)
            .map(|i| TokenRng::new(request.seed + i))
            .collect();
        Ok(Self {
            model,
            rngs,
            passes,
            guided,
            next_x_blc,
            f_hat,
            si: 0,
            started: Instant::now(),
            timings: Timings::default(),
            finished: false,
            flow: None,
            dd: dd::DdState::new(model, &request)?,
            replay: None,
            carried_ms: (0.0, 0.0),
            request,
        })
    }

    /// Picks every teacher token with the flow map Ψ (`steps` Euler steps) from the
    /// guided, masked distribution and image i's noise [`dd_noise`]`(seed + i)`, instead
    /// of sampling: the deterministic noise → tokens map that Distilled Decoding learns.
    pub async fn with_flow(mut self, steps: usize) -> Result<Self> {
        if self.request.mode != Mode::Var || self.model.config.hmar.is_some() {
            return Err(Error::BadRequest(
                "the flow map drives the VAR teacher only".into(),
            ));
        }
        let config = &self.model.config;
        let codebook = read_f32(self.model.vae.quantize.embedding.weight.val()).await?;
        let noise = (0..self.request.labels.len() as u64)
            .map(|i| dd_noise(self.request.seed + i, config.seq_len(), config.cvae))
            .collect();
        self.flow = Some((FlowMap::new(&codebook, config.cvae, steps), noise));
        Ok(self)
    }

    /// Each image's noise sequence (`L·Cvae` values) when Ψ picks the tokens
    /// ([`Self::with_flow`]).
    pub fn flow_noise(&self) -> Option<&[Vec<f32>]> {
        self.flow.as_ref().map(|(_, noise)| noise.as_slice())
    }

    /// Side of the final images in pixels.
    pub fn image_size(&self) -> usize {
        self.model.config.image_size
    }

    /// Number of events before the final one: scales for VAR, passes otherwise.
    pub fn num_scales(&self) -> usize {
        match self.request.mode {
            Mode::Var => self.model.config.patch_nums.len(),
            Mode::Dd1 | Mode::Dd2 => self.request.mode.dd_steps(),
            Mode::Parallel => 1,
        }
    }

    /// Runs the next scale (or the final decode) and returns its event; `None` when done.
    /// After an error the generation is over: later calls return `None`.
    pub async fn next_event(&mut self) -> Result<Option<Event>> {
        let event = self.advance().await;
        if event.is_err() {
            self.finished = true;
        }
        event
    }

    async fn advance(&mut self) -> Result<Option<Event>> {
        if self.finished {
            return Ok(None);
        }
        let sn = self.num_scales();
        if self.si == sn {
            self.finished = true;
            return self.finish().await.map(Some);
        }
        let t0 = Instant::now();
        let (tokens, f_hat) = match self.request.mode {
            Mode::Var if matches!(self.passes, Passes::Hmar(_)) => match self.hmar_step().await? {
                HmarStep::Scale { tokens, f_hat } => (tokens, f_hat),
                HmarStep::Pass(pass) => {
                    self.carried_ms.0 += ms_since(t0);
                    let t1 = Instant::now();
                    let preview = match pass.f_hat {
                        Some(f_hat) => self.preview(f_hat).await?,
                        None => None,
                    };
                    self.carried_ms.1 += ms_since(t1);
                    return Ok(Some(Event::Pass {
                        scale: self.si,
                        pass: pass.pass,
                        passes: pass.passes,
                        tokens: pass.tokens,
                        masked: pass.masked,
                        preview,
                        elapsed_ms: ms_since(self.started),
                    }));
                }
            },
            Mode::Var => self.step().await?,
            Mode::Dd1 | Mode::Dd2 => self.dd_step().await?,
            Mode::Parallel => self.parallel_step().await?,
        };
        let (carried_scale_ms, carried_preview_ms) = std::mem::take(&mut self.carried_ms);
        self.timings.scale_ms.push(carried_scale_ms + ms_since(t0));
        let t1 = Instant::now();
        let preview = self.preview(f_hat.clone()).await?;
        self.timings
            .preview_ms
            .push(carried_preview_ms + ms_since(t1));
        let event = Event::Scale {
            index: self.si,
            of: sn,
            tokens,
            f_hat,
            preview,
            elapsed_ms: ms_since(self.started),
        };
        self.si += 1;
        Ok(Some(event))
    }

    /// Runs every remaining step and returns the final event.
    pub async fn run_to_end(mut self) -> Result<Event> {
        loop {
            match self.next_event().await? {
                Some(done @ Event::Done { .. }) => return Ok(done),
                Some(_) => continue,
                None => return Err(Error::BadRequest("generation already finished".into())),
            }
        }
    }

    /// Starts a VAR pass before its first scale, once: the class condition, the first
    /// scale's input and empty KV caches. An edit in a model with subclasses starts under
    /// the subclasses its kept tokens make likely ([`posterior`]) instead of the ones drawn
    /// by shares.
    pub(super) async fn start_var(&mut self) -> Result<()> {
        let Passes::VarPending(labels) = &self.passes else {
            return Ok(());
        };
        let model = self.model;
        let var = model.var("a VAR pass")?;
        let labels = match self.request.edit.as_ref() {
            Some(edit) if !model.config.subclasses.is_empty() => {
                posterior::edit_conditions(model, &self.request, edit).await?
            }
            _ => labels.clone(),
        };
        let null = model.config.cond_classes() as i64;
        let labels_n = pass_labels(labels, self.guided, null, model.device());
        let cond_bd = var.cond(labels_n);
        self.next_x_blc = Some(var.sos(cond_bd.clone()));
        self.passes = Passes::Var {
            caches: var.new_caches(),
            modulations: Box::new(var.modulations(cond_bd)),
        };
        Ok(())
    }

    async fn step(&mut self) -> Result<(Vec<Vec<u32>>, Tensor<4>)> {
        self.start_var().await?;
        let model = self.model;
        let config = &model.config;
        let (si, sn) = (self.si, self.num_scales());
        let pn = config.patch_nums[si];
        let l = pn * pn;
        let b = self.request.labels.len();
        let v = config.vocab_size;
        let var = model.var("the KV-cached pass")?;
        let Passes::Var {
            caches,
            modulations,
        } = &mut self.passes
        else {
            return Err(Error::BadRequest("a VAR pass on an HMAR generation".into()));
        };
        let x_blc = self
            .next_x_blc
            .take()
            .expect("input prepared for every scale");
        let logits_nlv = var.forward_blocks(x_blc, modulations, None, Some(caches));
        let logits = PassLogits::read(logits_nlv, b, self.guided).await?;
        let t = cfg_weight(self.request.cfg, si, sn);
        let ratio = si as f64 / (sn - 1) as f64;
        let opts = self.request.sampling;
        let cvae = config.cvae;
        let offset = var.begin_ends()[si].0;
        let mut tokens = vec![Vec::with_capacity(l); b];
        let mut soft = Vec::new();
        for (bi, (rng, toks)) in self.rngs.iter_mut().zip(tokens.iter_mut()).enumerate() {
            let mut rows: Vec<Vec<f32>> = Vec::with_capacity(l);
            for li in 0..l {
                let mut row = logits.row(bi, li, t);
                let token = match &self.flow {
                    Some((map, noise)) => {
                        filter(&mut row, &opts);
                        let at = (offset + li) * cvae;
                        map.token(&noise[bi][at..at + cvae], &softmax(&row))
                    }
                    None => sample_token(&mut row, &opts, rng),
                };
                toks.push(token as u32);
                rows.push(row);
            }
            let kept = self
                .request
                .edit
                .as_ref()
                .map(|edit| (&edit.keep[si], &edit.input_idx[bi][si]));
            if let Some((keep, input)) = kept {
                for ((tok, &k), &given) in toks.iter_mut().zip(keep).zip(input) {
                    if k {
                        *tok = given;
                    }
                }
            }
            if opts.more_smooth {
                for (li, row) in rows.iter().enumerate() {
                    match kept {
                        // A kept token enters as its own code, not a soft mixture.
                        Some((keep, input)) if keep[li] => {
                            soft.extend(
                                (0..v).map(|t| if t == input[li] as usize { 1.0 } else { 0.0 }),
                            );
                        }
                        _ => soft.extend(gumbel_soft(row, ratio, rng)),
                    }
                }
            }
        }
        let device = model.device();
        let h_bchw = if opts.more_smooth {
            let probs_nv = Tensor::<2>::from_data(TensorData::new(soft, [b * l, v]), device);
            probs_nv
                .matmul(model.vae.quantize.embedding.weight.val())
                .reshape([b, l, cvae])
                .swap_dims(1, 2)
                .reshape([b, cvae, pn, pn])
        } else {
            let flat: Vec<i64> = tokens.iter().flatten().map(|&t| t as i64).collect();
            let idx_bl = Tensor::<2, Int>::from_data(TensorData::new(flat, [b, l]), device);
            model.vae.quantize.lookup(idx_bl)
        };
        let (f_hat, next) = model
            .vae
            .quantize
            .next_input(si, self.f_hat.clone(), h_bchw);
        self.f_hat = f_hat.clone();
        if let Some(next_bchw) = next {
            self.set_next_input(si + 1, next_bchw, |s, x| var.embed_scale(s, x));
        }
        Ok((tokens, f_hat))
    }

    /// Prepares scale `si`'s input: its map `[B, Cvae, pn, pn]` (f_hat area-downsampled to
    /// the scale) as rows through the transformer's `embed(si, x_blcv)`, doubled for guidance.
    fn set_next_input(
        &mut self,
        si: usize,
        map_bchw: Tensor<4>,
        embed: impl FnOnce(usize, Tensor<3>) -> Tensor<3>,
    ) {
        let [b, cvae, pn, _] = map_bchw.dims();
        let x_blcv = map_bchw.reshape([b, cvae, pn * pn]).swap_dims(1, 2);
        let x_blc = embed(si, x_blcv);
        self.next_x_blc = Some(if self.guided {
            x_blc.repeat_dim(0, 2)
        } else {
            x_blc
        });
    }

    async fn preview(&self, f_hat: Tensor<4>) -> Result<Option<Vec<RgbaImage>>> {
        let image01 = match self.request.preview {
            PreviewMode::None => return Ok(None),
            PreviewMode::Fast => fast_preview(self.model.preview_matrix().await?, f_hat),
            PreviewMode::Full => (self.model.vae.fhat_to_img(f_hat) + 1.0) * 0.5,
        };
        Ok(Some(images_of(image01).await?))
    }

    async fn finish(&mut self) -> Result<Event> {
        let t0 = Instant::now();
        let image01 = (self.model.vae.fhat_to_img(self.f_hat.clone()) + 1.0) * 0.5;
        let images = images_of(image01.clone()).await?;
        self.timings.decode_ms = ms_since(t0);
        self.timings.total_ms = ms_since(self.started);
        Ok(Event::Done {
            image01,
            images,
            timings: self.timings.clone(),
        })
    }
}

/// The logits of one transformer pass on the host: `[N, l, V]` with the B conditional rows
/// first and, with guidance, the B null-class rows after them.
struct PassLogits {
    logits: Vec<f32>,
    b: usize,
    l: usize,
    v: usize,
    guided: bool,
}

impl PassLogits {
    /// Reads the logits of a batch of `b` images back to the host.
    async fn read(logits_nlv: Tensor<3>, b: usize, guided: bool) -> Result<Self> {
        let [_, l, v] = logits_nlv.dims();
        Ok(Self {
            logits: read_f32(logits_nlv).await?,
            b,
            l,
            v,
            guided,
        })
    }

    /// Token `li` of image `bi`, guided with weight `t` when the pass has a null half.
    fn row(&self, bi: usize, li: usize, t: f64) -> Vec<f32> {
        let (b, l, v) = (self.b, self.l, self.v);
        let start = (bi * l + li) * v;
        let mut row = self.logits[start..start + v].to_vec();
        if self.guided {
            let ustart = ((b + bi) * l + li) * v;
            guide(&mut row, &self.logits[ustart..ustart + v], t);
        }
        row
    }
}

/// The class-embedding rows of a pass: the B conditions, then with guidance B null rows.
fn pass_labels(mut labels: Vec<i64>, guided: bool, null: i64, device: &Device) -> Tensor<1, Int> {
    if guided {
        labels.extend(std::iter::repeat_n(null, labels.len()));
    }
    let n = labels.len();
    Tensor::from_data(TensorData::new(labels, [n]), device)
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Reads `[B, 3, H, W]` in [0, 1] back as RGBA images.
pub async fn images_of(image01_b3hw: Tensor<4>) -> Result<Vec<RgbaImage>> {
    let [b, _, h, w] = image01_b3hw.dims();
    let values = read_f32(image01_b3hw).await?;
    Ok(to_rgba(&values, b, h, w))
}
