//! HMAR's two training stages (NVlabs/HMAR `train.py` and `finetune.py`): the next-scale
//! stage (teacher forcing under the block-diagonal mask, cross-entropy over every token),
//! then the masked fine-tune, which starts the refinement stack from the next-scale stack
//! and trains only it, on positions masked at a ratio drawn every step.

use burn::tensor::{Int, Tensor, TensorData};
use rand::Rng;
use rand::seq::index::sample;

use super::StateDict;
use super::var::cross_entropy;
use crate::hmar::Hmar;

/// Mean cross-entropy of the teacher-forced next-scale logits over every token, and the
/// token accuracy (detached).
///
/// # Shapes
/// - labels: `[B]` (the null class for dropped labels), ns_input: `[B, L − pn₀², Cvae]`,
///   target: `[B, L]` → loss `[1]`, accuracy `[1]`
pub fn next_scale_loss(
    hmar: &Hmar,
    labels_b: Tensor<1, Int>,
    ns_input_blcv: Tensor<3>,
    target_bl: Tensor<2, Int>,
) -> (Tensor<1>, Tensor<1>) {
    cross_entropy(hmar.forward_next_scale(labels_b, ns_input_blcv), target_bl)
}

/// Mean cross-entropy of the teacher-forced refinement logits at the masked rows only
/// (the official `mask_unweighted` loss), and their accuracy (detached). `mask_idx` indexes
/// the rows after the first scale, as [`draw_mask_idx`] returns them.
///
/// # Shapes
/// - labels: `[B]`, ns_input, mask_input: `[B, L − pn₀², Cvae]`, target: `[B, L]`
///   → loss `[1]`, accuracy `[1]`
pub fn refine_loss(
    hmar: &Hmar,
    labels_b: Tensor<1, Int>,
    ns_input_blcv: Tensor<3>,
    mask_input_blcv: Tensor<3>,
    mask_idx: &[usize],
    target_bl: Tensor<2, Int>,
) -> (Tensor<1>, Tensor<1>) {
    let first = hmar.embed().begin_ends()[0].1;
    let logits_blv = hmar.forward_refine(labels_b, ns_input_blcv, mask_input_blcv, mask_idx);
    let rows: Vec<i64> = mask_idx.iter().map(|&i| (i + first) as i64).collect();
    let rows_m = Tensor::<1, Int>::from_data(
        TensorData::new(rows, [mask_idx.len()]),
        &logits_blv.device(),
    );
    cross_entropy(
        logits_blv.select(1, rows_m.clone()),
        target_bl.select(1, rows_m),
    )
}

/// The positions the masked fine-tune hides in one step (official `idxBl_to_mask_input`):
/// for every scale after the first, ⌈pn²·p_mask⌉ of its positions drawn uniformly without
/// replacement, as indices into the rows after the first scale, the same for every image.
pub fn draw_mask_idx(patch_nums: &[usize], p_mask: f64, rng: &mut impl Rng) -> Vec<usize> {
    let mut idx = Vec::new();
    let mut offset = 0;
    for &pn in &patch_nums[1..] {
        let l = pn * pn;
        let n = ((l as f64 * p_mask.clamp(0.0, 1.0)).ceil() as usize).min(l);
        idx.extend(sample(rng, l, n).into_iter().map(|i| offset + i));
        offset += l;
    }
    idx
}

