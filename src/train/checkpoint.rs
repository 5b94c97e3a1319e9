//! Training checkpoints: everything needed to continue a fine-tuning run exactly where it
//! stopped (student weights, Adam moments, the tone generator's RNG position, counters, the
//! best student so far), written atomically so that an interruption never leaves a torn file.
//!
//! Stored as JSON (f64 values in shortest round-trip form are exact), with the settings the
//! run was started with, so that `--resume` can refuse a checkpoint of a different run.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::adam::Adam;
use crate::{Error, Result};

/// The tone generator's position: ChaCha seed and word position (see `rand_chacha`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    pub seed: [u8; 32],
    pub word_pos: u128,
}

impl RngState {
    /// Captures the state of a ChaCha8 generator.
    pub fn capture(rng: &rand_chacha::ChaCha8Rng) -> Self {
        RngState {
            seed: rng.get_seed(),
            word_pos: rng.get_word_pos(),
        }
    }

    /// Rebuilds the generator at the captured position.
    pub fn restore(&self) -> rand_chacha::ChaCha8Rng {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::from_seed(self.seed);
        rng.set_word_pos(self.word_pos);
        rng
    }
}

/// A resumable snapshot of a fine-tuning run, taken between batches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Format version of this file.
    pub version: u32,
    /// A fingerprint of the settings that determine the result (see `FinetuneConfig`).
    pub config_fingerprint: String,
    /// Student parameters (canonical order of `Network::params`).
    pub params: Vec<f64>,
    pub adam: Adam,
    pub rng: RngState,
    /// Optimiser steps taken.
    pub step: u64,
    /// Batches completed in the current epoch, and epochs completed.
    pub batch_in_epoch: usize,
    pub epoch: usize,
    /// Best validation score so far and the parameters that reached it.
    pub best_score: Option<f64>,
    pub best_params: Option<Vec<f64>>,
    pub epochs_without_improvement: usize,
    /// Validation history: (epoch, step, NMR-S mean dB, ESR-T mean dB, score, improved).
    pub history: Vec<(usize, u64, f64, f64, f64, bool)>,
    /// Wall-clock seconds spent in training before this checkpoint.
    pub elapsed_seconds: f64,
}

/// The checkpoint format version this build writes and reads.
pub const CHECKPOINT_VERSION: u32 = 1;

impl Checkpoint {
    /// Writes the checkpoint atomically (temporary file in the same folder, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec(self)
            .map_err(|e| Error::InvalidArgument(format!("cannot serialise checkpoint: {e}")))?;
        crate::io::write_atomic(path, &json)
    }

    /// Reads a checkpoint, checking its version.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let ck: Checkpoint = serde_json::from_slice(&bytes).map_err(|e| Error::ModelFile {
            path: path.into(),
            message: format!("not a dealias checkpoint: {e}"),
        })?;
        if ck.version != CHECKPOINT_VERSION {
            return Err(Error::ModelFile {
                path: path.into(),
                message: format!(
                    "checkpoint version {} (this build reads version {CHECKPOINT_VERSION})",
                    ck.version
                ),
            });
        }
        Ok(ck)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::adam::AdamConfig;
    use rand::{Rng, SeedableRng};

    #[test]
    fn rng_state_round_trips_mid_stream() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..13 {
            rng.gen::<f64>();
        }
        let st = RngState::capture(&rng);
        let a: Vec<f64> = (0..5).map(|_| rng.gen()).collect();
        let mut back = st.restore();
        let b: Vec<f64> = (0..5).map(|_| back.gen()).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn checkpoint_round_trips_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.json");
        let mut adam = Adam::new(3, AdamConfig::default());
        adam.update(&mut [0.1, 0.2, 0.3], &[1.0 / 3.0, -2.0 / 7.0, 1e-300]);
        let ck = Checkpoint {
            version: CHECKPOINT_VERSION,
            config_fingerprint: "x".into(),
            params: vec![0.1 + 0.2, -1.0 / 3.0, 5e-324],
            adam,
            rng: RngState::capture(&rand_chacha::ChaCha8Rng::seed_from_u64(1)),
            step: 12,
            batch_in_epoch: 2,
            epoch: 1,
            best_score: Some(-12.5),
            best_params: Some(vec![1.0, 2.0, 3.0]),
            epochs_without_improvement: 0,
            history: vec![(0, 10, -3.0, -20.0, 0.25, true)],
            elapsed_seconds: 1.5,
        };
        ck.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), ck);
    }

    #[test]
    fn foreign_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ck.json");
        std::fs::write(&path, b"{\"hello\": 1}").unwrap();
        let err = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(err.contains("not a dealias checkpoint"), "{err}");
    }
}
