//! Sample-quality statistics in a feature space: Fréchet distance, KID, k-NN precision
//! and recall, and nearest-neighbour distances (memorisation). Rows are samples.

use nalgebra::{DMatrix, DVector, SymmetricEigen};

/// Class-weighted mean and covariance of feature rows (`weights` sum to 1).
fn moments(x: &[Vec<f64>], weights: &[f64]) -> (DVector<f64>, DMatrix<f64>) {
    let d = x[0].len();
    let mut mean = DVector::zeros(d);
    for (row, &w) in x.iter().zip(weights) {
        mean += DVector::from_column_slice(row) * w;
    }
    let mut cov = DMatrix::zeros(d, d);
    let mut w2 = 0.0;
    for (row, &w) in x.iter().zip(weights) {
        let c = DVector::from_column_slice(row) - &mean;
        cov += &c * c.transpose() * w;
        w2 += w * w;
    }
    // Unbiased weighted covariance.
    (mean, cov / (1.0 - w2))
}

/// Symmetric PSD square root by eigen-decomposition (negative eigenvalues clipped).
fn sqrtm_psd(m: &DMatrix<f64>) -> DMatrix<f64> {
    let eig = SymmetricEigen::new((m + m.transpose()) * 0.5);
    let s = eig.eigenvalues.map(|v| v.max(0.0).sqrt());
    &eig.eigenvectors * DMatrix::from_diagonal(&s) * eig.eigenvectors.transpose()
}

/// Weights giving every class the same total mass.
pub fn class_weights(labels: &[usize]) -> Vec<f64> {
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    let mut count = vec![0usize; classes];
    for &l in labels {
        count[l] += 1;
    }
    let present = count.iter().filter(|&&c| c > 0).count() as f64;
    labels
        .iter()
        .map(|&l| 1.0 / (count[l] as f64 * present))
        .collect()
}

/// Fréchet distance between Gaussians fitted to two weighted feature sets:
/// `‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 (Σ₁^½ Σ₂ Σ₁^½)^½)`.
pub fn frechet_distance(a: &[Vec<f64>], wa: &[f64], b: &[Vec<f64>], wb: &[f64]) -> f64 {
    let (mu_a, cov_a) = moments(a, wa);
    let (mu_b, cov_b) = moments(b, wb);
    let root_a = sqrtm_psd(&cov_a);
    let cross = sqrtm_psd(&(&root_a * &cov_b * &root_a));
    (mu_a - mu_b).norm_squared() + cov_a.trace() + cov_b.trace() - 2.0 * cross.trace()
}

/// Kernel Inception Distance: the unbiased weighted MMD² with the cubic polynomial kernel
/// `k(x, y) = (x·y / d + 1)³`, diagonal terms excluded.
pub fn kid(a: &[Vec<f64>], wa: &[f64], b: &[Vec<f64>], wb: &[f64]) -> f64 {
    let d = a[0].len() as f64;
    let k =
        |x: &[f64], y: &[f64]| (x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>() / d + 1.0).powi(3);
    let within = |x: &[Vec<f64>], w: &[f64]| {
        let (mut s, mut norm) = (0.0, 0.0);
        for i in 0..x.len() {
            for j in 0..x.len() {
                if i != j {
                    s += w[i] * w[j] * k(&x[i], &x[j]);
                    norm += w[i] * w[j];
                }
            }
        }
        s / norm
    };
    let mut cross = 0.0;
    for (x, &p) in a.iter().zip(wa) {
        for (y, &q) in b.iter().zip(wb) {
            cross += p * q * k(x, y);
        }
    }
    within(a, wa) + within(b, wb) - 2.0 * cross
}

fn distances(a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    a.iter()
        .map(|x| {
            b.iter()
                .map(|y| {
                    x.iter()
                        .zip(y)
                        .map(|(p, q)| (p - q) * (p - q))
                        .sum::<f64>()
                        .sqrt()
                })
                .collect()
        })
        .collect()
}

