//! Token sampling on the host: classifier-free guidance, top-k / top-p masks, multinomial
//! draws and the Gumbel "more_smooth" soft tokens, all from one seeded ChaCha stream per
//! image so every backend and platform draws the same numbers (DESIGN §3).

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The guidance weight of scale `si` of `sn`: `t = cfg · si/(sn−1)`.
pub fn cfg_weight(cfg: f64, si: usize, sn: usize) -> f64 {
    cfg * si as f64 / (sn - 1) as f64
}

/// Guided logits `(1+t)·cond − t·uncond`, in place over `cond`.
pub fn guide(cond: &mut [f32], uncond: &[f32], t: f64) {
    let (a, b) = ((1.0 + t) as f32, t as f32);
    for (c, u) in cond.iter_mut().zip(uncond) {
        *c = a * *c - b * u;
    }
}

/// Masks (to −∞) every logit below the k-th largest; ties at the threshold stay. `top_k` of
/// 0 or at least the vocabulary size keeps every token.
pub fn top_k_mask(logits: &mut [f32], top_k: usize) {
    if top_k == 0 || top_k >= logits.len() {
        return;
    }
    let mut sorted = logits.to_vec();
    let kth = logits.len() - top_k;
    sorted.select_nth_unstable_by(kth, f32::total_cmp);
    let threshold = sorted[kth];
    for v in logits.iter_mut() {
        if *v < threshold {
            *v = f32::NEG_INFINITY;
        }
    }
}

/// Keeps the smallest set of most likely tokens whose mass exceeds `top_p` (`0 < top_p`):
/// in ascending order, tokens whose cumulative probability is ≤ 1 − top_p are masked, the
/// most likely token never.
pub fn top_p_mask(logits: &mut [f32], top_p: f64) {
    if top_p <= 0.0 {
        return;
    }
    // Masked tokens would come first in ascending order and add 0 to the cumulative mass,
    // so leaving them out changes nothing; after top-k only k tokens need sorting.
    let mut order: Vec<usize> = (0..logits.len())
        .filter(|&i| logits[i] != f32::NEG_INFINITY)
        .collect();
    if order.is_empty() {
        return;
    }
    order.sort_by(|&a, &b| logits[a].total_cmp(&logits[b]));
    let probs = softmax(logits);
    let mut cum = 0.0;
    let last = order.len() - 1;
    let mut remove = Vec::new();
    for (rank, &i) in order.iter().enumerate() {
        cum += probs[i];
        if cum <= 1.0 - top_p && rank != last {
            remove.push(i);
        }
    }
    for i in remove {
        logits[i] = f32::NEG_INFINITY;
    }
}

/// Softmax in f64 (masked entries give 0).
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    // Masked entries are exactly 0 (libm's `exp(−∞)` is a slow path).
    let exps: Vec<f64> = logits
        .iter()
        .map(|&v| {
            if v == f32::NEG_INFINITY {
                0.0
            } else {
                (v as f64 - max).exp()
            }
        })
        .collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// The noise sequence of one image seed: `len × cvae` standard normals, row-major (the
/// input of the Distilled-Decoding student and of the flow map Ψ).
pub fn dd_noise(seed: u64, len: usize, cvae: usize) -> Vec<f32> {
    TokenRng::new(seed).normals(len * cvae)
}

/// A per-image random stream, identical on every platform for the same seed.
#[derive(Debug, Clone)]
pub struct TokenRng(ChaCha8Rng);

impl TokenRng {
    /// A stream for one image seed.
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// The stream of an image seed's condition draw (its subclass): the key of its token
    /// stream, on ChaCha's stream 1, so that neither draw changes the other.
    pub fn for_condition(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(1);
        Self(rng)
    }

    /// A uniform draw in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// `n` standard-normal draws (the noise of Distilled Decoding and of the flow map Ψ).
    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        use rand_distr::{Distribution, StandardNormal};
        (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut self.0);
                z as f32
            })
            .collect()
    }

    /// Draws an index from (unnormalised, non-negative) probabilities.
    pub fn categorical(&mut self, probs: &[f64]) -> usize {
        let total: f64 = probs.iter().sum();
        let u = self.uniform() * total;
        let mut cum = 0.0;
        let mut last_positive = 0;
        for (i, p) in probs.iter().enumerate() {
            if *p > 0.0 {
                last_positive = i;
                cum += p;
                if u < cum {
                    return i;
                }
            }
        }
        last_positive
    }

    /// A standard Gumbel draw, `−ln(Exp(1))`.
    pub fn gumbel(&mut self) -> f64 {
        let e = -(1.0 - self.uniform()).ln();
        -e.max(f64::MIN_POSITIVE).ln()
    }
}

