//! HMAR parity (`hmar-*` fixtures, NVlabs/HMAR): the VQ-VAE cases it shares with VAR, the
//! two teacher-forced passes, and for each run (greedy at every cfg, and `sampled`) every
//! pass's logits from the official inputs, the confidences, the re-masked sets, and the
//! whole generation (the `sampled` run replays the official draws).

use burn::tensor::{Int, Tensor, TensorData};

use super::{CaseResult, Cases};
use crate::error::{Error, Result};
use crate::hmar::refine::{REFINE_CFG_RATIO, confidence, least_confident, still_masked};
use crate::hmar::{Hmar, Pass};
use crate::model::{Model, Transformer};
use crate::pipeline::{DrawReplay, GenerateRequest, Generation, Mode, PreviewMode};
use crate::sampler::{SamplingOptions, cfg_weight, filter};
use crate::weights::WeightFile;

/// One reference run of `HMAR.generate`.
struct Run {
    /// Case-name prefix: `greedy.cfg1.0`, `sampled`.
    prefix: String,
    cfg: f64,
    opts: SamplingOptions,
    /// Whether the run's tokens come from the replayed official draws.
    replay: bool,
}

/// Runs every HMAR case of `cases` against `model` (an HMAR model whose config carries the
/// fixture's mask schedule); `config_json` is the fixture's `config.json`, which records
/// each run's sampling.
pub async fn run_hmar_cases(
    model: &Model,
    cases: &WeightFile<'_>,
    config_json: &str,
) -> Result<Vec<CaseResult>> {
    let Transformer::Hmar(hmar) = &model.transformer else {
        return Err(Error::Config("HMAR cases need an HMAR model".into()));
    };
    let mut c = Cases {
        file: cases,
        device: model.device().clone(),
        results: Vec::new(),
    };
    teacher_forced(&mut c, model, hmar).await?;
    for run in runs(cases, config_json)? {
        passes(&mut c, model, hmar, &run).await?;
        generation(&mut c, model, &run).await?;
    }
    Ok(c.results)
}

/// The runs with cases: `greedy.cfg{c}` (top-k 1) and `sampled` (its settings from the
/// config's `sampled` object).
fn runs(cases: &WeightFile, config_json: &str) -> Result<Vec<Run>> {
    let value: serde_json::Value =
        serde_json::from_str(config_json).map_err(|e| Error::Config(e.to_string()))?;
    let greedy = SamplingOptions {
        top_k: 1,
        top_p: 0.0,
        more_smooth: false,
    };
    let mut runs: Vec<Run> = super::greedy_cfgs(cases)
        .into_iter()
        .map(|text| {
            Ok(Run {
                cfg: super::parse_cfg(&text)?,
                prefix: format!("greedy.cfg{text}"),
                opts: greedy,
                replay: false,
            })
        })
        .collect::<Result<_>>()?;
    if cases.contains("sampled.idx.0") {
        let field = |k: &str| {
            value
                .pointer(&format!("/sampled/{k}"))
                .and_then(serde_json::Value::as_f64)
                .ok_or_else(|| Error::Config(format!("the HMAR fixture config lacks sampled.{k}")))
        };
        runs.push(Run {
            prefix: "sampled".into(),
            cfg: field("cfg")?,
            opts: SamplingOptions {
                top_k: field("top_k")? as usize,
                top_p: field("top_p")?,
                more_smooth: false,
            },
            replay: true,
        });
    }
    Ok(runs)
}

/// `decode.*`, the teacher-forcing inputs and both teacher-forced passes.
async fn teacher_forced(c: &mut Cases<'_, '_>, model: &Model, hmar: &Hmar) -> Result<()> {
    let vae = &model.vae;
    let sn = c.scales("decode.idx.");
    let idx: Vec<Tensor<2, Int>> = (0..sn)
        .map(|si| c.int::<2>(&format!("decode.idx.{si}")))
        .collect::<Result<_>>()?;
    c.compare_float("decode.image", vae.idx_to_img(&idx))
        .await?;
    c.compare_float("forward.ns_input", vae.quantize.idx_to_var_input(&idx))
        .await?;
    c.compare_float("forward.mask_input", vae.quantize.idx_to_mask_input(&idx))
        .await?;
    let labels = c.int::<1>("forward.labels")?;
    let ns_input = c.float::<3>("forward.ns_input")?;
    let mask_input = c.float::<3>("forward.mask_input")?;
    let (mask_idx, _) = c.file.read_i64("forward.mask_idx")?;
    let mask_idx: Vec<usize> = mask_idx.iter().map(|&i| i as usize).collect();
    let ns_logits = hmar.forward_next_scale(labels.clone(), ns_input.clone());
    c.compare_float("forward.ns_logits", ns_logits).await?;
    let mask_logits = hmar.forward_refine(labels, ns_input, mask_input, &mask_idx);
    c.compare_float("forward.mask_logits", mask_logits).await
}

