//! Gradient-norm clipping relative to the run's own recent gradients (not in the paper; an
//! option of the fast preset's search, see the README's "Presets and budget").
//!
//! A fixed norm threshold would depend on the model, the loss weights and the batch, which a
//! user cannot know; the threshold here is `factor` times a moving average of the (clipped)
//! norms of the previous steps, so it adapts to the run. Adam divides by the square root of
//! the second moment, so a single gradient far above the recent ones moves every parameter by
//! up to `lr / √(1 − β₂) ≈ 32 lr` over the next steps; clipping caps that spike while leaving
//! ordinary steps untouched.

use serde::{Deserialize, Serialize};

/// Decay per step of the moving average of gradient norms (about the last 50 steps).
pub const NORM_AVERAGE_DECAY: f64 = 0.98;

/// The clipping state: the moving average of the gradient norms so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NormClip {
    /// `None` before the first step (which is never clipped: it has nothing to compare with).
    pub average: Option<f64>,
}

impl NormClip {
    /// Scales `grad` down so that its Euclidean norm is at most `factor` times the average
    /// norm, then updates the average with the norm actually applied. Returns the scale used
    /// (1 when nothing was clipped).
    pub fn apply(&mut self, grad: &mut [f64], factor: f64) -> f64 {
        let norm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
        let limit = self.average.map_or(f64::INFINITY, |a| factor * a);
        let scale = if norm > limit { limit / norm } else { 1.0 };
        if scale < 1.0 {
            grad.iter_mut().for_each(|g| *g *= scale);
        }
        let applied = norm * scale;
        self.average = Some(match self.average {
            None => applied,
            Some(a) => NORM_AVERAGE_DECAY * a + (1.0 - NORM_AVERAGE_DECAY) * applied,
        });
        scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(g: &[f64]) -> f64 {
        g.iter().map(|v| v * v).sum::<f64>().sqrt()
    }

    /// The first step passes unchanged and sets the average to its norm; an ordinary step
    /// passes; a spike is scaled to exactly factor x average, with its direction kept; the
    /// average then moves by (1 - decay) of the clipped norm.
    #[test]
    fn clips_spikes_to_a_multiple_of_the_recent_norms() {
        let mut c = NormClip::default();
        let mut g = vec![3.0, 4.0]; // norm 5
        assert_eq!(c.apply(&mut g, 2.0), 1.0);
        assert_eq!(g, vec![3.0, 4.0]);
        assert_eq!(c.average, Some(5.0));

        let mut g = vec![6.0, 8.0]; // norm 10 = the limit 2 x 5: not clipped
        assert_eq!(c.apply(&mut g, 2.0), 1.0);
        let avg = 0.98 * 5.0 + 0.02 * 10.0;
        assert!((c.average.unwrap() - avg).abs() < 1e-15);

        let mut g = vec![0.0, -1000.0];
        let scale = c.apply(&mut g, 2.0);
        let limit = 2.0 * avg;
        assert!((norm(&g) - limit).abs() < 1e-12, "{} vs {limit}", norm(&g));
        assert!((scale - limit / 1000.0).abs() < 1e-15);
        assert_eq!(g[0], 0.0);
        assert!(g[1] < 0.0);
        let avg2 = 0.98 * avg + 0.02 * limit;
        assert!((c.average.unwrap() - avg2).abs() < 1e-12);
    }
}