/// Starts the refinement stack as the official fine-tune does, which loads the next-scale
/// checkpoint into a model whose last blocks and head become the mask stack: every
/// `mask_blocks.*`, `mask_head_nm.*` and `mask_head.*` tensor of `state` (names under
/// `prefix`) becomes a copy of its `ns_*` counterpart. `mask_embed` keeps its value.
pub fn refinement_from_next_scale(state: &mut StateDict, prefix: &str) {
    let pairs = [
        ("ns_blocks.", "mask_blocks."),
        ("ns_head_nm.", "mask_head_nm."),
        ("ns_head.", "mask_head."),
    ];
    let copies: StateDict = state
        .iter()
        .filter_map(|(name, value)| {
            let rest = name.strip_prefix(prefix)?;
            pairs.iter().find_map(|(ns, mask)| {
                let tail = rest.strip_prefix(ns)?;
                Some((format!("{prefix}{mask}{tail}"), value.clone()))
            })
        })
        .collect();
    state.extend(copies);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HmarConfig, ModelConfig};
    use crate::train::state_dict;
    use crate::weights::{HMAR_PREFIX, ParamSource};
    use burn::optim::GradientsParams;
    use burn::tensor::Device;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn tiny_hmar() -> (ModelConfig, Hmar, StateDict) {
        let mut config = ModelConfig::emoji32_tiny(9);
        config.hmar = Some(HmarConfig {
            n_layers_train: 1,
            mask_schedule: HmarConfig::official_mask_schedule(&config.patch_nums),
        });
        let device = Device::flex();
        let mut src = ParamSource::random(0, &device).with_prefix(HMAR_PREFIX);
        let hmar = Hmar::new(&mut src, &config).unwrap();
        let state = state_dict(&hmar, src.names()).unwrap();
        (config, hmar, state)
    }

    #[test]
    fn mask_draw_takes_the_ceiling_share_of_every_later_scale() {
        let patch_nums = [1, 2, 3, 4, 6, 8];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for p_mask in [0.0, 0.01, 0.5, 0.999, 1.0] {
            let idx = draw_mask_idx(&patch_nums, p_mask, &mut rng);
            let mut offset = 0;
            for &pn in &patch_nums[1..] {
                let l = pn * pn;
                let mut of_scale: Vec<usize> = idx
                    .iter()
                    .copied()
                    .filter(|&i| (offset..offset + l).contains(&i))
                    .collect();
                assert_eq!(of_scale.len(), (l as f64 * p_mask).ceil() as usize);
                of_scale.sort_unstable();
                of_scale.dedup();
                assert_eq!(of_scale.len(), (l as f64 * p_mask).ceil() as usize);
                offset += l;
            }
            assert!(idx.iter().all(|&i| i < offset));
        }
    }

    #[test]
    fn losses_of_a_fresh_model_are_log_v() {
        let (config, hmar, _) = tiny_hmar();
        let device = Device::flex();
        let l = config.seq_len();
        let first = config.patch_nums[0] * config.patch_nums[0];
        let x = || Tensor::<3>::zeros([2, l - first, config.cvae], &device);
        let target = || Tensor::<2, Int>::zeros([2, l], &device);
        let labels = || Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 9], [2]), &device);
        let log_v = (config.vocab_size as f32).ln();
        let (loss, _) = next_scale_loss(&hmar, labels(), x(), target());
        let loss: f32 = loss.into_scalar();
        assert!((loss - log_v).abs() < 0.1, "{loss} vs {log_v}");
        let mask_idx = draw_mask_idx(&config.patch_nums, 0.5, &mut ChaCha8Rng::seed_from_u64(2));
        let (loss, acc) = refine_loss(&hmar, labels(), x(), x(), &mask_idx, target());
        let loss: f32 = loss.into_scalar();
        assert!((loss - log_v).abs() < 0.1, "{loss} vs {log_v}");
        let acc: f32 = acc.into_scalar();
        assert!((0.0..=1.0).contains(&acc));
    }

    #[test]
    fn fine_tune_trains_only_the_refinement_stack() {
        let (config, _, state) = tiny_hmar();
        let device = Device::flex().autodiff();
        let mut src = ParamSource::random(0, &device).with_prefix(HMAR_PREFIX);
        let hmar = Hmar::new(&mut src, &config).unwrap();
        let l = config.seq_len();
        let first = config.patch_nums[0] * config.patch_nums[0];
        let x = || Tensor::<3>::ones([2, l - first, config.cvae], &device);
        let target = || Tensor::<2, Int>::zeros([2, l], &device);
        let labels = || Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 9], [2]), &device);
        let mask_idx = draw_mask_idx(&config.patch_nums, 0.5, &mut ChaCha8Rng::seed_from_u64(3));
        let trained = |hmar: &Hmar, refine: bool| {
            let (loss, _) = if refine {
                refine_loss(hmar, labels(), x(), x(), &mask_idx, target())
            } else {
                next_scale_loss(hmar, labels(), x(), target())
            };
            GradientsParams::from_grads(loss.backward(), hmar).len()
        };
        let count = |keep: &dyn Fn(&str) -> bool| state.keys().filter(|n| keep(n)).count();
        // The next-scale stage reaches every tensor but the refinement stack's.
        assert_eq!(
            trained(&hmar, false),
            count(&|n| !n.starts_with("hmar.mask_"))
        );
        let frozen = hmar.train_refinement_only();
        assert_eq!(
            trained(&frozen, true),
            count(&|n| n.starts_with("hmar.mask_"))
        );
    }

    #[test]
    fn refinement_stack_starts_as_a_copy_of_the_next_scale_stack() {
        let (_, _, mut state) = tiny_hmar();
        let names_before: Vec<String> = state.keys().cloned().collect();
        let mask_embed = state["hmar.mask_embed.weight"].clone();
        refinement_from_next_scale(&mut state, HMAR_PREFIX);
        let names_after: Vec<String> = state.keys().cloned().collect();
        assert_eq!(names_before, names_after, "no tensor added or lost");
        let mut copied = 0;
        for (name, value) in &state {
            let Some(rest) = name.strip_prefix("hmar.mask_") else {
                continue;
            };
            if rest.starts_with("embed") {
                assert_eq!(value, &mask_embed);
                continue;
            }
            let ns = format!("hmar.ns_{rest}");
            assert_eq!(value, &state[&ns], "{name} vs {ns}");
            copied += 1;
        }
        // One block's tensors and both head tensors (ada_lin weight and bias, head weight
        // and bias).
        assert!(copied > 4, "{copied}");
    }
}