/// Options of one sampling step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingOptions {
    /// Keep the k most likely tokens (0: all).
    pub top_k: usize,
    /// Nucleus mass (0: off).
    pub top_p: f64,
    /// Gumbel soft tokens instead of hard codes (visualisation only).
    pub more_smooth: bool,
}

/// Applies the top-k mask, then the top-p mask on what it kept, in place (the official
/// `sample_with_top_k_top_p_` filtering).
pub fn filter(logits: &mut [f32], opts: &SamplingOptions) {
    top_k_mask(logits, opts.top_k);
    top_p_mask(logits, opts.top_p);
}

/// Samples one token from a row of logits after the masks; the row keeps the masks so a
/// following [`gumbel_soft`] sees the same support (as the official in-place code does).
pub fn sample_token(logits: &mut [f32], opts: &SamplingOptions, rng: &mut TokenRng) -> usize {
    filter(logits, opts);
    rng.categorical(&softmax(logits))
}

/// `softmax((logits·(1+ratio) + g)/τ)` with Gumbel noise g and τ = max(0.27·(1 − 0.95·ratio), 0.005).
pub fn gumbel_soft(logits: &[f32], ratio: f64, rng: &mut TokenRng) -> Vec<f32> {
    let tau = (0.27 * (1.0 - ratio * 0.95)).max(0.005);
    let noisy: Vec<f32> = logits
        .iter()
        .map(|&l| ((l as f64 * (1.0 + ratio) + rng.gumbel()) / tau) as f32)
        .collect();
    softmax(&noisy).into_iter().map(|p| p as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfg_schedule_is_linear_in_scale() {
        assert_eq!(cfg_weight(1.5, 0, 10), 0.0);
        assert!((cfg_weight(1.5, 9, 10) - 1.5).abs() < 1e-12);
        assert!((cfg_weight(4.0, 1, 3) - 2.0).abs() < 1e-12);
        let mut cond = vec![1.0f32, 2.0];
        guide(&mut cond, &[3.0, -1.0], 0.5);
        assert_eq!(cond, vec![1.5 * 1.0 - 0.5 * 3.0, 1.5 * 2.0 + 0.5]);
    }

    #[test]
    fn top_k_keeps_k_largest() {
        let mut l = vec![0.1, 3.0, -1.0, 2.0, 0.5];
        top_k_mask(&mut l, 2);
        let kept: Vec<usize> = (0..5).filter(|&i| l[i].is_finite()).collect();
        assert_eq!(kept, vec![1, 3]);
        let mut all = vec![1.0, 2.0];
        top_k_mask(&mut all, 0);
        assert!(all.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // probabilities 0.5, 0.3, 0.2 (as logits of their logs)
        let base: Vec<f32> = [0.5f64, 0.3, 0.2].iter().map(|p| p.ln() as f32).collect();
        let mut l = base.clone();
        top_p_mask(&mut l, 0.75);
        assert!(l[0].is_finite() && l[1].is_finite() && !l[2].is_finite());
        let mut l = base.clone();
        top_p_mask(&mut l, 0.4);
        assert!(l[0].is_finite() && !l[1].is_finite() && !l[2].is_finite());
        let mut l = base;
        top_p_mask(&mut l, 0.0);
        assert!(l.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn seeded_streams_repeat_and_differ() {
        let draw = |seed| {
            let mut r = TokenRng::new(seed);
            (0..8).map(|_| r.uniform()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        // Platform independence: the first draw of seed 0 is a fixed number.
        let first = TokenRng::new(0).uniform();
        assert!((0.0..1.0).contains(&first));
        assert_eq!(first.to_bits(), draw(0)[0].to_bits());
    }

    #[test]
    fn categorical_frequencies_follow_probabilities() {
        let mut rng = TokenRng::new(1);
        let probs = [0.1, 0.6, 0.0, 0.3];
        let mut counts = [0usize; 4];
        let n = 20000;
        for _ in 0..n {
            counts[rng.categorical(&probs)] += 1;
        }
        assert_eq!(counts[2], 0);
        for (c, p) in counts.iter().zip(probs) {
            assert!((*c as f64 / n as f64 - p).abs() < 0.015, "{counts:?}");
        }
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut rng = TokenRng::new(3);
        let opts = SamplingOptions {
            top_k: 1,
            top_p: 0.0,
            more_smooth: false,
        };
        for _ in 0..50 {
            let mut l = vec![0.3, 0.2, 0.9, -4.0];
            assert_eq!(sample_token(&mut l, &opts, &mut rng), 2);
        }
    }

    #[test]
    fn gumbel_soft_is_a_distribution_on_the_support() {
        let mut rng = TokenRng::new(5);
        let p = gumbel_soft(&[0.0, 1.0, f32::NEG_INFINITY], 0.5, &mut rng);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert_eq!(p[2], 0.0);
    }
}
