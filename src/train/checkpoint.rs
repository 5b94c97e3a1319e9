//! Training checkpoints: everything needed to continue a fine-tuning run exactly where it
//! stopped (student weights, Adam moments, the tone generator's RNG position, counters, the
//! best student so far), written atomically so that an interruption never leaves a torn file.
//!
//! A checkpoint protects itself. The file is a JSON envelope
//! `{"format": "dealias checkpoint", "version": 3, "checksum": "fnv1a64:…", "payload": {…}}`
//! whose checksum covers the exact bytes of the payload, so a corrupted or edited file is
//! refused; [`Checkpoint::check`] then checks every field for internal consistency (lengths,
//! finite values, counters, elapsed time), and `Finetuner::resume` checks it against the
//! network and the settings of the run. f64 values in shortest round-trip form are exact, and
//! the settings' fingerprint lets `--resume` refuse a checkpoint of a different run.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::adam::Adam;
use super::clip::NormClip;
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
    /// Validation history: (epoch, step, NMR-S dB, ESR-T dB, score, improved, seconds).
    pub history: Vec<(usize, u64, f64, f64, f64, bool, f64)>,
    /// Wall-clock seconds spent in training before this checkpoint.
    pub elapsed_seconds: f64,
    /// The moving average of the student's weights, when the run averages them.
    pub average: Option<Vec<f64>>,
    /// The gradient-norm clipping state (absent from files written before clipping existed).
    #[serde(default)]
    pub grad_clip: NormClip,
}

/// The checkpoint format version this build writes and reads (2: checksummed envelope;
/// 3: validation times in the history, the weight average).
pub const CHECKPOINT_VERSION: u32 = 3;

/// The `format` value of the envelope.
const FORMAT: &str = "dealias checkpoint";

/// Longest training time a checkpoint may record (a century: anything beyond is corrupt).
const MAX_ELAPSED_SECONDS: f64 = 100.0 * 365.25 * 86400.0;

/// The file around the payload.
#[derive(Deserialize)]
struct Envelope<'a> {
    format: String,
    version: u32,
    checksum: String,
    #[serde(borrow)]
    payload: &'a serde_json::value::RawValue,
}

/// Largest checkpoint file read: four vectors of parameters take about 100 bytes per
/// parameter, so this leaves room for models far larger than any amp model, within a
/// sixteenth of the machine's memory.
fn max_checkpoint_bytes() -> u64 {
    (2u64 << 30).min(crate::limits::machine_memory().0 / 16)
}

/// The bytes of a checkpoint file: `payload` in an envelope of `format` and `version` with
/// the checksum of the payload's exact bytes.
pub(crate) fn seal<T: Serialize>(format: &str, version: u32, payload: &T) -> Result<Vec<u8>> {
    let payload = serde_json::to_string(payload)
        .map_err(|e| Error::Checkpoint(format!("cannot serialise the checkpoint: {e}")))?;
    let sum = crate::io::checksum(payload.as_bytes());
    Ok(format!(
        "{{\"format\":\"{format}\",\"version\":{version},\"checksum\":\"{sum}\",\"payload\":{payload}}}\n"
    )
    .into_bytes())
}

/// The payload of a checkpoint file written by [`seal`], after checking its envelope: the
/// format, the version (saying which version wrote an older or newer file) and the checksum.
pub(crate) fn open<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    format: &str,
    version: u32,
) -> std::result::Result<T, String> {
    let newer_or_older = |v: u64| {
        format!(
            "a checkpoint of format version {v}; this build reads version {version} (start the \
             run afresh)"
        )
    };
    let env: Envelope = match serde_json::from_slice(bytes) {
        Ok(e) => e,
        Err(e) => {
            // Say which version wrote an older or newer file, when it is one of ours.
            let v: Option<u64> = serde_json::from_slice::<serde_json::Value>(bytes)
                .ok()
                .filter(|v| v.get("config_fingerprint").is_some() || v.get("format").is_some())
                .and_then(|v| v.get("version").and_then(serde_json::Value::as_u64));
            return Err(match v {
                Some(v) if v != u64::from(version) => newer_or_older(v),
                _ => format!("not a dealias checkpoint: {e}"),
            });
        }
    };
    if env.format != format {
        return Err(format!("not a {format} file (format \"{}\")", env.format));
    }
    if env.version != version {
        return Err(newer_or_older(u64::from(env.version)));
    }
    let sum = crate::io::checksum(env.payload.get().as_bytes());
    if sum != env.checksum {
        return Err(format!(
            "the checkpoint is corrupt or was edited: its checksum is {} but its content \
             sums to {sum}",
            env.checksum
        ));
    }
    serde_json::from_str(env.payload.get()).map_err(|e| format!("not a dealias checkpoint: {e}"))
}