/// Per scale and pass of `run`: the logits from the official inputs, the refinement input
/// `h`, the confidences and the next masked set.
async fn passes(c: &mut Cases<'_, '_>, model: &Model, hmar: &Hmar, run: &Run) -> Result<()> {
    let config = &model.config;
    let quant = &model.vae.quantize;
    let p = &run.prefix;
    let sn = config.patch_nums.len();
    let cond_bd = guided_cond(hmar, c, config.num_classes)?;
    let b = cond_bd.dims()[0] / 2;
    let modulations = hmar.modulations(cond_bd.clone());
    let schedule = &config
        .hmar
        .as_ref()
        .ok_or_else(|| Error::Config("not an HMAR config".into()))?
        .mask_schedule;
    for (si, (entry, &pn)) in schedule.iter().zip(&config.patch_nums).enumerate() {
        let l = pn * pn;
        let rows = |map_bchw: Tensor<4>| {
            let c = map_bchw.dims()[1];
            map_bchw.reshape([b, c, l]).swap_dims(1, 2)
        };
        // The next-scale input of scale si from the reference f_hat of the scales before.
        let f_hat_blcv = (si > 0)
            .then(|| c.float::<4>(&format!("{p}.f_hat.{}", si - 1)))
            .transpose()?
            .map(|f_hat| rows(quant.area_down(si, f_hat)));
        if let Some(f_hat_blcv) = &f_hat_blcv {
            let name = format!("{p}.refine_in.f_hat.{si}");
            if c.file.contains(&name) {
                let got = f_hat_blcv
                    .clone()
                    .swap_dims(1, 2)
                    .reshape([b, config.cvae, pn, pn]);
                c.compare_float(&name, got).await?;
            }
        }
        for step in 0..entry.len() {
            let x_blc = match (&f_hat_blcv, step) {
                (None, _) => hmar.embed().sos(cond_bd.clone()),
                (Some(f), 0) => hmar.scale_input(si, f.clone()).repeat_dim(0, 2),
                (Some(f), _) => {
                    let prev = c.int::<2>(&format!("{p}.idx.{si}.step{}", step - 1))?;
                    let h_bchw = quant.area_down(si, quant.scale_residual(si, quant.lookup(prev)));
                    c.compare_float(&format!("{p}.refine_in.h.{si}.step{step}"), h_bchw.clone())
                        .await?;
                    let h_blcv = c.float::<4>(&format!("{p}.refine_in.h.{si}.step{step}"))?;
                    let masked = read_positions(c, &format!("{p}.masked.{si}.step{step}"))?;
                    hmar.refine_input(si, f.clone(), rows(h_blcv), &masked)
                        .repeat_dim(0, 2)
                }
            };
            let pass = if step == 0 {
                Pass::NextScale
            } else {
                Pass::Refine
            };
            let logits_nlv = hmar.forward_pass(x_blc, &modulations, pass, None);
            let t = if step == 0 {
                cfg_weight(run.cfg, si, sn)
            } else {
                run.cfg * REFINE_CFG_RATIO
            };
            let cond = logits_nlv.clone().narrow(0, 0, b);
            let uncond = logits_nlv.narrow(0, b, b);
            let guided = cond * (1.0 + t) - uncond * t;
            c.compare_float(&format!("{p}.logits.{si}.step{step}"), guided)
                .await?;
            confidences(c, run, si, step, entry)?;
        }
    }
    Ok(())
}

/// The class condition of both CFG halves: `forward.labels`, then as many null classes.
fn guided_cond(hmar: &Hmar, c: &Cases<'_, '_>, num_classes: usize) -> Result<Tensor<2>> {
    let labels = c.int::<1>("forward.labels")?;
    let b = labels.dims()[0];
    let null =
        Tensor::<1, Int>::from_data(TensorData::new(vec![num_classes as i64; b], [b]), &c.device);
    Ok(hmar.embed().cond(Tensor::cat(vec![labels, null], 0)))
}

