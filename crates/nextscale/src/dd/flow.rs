//! The flow-matching map Ψ of Distilled Decoding: a deterministic map from a Gaussian
//! noise vector and a distribution `p` over the codebook to a token, whose push-forward of
//! `N(0, I)` is exactly `p` (in the limit of fine ODE steps).
//!
//! The probability path `x_t = t·x₁ + (1 − t)·x₀`, `x₀ ~ N(0, I)`, `x₁ ~ Σᵥ pᵥ δ(eᵥ)` has the
//! closed-form marginal velocity `v(x, t) = (Σᵥ wᵥ(x, t) eᵥ − x) / (1 − t)` with the posterior
//! `wᵥ ∝ pᵥ · exp(−‖x − t·eᵥ‖² / (2(1 − t)²))`. Integrating it from t = 0 carries the noise
//! to one codebook vector; its index is the token.

/// Ψ with a fixed number of Euler steps over a codebook `[V, C]`.
#[derive(Debug, Clone)]
pub struct FlowMap {
    codebook: Vec<f64>,
    vocab: usize,
    dim: usize,
    steps: usize,
}

impl FlowMap {
    /// A map over codebook rows `codebook_vc` (`V·C` values, row-major) with `steps` Euler
    /// steps (at least 1).
    pub fn new(codebook_vc: &[f32], dim: usize, steps: usize) -> Self {
        Self {
            codebook: codebook_vc.iter().map(|&v| v as f64).collect(),
            vocab: codebook_vc.len() / dim.max(1),
            dim,
            steps: steps.max(1),
        }
    }

    /// Codebook size V.
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn row(&self, v: usize) -> &[f64] {
        &self.codebook[v * self.dim..(v + 1) * self.dim]
    }

    /// Posterior weights `w(x, t)` over the support (the codes with `p > 0`).
    fn posterior(&self, x: &[f64], t: f64, support: &[(usize, f64)]) -> Vec<f64> {
        let s2 = 2.0 * (1.0 - t) * (1.0 - t);
        let logits: Vec<f64> = support
            .iter()
            .map(|&(v, log_p)| {
                let d2: f64 = x
                    .iter()
                    .zip(self.row(v))
                    .map(|(xi, ei)| (xi - t * ei).powi(2))
                    .sum();
                log_p - d2 / s2
            })
            .collect();
        let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = logits.iter().map(|l| (l - max).exp()).collect();
        let z: f64 = w.iter().sum();
        w.into_iter().map(|wi| wi / z).collect()
    }

    /// The token Ψ maps `noise` (`C` values) to under `probs` (`V` values summing to 1).
    pub fn token(&self, noise: &[f32], probs: &[f64]) -> usize {
        let support: Vec<(usize, f64)> = probs
            .iter()
            .enumerate()
            .filter(|(_, p)| **p > 0.0)
            .map(|(v, p)| (v, p.ln()))
            .collect();
        if support.len() < 2 {
            return support.first().map_or(0, |s| s.0);
        }
        let mut x: Vec<f64> = noise.iter().map(|&n| n as f64).collect();
        let dt = 1.0 / self.steps as f64;
        for i in 0..self.steps {
            let t = i as f64 * dt;
            let w = self.posterior(&x, t, &support);
            let mut mean = vec![0.0; self.dim];
            for (&(v, _), wv) in support.iter().zip(&w) {
                for (m, e) in mean.iter_mut().zip(self.row(v)) {
                    *m += wv * e;
                }
            }
            for (xi, mi) in x.iter_mut().zip(&mean) {
                *xi += (mi - *xi) / (1.0 - t) * dt;
            }
        }
        // x is now (numerically) a codebook row; take the most probable one near it.
        let w = self.posterior(&x, 1.0 - dt, &support);
        support
            .iter()
            .zip(&w)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(s, _)| s.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal, Uniform};

    fn setup(seed: u64, vocab: usize, dim: usize) -> (FlowMap, Vec<f64>, ChaCha8Rng) {
        setup_scaled(seed, vocab, dim, 1.0, 64)
    }

    /// A random codebook of norm ~`scale`·√dim and a random p with one zero entry.
    fn setup_scaled(
        seed: u64,
        vocab: usize,
        dim: usize,
        scale: f32,
        steps: usize,
    ) -> (FlowMap, Vec<f64>, ChaCha8Rng) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let normal = Normal::new(0.0f32, scale).unwrap();
        let codebook: Vec<f32> = (0..vocab * dim).map(|_| normal.sample(&mut rng)).collect();
        let uniform = Uniform::new(0.0f64, 1.0).unwrap();
        let mut p: Vec<f64> = (0..vocab)
            .map(|_| uniform.sample(&mut rng).powi(2))
            .collect();
        p[0] = 0.0;
        let z: f64 = p.iter().sum();
        p.iter_mut().for_each(|v| *v /= z);
        (FlowMap::new(&codebook, dim, steps), p, rng)
    }

    #[test]
    fn token_frequencies_follow_p() {
        // Unit-scale codes in 4-d (64 steps), and small codes in 16-d, as a trained VQ-VAE
        // has them, with the 32 steps `distill-data` uses.
        for (seed, dim, scale, steps) in [(0, 4, 1.0, 64), (1, 4, 1.0, 64), (2, 16, 0.1, 32)] {
            let (map, p, mut rng) = setup_scaled(seed, 12, dim, scale, steps);
            let normal = Normal::new(0.0f32, 1.0).unwrap();
            let n = 4000;
            let mut counts = vec![0usize; p.len()];
            for _ in 0..n {
                let noise: Vec<f32> = (0..dim).map(|_| normal.sample(&mut rng)).collect();
                counts[map.token(&noise, &p)] += 1;
            }
            assert_eq!(counts[0], 0, "a zero-probability code was chosen");
            // Pearson chi-square over the codes with p > 0 (df = 10); the 0.999 quantile
            // of χ²(10) is 29.6.
            let chi2: f64 = (1..p.len())
                .map(|v| {
                    let e = p[v] * n as f64;
                    (counts[v] as f64 - e).powi(2) / e
                })
                .sum();
            assert!(
                chi2 < 29.6,
                "seed {seed}: chi2 {chi2}, counts {counts:?}, p {p:?}"
            );
        }
    }

    #[test]
    fn map_is_deterministic_and_one_hot_p_is_exact() {
        let (map, p, _) = setup(7, 8, 3);
        let noise = [0.3f32, -1.2, 0.8];
        let t = map.token(&noise, &p);
        assert!((0..5).all(|_| map.token(&noise, &p) == t));
        let mut one_hot = vec![0.0; 8];
        one_hot[5] = 1.0;
        assert_eq!(map.token(&noise, &one_hot), 5);
    }
}