impl Checkpoint {
    /// The file's bytes: the envelope with the payload's checksum.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        seal(FORMAT, CHECKPOINT_VERSION, self)
    }

    /// Writes the checkpoint atomically (temporary file in the same folder, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::io::write_atomic(path, &self.to_bytes()?)
    }

    /// Parses a checkpoint file's bytes, verifying its checksum and the consistency of its
    /// fields ([`Checkpoint::check`]). Errors are messages about the content.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, String> {
        let ck: Checkpoint = open(bytes, FORMAT, CHECKPOINT_VERSION)?;
        ck.check()?;
        Ok(ck)
    }

    /// Reads a checkpoint (a regular file of bounded size), verifying its checksum and fields.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = crate::io::read_regular_file(path, max_checkpoint_bytes(), "checkpoint")?;
        Self::from_bytes(&bytes).map_err(|m| Error::Checkpoint(format!("{}: {m}", path.display())))
    }

    /// Checks the fields against each other: lengths, finite values, counters in range.
    /// (`Finetuner::resume` checks them against the network and the run's settings.)
    pub fn check(&self) -> std::result::Result<(), String> {
        let n = self.params.len();
        let finite = |v: &[f64], what: &str| match v.iter().position(|x| !x.is_finite()) {
            Some(i) => Err(format!("{what}[{i}] is {} (not finite)", v[i])),
            None => Ok(()),
        };
        if self.version != CHECKPOINT_VERSION {
            return Err(format!(
                "payload version {} (expected {CHECKPOINT_VERSION})",
                self.version
            ));
        }
        if n == 0 {
            return Err("the checkpoint holds no parameters".into());
        }
        finite(&self.params, "params")?;
        for (v, what) in [(&self.adam.m, "adam.m"), (&self.adam.v, "adam.v")] {
            if v.len() != n {
                return Err(format!(
                    "{what} has {} values for {n} parameters (truncated or altered)",
                    v.len()
                ));
            }
            finite(v, what)?;
        }
        if let Some(i) = self.adam.v.iter().position(|&x| x < 0.0) {
            return Err(format!(
                "adam.v[{i}] is negative ({}): a second moment is never",
                self.adam.v[i]
            ));
        }
        let c = &self.adam.config;
        if !(c.lr > 0.0
            && c.lr.is_finite()
            && (0.0..1.0).contains(&c.beta1)
            && (0.0..1.0).contains(&c.beta2)
            && c.eps > 0.0
            && c.eps.is_finite())
        {
            return Err(format!("the Adam settings are out of range: {c:?}"));
        }
        if self.adam.step != self.step {
            return Err(format!(
                "Adam has taken {} steps but the run {} (inconsistent counters)",
                self.adam.step, self.step
            ));
        }
        match (&self.best_score, &self.best_params) {
            (None, None) => {}
            (Some(s), Some(p)) => {
                if !s.is_finite() {
                    return Err(format!("best_score is {s} (not finite)"));
                }
                if p.len() != n {
                    return Err(format!(
                        "best_params has {} values for {n} parameters",
                        p.len()
                    ));
                }
                finite(p, "best_params")?;
            }
            _ => return Err("best_score and best_params must be present together".into()),
        }
        if let Some(a) = self.grad_clip.average {
            if !(a.is_finite() && a >= 0.0) {
                return Err(format!(
                    "the gradient-norm average {a} is not a finite norm"
                ));
            }
        }
        if let Some(a) = &self.average {
            if a.len() != n {
                return Err(format!("average has {} values for {n} parameters", a.len()));
            }
            finite(a, "average")?;
        }
        let mut last_step = 0;
        for (i, &(epoch, step, nmr, esr, score, _, seconds)) in self.history.iter().enumerate() {
            if step > self.step || step < last_step || epoch > self.epoch {
                return Err(format!(
                    "validation {i} is at epoch {epoch}, step {step}, outside the run so far \
                     (epoch {}, step {})",
                    self.epoch, self.step
                ));
            }
            last_step = step;
            finite(&[nmr, esr, score, seconds], &format!("history[{i}]"))?;
        }
        // The best student is the last validation that improved (validations that miss the
        // tone guard never improve, so it need not be the lowest score); its value is the
        // selection criterion's: the objective, or the NMR-S in dB.
        let last = self.history.iter().rev().find(|h| h.5);
        let consistent = match (last, self.best_score) {
            (None, None) => true,
            (Some(h), Some(b)) => b == h.4 || b == h.2,
            _ => false,
        };
        if !consistent {
            return Err(format!(
                "best_score {:?} is not the score of the history's last improvement, nor its \
                 NMR-S (score, NMR-S: {:?})",
                self.best_score,
                last.map(|h| (h.4, h.2))
            ));
        }
        if self.epochs_without_improvement > self.history.len() {
            return Err(format!(
                "{} validations without improvement, but only {} validations",
                self.epochs_without_improvement,
                self.history.len()
            ));
        }
        if !(self.elapsed_seconds >= 0.0 && self.elapsed_seconds <= MAX_ELAPSED_SECONDS) {
            return Err(format!(
                "elapsed_seconds is {}; it must be a time from 0 to {MAX_ELAPSED_SECONDS:.0} s",
                self.elapsed_seconds
            ));
        }
        Ok(())
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
        let ck = sample();
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

    /// A valid checkpoint of 3 parameters after one Adam step.
    pub(crate) fn sample() -> Checkpoint {
        let mut adam = Adam::new(3, AdamConfig::default());
        adam.update(&mut [0.1, 0.2, 0.3], &[1.0 / 3.0, -2.0 / 7.0, 1e-300]);
        Checkpoint {
            version: CHECKPOINT_VERSION,
            config_fingerprint: "x".into(),
            params: vec![0.1 + 0.2, -1.0 / 3.0, 5e-324],
            adam,
            rng: RngState::capture(&rand_chacha::ChaCha8Rng::seed_from_u64(1)),
            step: 1,
            batch_in_epoch: 1,
            epoch: 0,
            best_score: Some(0.25),
            best_params: Some(vec![1.0, 2.0, 3.0]),
            epochs_without_improvement: 0,
            history: vec![(0, 1, -3.0, -20.0, 0.25, true, 12.5)],
            elapsed_seconds: 1.5,
            average: None,
            grad_clip: NormClip::default(),
        }
    }

    /// An edited weight or step count, with the checksum left as it was, is refused.
    #[test]
    fn edited_checkpoints_fail_their_checksum() {
        let bytes = String::from_utf8(sample().to_bytes().unwrap()).unwrap();
        assert!(Checkpoint::from_bytes(bytes.as_bytes()).is_ok());
        for (from, to) in [
            ("\"step\":1,", "\"step\":1000000000000,"),
            ("0.30000000000000004", "0.30000000000000005"),
        ] {
            assert!(bytes.contains(from), "{from}");
            let edited = bytes.replacen(from, to, 1);
            let e = Checkpoint::from_bytes(edited.as_bytes()).unwrap_err();
            assert!(e.contains("corrupt or was edited"), "{e}");
        }
    }

    /// Each inconsistent field is named (files re-checksummed, as a buggy writer would).
    #[test]
    fn inconsistent_fields_are_named() {
        type Edit = fn(&mut Checkpoint);
        let cases: [(Edit, &str); 11] = [
            (
                |c| {
                    c.adam.m.pop();
                },
                "adam.m has 2 values for 3 parameters",
            ),
            (|c| c.adam.v[1] = -1.0, "adam.v[1] is negative"),
            (|c| c.elapsed_seconds = -5.0, "elapsed_seconds is -5"),
            (|c| c.elapsed_seconds = 1e300, "elapsed_seconds is"),
            (|c| c.step = 1_000_000_000_000, "Adam has taken 1 steps"),
            (|c| c.best_params = None, "present together"),
            (|c| c.history[0].1 = 7, "outside the run"),
            (
                |c| c.best_score = Some(0.5),
                "not the score of the history's last improvement",
            ),
            (
                |c| c.average = Some(vec![1.0]),
                "average has 1 values for 3 parameters",
            ),
            (|c| c.epochs_without_improvement = 4, "only 1 validations"),
            (
                |c| c.grad_clip.average = Some(-1.0),
                "gradient-norm average -1 is not a finite norm",
            ),
        ];
        for (edit, expect) in cases {
            let mut c = sample();
            edit(&mut c);
            let e = Checkpoint::from_bytes(&c.to_bytes().unwrap()).unwrap_err();
            assert!(e.contains(expect), "expected {expect:?}, got {e:?}");
        }
    }

    #[test]
    fn older_versions_are_named() {
        let e = Checkpoint::from_bytes(br#"{"version":1,"config_fingerprint":"x"}"#).unwrap_err();
        assert!(e.contains("format version 1"), "{e}");
    }
}
