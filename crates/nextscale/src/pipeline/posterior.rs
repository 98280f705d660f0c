//! The subclass an edit is generated under. A generation draws a class's subclass by its
//! share ([`GenerateRequest::conditions`]); an edit already shows part of its image, so
//! it draws the subclass from the posterior given the tokens it keeps instead:
//! `p(s | kept) ∝ share(s) · p(kept | s)`, where `p(kept | s)` is the teacher-forced
//! likelihood of every kept token of every scale under subclass `s` (`Var::forward` over
//! the input's token pyramid, without guidance). The draw uses the image's condition stream,
//! as the draw by shares does, so the token stream is unchanged.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use super::GenerateRequest;
use crate::edit::Edit;
use crate::error::Result;
use crate::model::Model;
use crate::readback::read_f32;
use crate::sampler::TokenRng;

/// Sequences per teacher-forced pass while scoring candidates (bounds the `[n, L, V]`
/// logits held at once).
const SCORE_BATCH: usize = 16;

/// One image's candidate subclass rows with their shares.
struct Candidates {
    rows: Vec<usize>,
    shares: Vec<f64>,
}

/// Each image's class-embedding row for an edit: the null row for no class, the class in a
/// model without subclasses, else a subclass of its class drawn from the posterior given
/// the kept tokens. The request is validated and its edit fits the model.
pub(super) async fn edit_conditions(
    model: &Model,
    request: &GenerateRequest,
    edit: &Edit,
) -> Result<Vec<i64>> {
    let config = &model.config;
    let mut rows = request.conditions(config)?;
    let candidates: Vec<Option<Candidates>> = request
        .labels
        .iter()
        .map(|label| {
            let class = (*label)?;
            let (rows, shares) = (config.subclasses.iter().enumerate())
                .filter(|(_, s)| s.class == class && s.share > 0.0)
                .map(|(row, s)| (row, s.share))
                .unzip();
            Some(Candidates { rows, shares })
        })
        .collect();
    // (image, row) pairs to score; an image with one candidate needs none.
    let jobs: Vec<(usize, usize)> = (candidates.iter().enumerate())
        .filter_map(|(bi, c)| c.as_ref().map(|c| (bi, c)))
        .filter(|(_, c)| c.rows.len() > 1)
        .flat_map(|(bi, c)| c.rows.iter().map(move |&row| (bi, row)))
        .collect();
    let mut log_lik = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(SCORE_BATCH) {
        log_lik.extend(kept_log_likelihood(model, edit, chunk).await?);
    }
    let mut scored = jobs.iter().zip(log_lik);
    for (bi, c) in candidates.iter().enumerate() {
        let Some(c) = c.as_ref().filter(|c| c.rows.len() > 1) else {
            continue;
        };
        let ll: Vec<f64> = scored.by_ref().take(c.rows.len()).map(|(_, l)| l).collect();
        let top = ll.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let posterior: Vec<f64> = (c.shares.iter().zip(&ll))
            .map(|(share, l)| share * (l - top).exp())
            .collect();
        let seed = request.seed.wrapping_add(bi as u64);
        rows[bi] = c.rows[TokenRng::for_condition(seed).categorical(&posterior)] as i64;
    }
    Ok(rows)
}

/// The log-likelihood of the tokens `edit` keeps, for each `(image, row)` job: image's
/// input pyramid teacher-forced under class-embedding row `row`.
async fn kept_log_likelihood(
    model: &Model,
    edit: &Edit,
    jobs: &[(usize, usize)],
) -> Result<Vec<f64>> {
    let var = model.var("scoring an edit's subclasses")?;
    let device = model.device();
    let n = jobs.len();
    let scales = &model.config.patch_nums;
    let idx_bl: Vec<Tensor<2, Int>> = (scales.iter().enumerate())
        .map(|(si, pn)| {
            let flat: Vec<i64> = jobs
                .iter()
                .flat_map(|&(bi, _)| edit.input_idx[bi][si].iter().map(|&t| t as i64))
                .collect();
            Tensor::from_data(TensorData::new(flat, [n, pn * pn]), device)
        })
        .collect();
    let targets_nl1 = Tensor::cat(idx_bl.clone(), 1).unsqueeze_dim::<3>(2);
    let keep: Vec<f32> = (edit.keep.iter().flatten())
        .map(|&k| if k { 1.0 } else { 0.0 })
        .collect();
    let l = keep.len();
    let keep_1l = Tensor::<2>::from_data(TensorData::new(keep, [1, l]), device);
    let labels = jobs.iter().map(|&(_, row)| row as i64).collect();
    let labels_n = Tensor::<1, Int>::from_data(TensorData::new(labels, [n]), device);
    let x_nlcv = model.vae.quantize.idx_to_var_input(&idx_bl);
    let logits_nlv = var.forward(labels_n, x_nlcv);
    let log_p_nl = log_softmax(logits_nlv, 2)
        .gather(2, targets_nl1)
        .reshape([n, l]);
    let kept_n = (log_p_nl * keep_1l).sum_dim(1).reshape([n]);
    Ok(read_f32(kept_n).await?.into_iter().map(f64::from).collect())
}
