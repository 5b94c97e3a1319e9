//! Training: teacher–student fine-tuning (paper sec. 2.5, spec secs. 1, 4, 6) and pre-training
//! from audio (sec. 3.2): the optimiser, checkpoints, the training loops, and the planning and
//! records of batch runs over a library.

pub mod adam;
pub mod batch;
pub mod checkpoint;
pub mod clip;
pub mod finetune;
pub mod lr;
pub mod pretrain;

use crate::models::Real;

/// Splits `n` items into `parts` contiguous ranges of nearly equal size.
pub(crate) fn split(n: usize, parts: usize) -> Vec<std::ops::Range<usize>> {
    let parts = parts.clamp(1, n.max(1));
    (0..parts)
        .map(|i| (i * n / parts)..((i + 1) * n / parts))
        .collect()
}

/// Sums per-thread gradients in a fixed order (so that a run is deterministic) into f64.
pub(crate) fn sum_in_order<'a, T: Real>(
    parts: impl Iterator<Item = &'a [T]>,
    n: usize,
) -> Vec<f64> {
    let mut sum = vec![0.0; n];
    for part in parts {
        for (s, &v) in sum.iter_mut().zip(part) {
            *s += v.to_f64_exact();
        }
    }
    sum
}
