//! Linear warm-up then cosine decay of the learning rate.

/// A warm-up + cosine learning-rate schedule over a fixed number of steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// Peak learning rate, reached at the end of warm-up.
    pub peak: f64,
    /// Final learning rate.
    pub min: f64,
    /// Warm-up steps.
    pub warmup: usize,
    /// Total steps.
    pub total: usize,
}

impl LrSchedule {
    /// The schedule every trainer here uses: warm-up over the first 5% of `total` steps to
    /// `peak`, then cosine decay to `min_fraction · peak`.
    pub fn warmup_cosine(peak: f64, min_fraction: f64, total: usize) -> Self {
        Self {
            peak,
            min: peak * min_fraction,
            warmup: (total / 20).max(1),
            total,
        }
    }

    /// The learning rate of step `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1) as f64;
        let progress = ((step - self.warmup) as f64 / span).min(1.0);
        self.min + 0.5 * (self.peak - self.min) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_then_decays_to_min() {
        let s = LrSchedule {
            peak: 1e-3,
            min: 1e-5,
            warmup: 10,
            total: 110,
        };
        assert!((s.at(0) - 1e-4).abs() < 1e-12);
        assert!((s.at(9) - 1e-3).abs() < 1e-12);
        assert!((s.at(10) - 1e-3).abs() < 1e-12);
        assert!((s.at(60) - (1e-5 + 0.5 * (1e-3 - 1e-5))).abs() < 1e-12);
        assert!((s.at(110) - 1e-5).abs() < 1e-12);
        assert!((1..110).all(|i| s.at(i) <= s.at(i - 1) || i <= 10));
    }

    #[test]
    fn warmup_cosine_warms_up_over_a_twentieth() {
        let s = LrSchedule::warmup_cosine(1e-3, 0.02, 200);
        assert_eq!((s.peak, s.warmup, s.total), (1e-3, 10, 200));
        assert!((s.min - 2e-5).abs() < 1e-15);
        assert_eq!(LrSchedule::warmup_cosine(1e-3, 0.02, 10).warmup, 1);
    }
}