/// Distance of every row to its k-th nearest neighbour in its own set.
fn knn_radii(x: &[Vec<f64>], k: usize) -> Vec<f64> {
    distances(x, x)
        .into_iter()
        .map(|mut row| {
            row.sort_by(f64::total_cmp);
            // row[0] is the point itself.
            row[k.min(row.len() - 1)]
        })
        .collect()
}

/// k-NN precision and recall (Kynkäänniemi et al. 2019): the share of generated samples
/// inside some real sample's k-NN ball, and of real samples inside some generated one's.
pub fn precision_recall(real: &[Vec<f64>], fake: &[Vec<f64>], k: usize) -> (f64, f64) {
    let real_r = knn_radii(real, k);
    let fake_r = knn_radii(fake, k);
    let d_fr = distances(fake, real);
    let precision = d_fr
        .iter()
        .filter(|row| row.iter().zip(&real_r).any(|(d, r)| d <= r))
        .count() as f64
        / fake.len() as f64;
    let recall = (0..real.len())
        .filter(|&j| (0..fake.len()).any(|i| d_fr[i][j] <= fake_r[i]))
        .count() as f64
        / real.len() as f64;
    (precision, recall)
}

/// Distance of every row of `x` to its nearest row of `reference`.
pub fn nearest_distances(x: &[Vec<f64>], reference: &[Vec<f64>]) -> Vec<f64> {
    distances(x, reference)
        .into_iter()
        .map(|row| row.into_iter().fold(f64::INFINITY, f64::min))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    fn gaussian(n: usize, d: usize, mean: f64, std: f64, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let normal = Normal::new(mean, std).unwrap();
        (0..n)
            .map(|_| (0..d).map(|_| normal.sample(&mut rng)).collect())
            .collect()
    }

    fn uniform(n: usize) -> Vec<f64> {
        vec![1.0 / n as f64; n]
    }

    #[test]
    fn frechet_matches_the_closed_form_for_gaussians() {
        // N(0, I) vs N(1, 4I) in d=4: ‖μ‖² = 4, traces 4 + 16 − 2·tr(2I) = 4 → FD = 8.
        let a = gaussian(4000, 4, 0.0, 1.0, 1);
        let b = gaussian(4000, 4, 1.0, 2.0, 2);
        let fd = frechet_distance(&a, &uniform(4000), &b, &uniform(4000));
        assert!((fd - 8.0).abs() < 0.4, "{fd}");
        let same = frechet_distance(&a, &uniform(4000), &a, &uniform(4000));
        assert!(same.abs() < 1e-6, "{same}");
    }

    #[test]
    fn kid_is_near_zero_for_one_distribution_and_positive_otherwise() {
        let a = gaussian(300, 8, 0.0, 1.0, 3);
        let b = gaussian(300, 8, 0.0, 1.0, 4);
        let c = gaussian(300, 8, 0.5, 1.0, 5);
        let w = uniform(300);
        assert!(kid(&a, &w, &b, &w).abs() < 0.02);
        assert!(kid(&a, &w, &c, &w) > 0.1);
    }

    #[test]
    fn precision_recall_detect_mode_collapse() {
        let real = gaussian(400, 2, 0.0, 1.0, 6);
        let same = gaussian(400, 2, 0.0, 1.0, 7);
        let (p, r) = precision_recall(&real, &same, 3);
        assert!(p > 0.9 && r > 0.9, "{p} {r}");
        // Collapsed: every fake near one point → high precision, low recall.
        let collapsed = gaussian(400, 2, 0.0, 0.05, 8);
        let (p, r) = precision_recall(&real, &collapsed, 3);
        assert!(p > 0.9 && r < 0.3, "{p} {r}");
    }

    #[test]
    fn class_weights_balance_classes() {
        let w = class_weights(&[0, 0, 0, 1]);
        assert!((w[0] * 3.0 - 0.5).abs() < 1e-12 && (w[3] - 0.5).abs() < 1e-12);
    }
}