/// The confidences after pass `step` of scale `si`, from the reference logits and draws,
/// and the masked set they select for the next pass.
fn confidences(
    c: &mut Cases<'_, '_>,
    run: &Run,
    si: usize,
    step: usize,
    schedule: &[usize],
) -> Result<()> {
    let p = &run.prefix;
    let name = format!("{p}.conf.{si}.step{step}");
    if !c.file.contains(&name) {
        return Ok(());
    }
    let (logits, shape) = c.file.read_f32(&format!("{p}.logits.{si}.step{step}"))?;
    let (draws, _) = c.file.read_i64(&format!("{p}.draw.{si}.step{step}"))?;
    let [b, l, v] = shape[..] else {
        return Err(Error::Config(format!(
            "{p}.logits.{si}.step{step} is not 3-D"
        )));
    };
    // Pass 0 covers every position; refinement passes the masked ones, in their order.
    let positions: Vec<Vec<usize>> = if step == 0 {
        vec![(0..l).collect(); b]
    } else {
        read_positions(c, &format!("{p}.masked.{si}.step{step}"))?
    };
    let mut got = Vec::new();
    let mut next = Vec::new();
    for (bi, pos) in positions.iter().enumerate() {
        let conf: Vec<f64> = pos
            .iter()
            .map(|&li| {
                let start = (bi * l + li) * v;
                let mut row = logits[start..start + v].to_vec();
                filter(&mut row, &run.opts);
                confidence(&row, draws[bi * l + li] as usize)
            })
            .collect();
        got.extend(conf.iter().map(|&x| x as f32));
        let chosen = least_confident(&conf, still_masked(schedule, step));
        next.push(chosen.into_iter().map(|i| pos[i]).collect());
    }
    c.compare_values(&name, &got)?;
    let next_name = format!("{p}.masked.{si}.step{}", step + 1);
    if c.file.contains(&next_name) {
        let want = as_sets(read_positions(c, &next_name)?);
        c.push_differences(&format!("{next_name} (as sets)"), &as_sets(next), &want);
    }
    Ok(())
}

/// Positions per image, each image's sorted, concatenated: masked sets compared as sets (the
/// official order within a set is argsort's; outputs depend only on the set).
pub(super) fn as_sets(sets: Vec<Vec<usize>>) -> Vec<i64> {
    sets.into_iter()
        .flat_map(|mut m| {
            m.sort_unstable();
            m.into_iter().map(|i| i as i64)
        })
        .collect()
}

/// A `[B, n]` int64 case as positions per image.
pub(super) fn read_positions(c: &Cases<'_, '_>, name: &str) -> Result<Vec<Vec<usize>>> {
    let (values, shape) = c.file.read_i64(name)?;
    let n = shape.get(1).copied().unwrap_or(0).max(1);
    Ok(values
        .chunks(n)
        .map(|row| row.iter().map(|&i| i as usize).collect())
        .collect())
}

/// The whole generation of `run` through the pipeline, with pass events: every pass's
/// tokens and masked set, every scale's tokens and f_hat and the final image (the `sampled`
/// run on the official draws).
async fn generation(c: &mut Cases<'_, '_>, model: &Model, run: &Run) -> Result<()> {
    let (labels, _) = c.file.read_i64("forward.labels")?;
    let request = GenerateRequest {
        labels: labels.iter().map(|&l| Some(l as usize)).collect(),
        seed: 0,
        cfg: run.cfg,
        sampling: run.opts,
        preview: PreviewMode::None,
        mode: Mode::Var,
        edit: None,
        mask_schedule: None,
        pass_events: true,
    };
    let mut generation = Generation::new(model, request)?;
    if run.replay {
        let mut draws = DrawReplay::default();
        for name in c.file.names() {
            let Some(rest) = name.strip_prefix(&format!("{}.draw.", run.prefix)) else {
                continue;
            };
            let parsed = rest
                .split_once(".step")
                .and_then(|(si, step)| Some((si.parse().ok()?, step.parse().ok()?)));
            let Some((si, step)) = parsed else {
                return Err(Error::Config(format!("bad draw case name `{name}`")));
            };
            let per_image = read_positions(c, &name)?
                .into_iter()
                .map(|row| row.into_iter().map(|t| t as u32).collect())
                .collect();
            draws.insert(si, step, per_image);
        }
        generation = generation.replay_draws(draws);
    }
    super::run_generation(c, generation, &run.prefix).await
}
