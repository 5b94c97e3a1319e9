//! Learning-rate schedules for fine-tuning.
//!
//! The paper trains with a constant Adam learning rate of 5e-4 for 40,000 steps (sec. 2.5).
//! On a budget of minutes the rate must be higher, and a higher rate needs two things the
//! paper's does not: a linear warm-up, because Adam's first steps move every parameter by
//! about `lr` regardless of its gradient's size (its second-moment estimate is still one
//! sample), which knocks a trained model off its tone before the moments settle; and a decay
//! to a small rate at the end of the budget, so that the last steps refine instead of
//! jittering around the optimum (a half cosine, Loshchilov & Hutter, "SGDR", ICLR 2017).

/// How the rate falls after the warm-up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrDecay {
    /// Constant after the warm-up (the paper's schedule, with no warm-up).
    Constant,
    /// A half cosine from the peak rate down to `floor ×` the peak at the run's horizon
    /// (its step budget), constant at the floor beyond it.
    Cosine { floor: f64 },
}

/// A warm-up followed by a decay; a factor on Adam's peak learning rate per step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LrSchedule {
    /// Steps over which the rate rises linearly from `peak / warmup_steps` to the peak.
    pub warmup_steps: u64,
    pub decay: LrDecay,
}

impl LrSchedule {
    /// The paper's: the peak rate from the first step to the last.
    pub const CONSTANT: LrSchedule = LrSchedule {
        warmup_steps: 0,
        decay: LrDecay::Constant,
    };

    /// The factor on the peak rate for the update after `step` completed updates, in a run
    /// of `horizon` steps (`None`: unknown, so a cosine holds the peak).
    pub fn factor(&self, step: u64, horizon: Option<u64>) -> f64 {
        let n = step + 1;
        if n <= self.warmup_steps {
            return n as f64 / self.warmup_steps as f64;
        }
        match (self.decay, horizon) {
            (LrDecay::Constant, _) | (LrDecay::Cosine { .. }, None) => 1.0,
            (LrDecay::Cosine { floor }, Some(h)) => {
                let span = h.saturating_sub(self.warmup_steps).max(1) as f64;
                let p = ((n - self.warmup_steps) as f64 / span).min(1.0);
                floor + (1.0 - floor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
        }
    }

    /// Checks the settings; the message states the accepted range.
    pub fn check(&self) -> Result<(), String> {
        match self.decay {
            LrDecay::Cosine { floor } if !(0.0..=1.0).contains(&floor) => Err(format!(
                "the cosine decay's floor {floor} must be a fraction of the peak rate in [0, 1]"
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_is_one_everywhere() {
        for s in [0, 1, 10, 1_000_000] {
            assert_eq!(LrSchedule::CONSTANT.factor(s, Some(100)), 1.0);
            assert_eq!(LrSchedule::CONSTANT.factor(s, None), 1.0);
        }
    }

    /// Warm-up: 1/W, 2/W, …, 1 over the first W updates; then the cosine's closed form:
    /// peak right after the warm-up, (1 + floor)/2 half-way, the floor at the horizon.
    #[test]
    fn warmup_then_cosine_closed_form() {
        let s = LrSchedule {
            warmup_steps: 4,
            decay: LrDecay::Cosine { floor: 0.1 },
        };
        let h = Some(104);
        assert_eq!(s.factor(0, h), 0.25);
        assert_eq!(s.factor(2, h), 0.75);
        assert_eq!(s.factor(3, h), 1.0);
        // Update n = step + 1 = 54 is half-way through the 100 decay steps.
        assert!((s.factor(53, h) - 0.55).abs() < 1e-15);
        // A quarter of the way: floor + (1 - floor)(1 + cos(π/4))/2.
        let q = 0.1 + 0.9 * 0.5 * (1.0 + std::f64::consts::FRAC_1_SQRT_2);
        assert!((s.factor(28, h) - q).abs() < 1e-15);
        assert!((s.factor(103, h) - 0.1).abs() < 1e-15);
        assert!((s.factor(10_000, h) - 0.1).abs() < 1e-15);
        // Unknown horizon: the peak after the warm-up.
        assert_eq!(s.factor(50, None), 1.0);
        // Monotone after the warm-up.
        let f: Vec<f64> = (3..104).map(|i| s.factor(i, h)).collect();
        assert!(f.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn floor_out_of_range_is_refused() {
        let s = LrSchedule {
            warmup_steps: 0,
            decay: LrDecay::Cosine { floor: 1.5 },
        };
        assert!(s.check().unwrap_err().contains("[0, 1]"));
    }
}
