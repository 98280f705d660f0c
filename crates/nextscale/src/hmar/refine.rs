//! HMAR's masked refinement on the host: how confident each sampled token is, which tokens
//! are re-masked, and how the mask schedule spends the refinement passes.

use crate::sampler::softmax;

/// The guidance weight of a refinement pass over the guidance strength: the official
/// `ratio_step` is hard-coded to 1e-6, so refinement logits are almost the conditional ones.
pub const REFINE_CFG_RATIO: f64 = 1e-6;

/// The probability of `token` under the filtered (top-k/top-p masked) logits it was drawn
/// from, renormalised.
pub fn confidence(filtered_logits: &[f32], token: usize) -> f64 {
    softmax(filtered_logits)[token]
}

/// The indices of the `n` smallest confidences, least confident first; ties keep the
/// earlier index first (a stable ascending argsort, which is PyTorch's CPU order for the
/// rows of at most 16 that the fixtures tie on).
pub fn least_confident(conf: &[f64], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..conf.len()).collect();
    order.sort_by(|&a, &b| conf[a].total_cmp(&conf[b]));
    order.truncate(n);
    order
}

/// How many tokens stay masked after pass `step` (0: the next-scale pass) of a scale with
/// this schedule entry: the tokens not yet fixed, `sum(s[step+1..])`.
pub fn still_masked(schedule: &[usize], step: usize) -> usize {
    schedule.iter().skip(step + 1).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_is_the_renormalised_probability_of_the_token() {
        // After masking, two tokens remain with probabilities e/(e+1) and 1/(e+1).
        let row = [1.0, f32::NEG_INFINITY, 0.0];
        let e = std::f64::consts::E;
        assert!((confidence(&row, 0) - e / (e + 1.0)).abs() < 1e-12);
        assert!((confidence(&row, 2) - 1.0 / (e + 1.0)).abs() < 1e-12);
        assert_eq!(confidence(&row, 1), 0.0);
    }

    #[test]
    fn least_confident_is_a_stable_ascending_argsort() {
        assert_eq!(least_confident(&[0.5, 0.1, 0.9, 0.1], 3), vec![1, 3, 0]);
        // All tied (greedy sampling): raster order.
        assert_eq!(least_confident(&[1.0; 6], 4), vec![0, 1, 2, 3]);
        assert!(least_confident(&[0.3, 0.2], 0).is_empty());
    }

    #[test]
    fn the_schedule_fixes_tokens_pass_by_pass() {
        // 9 tokens: 1 fixed by the next-scale pass, 2 after pass 1, 6 after pass 2.
        let s = [1, 2, 6];
        assert_eq!(still_masked(&s, 0), 8);
        assert_eq!(still_masked(&s, 1), 6);
        assert_eq!(still_masked(&s, 2), 0);
        assert_eq!(still_masked(&[16], 0), 0);
    }
}
