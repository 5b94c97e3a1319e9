//! The plugin-visible calibration of a NAM file, `metadata.loudness` and `metadata.gain`, as
//! the official trainer defines them (neural-amp-modeler, `nam/models/base.py`:
//! `_metadata_loudness` and `_metadata_gain`), so that a fine-tuned student states its own:
//!
//! - loudness: `20 log10 rms(y)` in dB, with `y` the model's output (from its initial state)
//!   for the trainer's standard input `loudness_input.wav`. NAM's plugin uses it for its
//!   "Normalize output" switch, so a stale value shifts the student's level there.
//! - gain, "how much gain / compression does the model seem to have": with `r(g)` the output
//!   RMS for the input scaled by `g = 0, 0.1, ..., 1`, `(Σ r(g) - m) / m` clipped to `[0, 1]`,
//!   where `m = 5.5 r(1)` is the sum for a perfectly linear model; a model whose output level
//!   does not depend on its input level gives 1.
//!
//! The standard input (one second at 48 kHz, 24-bit, mono; MIT licence, see
//! `assets/nam/LICENSE`) is embedded. The trainer plays its samples as they are, whatever the
//! model's rate, and so does this module.
//!
//! A container (NAM `SlimmableContainer`) states the calibration of its last (full-size)
//! submodel at its top level, as the trainer's container export writes it; [`recalibrate`]
//! keeps it so.

use serde_json::Value;

use crate::formats::{Format, ModelFile};
use crate::models::Network;
use crate::{Error, Result};

/// The trainer's standard input, as embedded (a WAV file).
const LOUDNESS_INPUT_WAV: &[u8] = include_bytes!("../../assets/nam/loudness_input.wav");

/// The input gains of the trainer's gain measure.
const GAIN_STEPS: usize = 11;

/// A NAM model's calibration values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NamCalibration {
    /// `metadata.loudness`, dB.
    pub loudness_db: f64,
    /// `metadata.gain`, in `[0, 1]`.
    pub gain: f64,
}

/// The trainer's standard input as samples in `[-1, 1)` (24-bit integers over 2^23, as the
/// trainer's WAV reader scales them).
pub fn loudness_input() -> Vec<f64> {
    let reader = hound::WavReader::new(std::io::Cursor::new(LOUDNESS_INPUT_WAV))
        .expect("the embedded WAV file is valid");
    let bits = reader.spec().bits_per_sample;
    let scale = f64::from(1u32 << (bits - 1));
    reader
        .into_samples::<i32>()
        .map(|s| f64::from(s.expect("the embedded WAV file is valid")) / scale)
        .collect()
}

fn rms(y: &[f64]) -> f64 {
    (y.iter().map(|v| v * v).sum::<f64>() / y.len().max(1) as f64).sqrt()
}

/// The calibration the official trainer would compute for `network` (see the module doc).
pub fn nam_calibration(network: &Network) -> NamCalibration {
    let x = loudness_input();
    let inputs: Vec<Vec<f64>> = (0..GAIN_STEPS)
        .map(|k| {
            let g = k as f64 / (GAIN_STEPS - 1) as f64;
            x.iter().map(|v| g * v).collect()
        })
        .collect();
    let levels: Vec<f64> = network
        .process_batch(&inputs)
        .iter()
        .map(|y| rms(y))
        .collect();
    let full = levels[GAIN_STEPS - 1];
    // The trainer's "square" (full compression) and "triangle" (linear) sums.
    let max_gain = full * GAIN_STEPS as f64;
    let min_gain = 0.5 * max_gain;
    let gain = ((levels.iter().sum::<f64>() - min_gain) / (max_gain - min_gain)).clamp(0.0, 1.0);
    NamCalibration {
        loudness_db: 20.0 * full.log10(),
        // A silent model gives 0/0; the trainer's numpy would give NaN, which no JSON holds.
        gain: if gain.is_finite() { gain } else { 0.0 },
    }
}

/// The calibration a NAM file states: `(loudness, gain)` from the metadata object `metadata`,
/// each when present.
pub fn stated(metadata: Option<&Value>) -> (Option<f64>, Option<f64>) {
    let get = |k: &str| metadata.and_then(|m| m.get(k)).and_then(Value::as_f64);
    (get("loudness"), get("gain"))
}

/// Where a NAM file's metadata object is: the file's own (`None`), or container submodel `i`'s.
pub fn metadata_pointer(submodel: Option<usize>) -> String {
    match submodel {
        Some(i) => format!("/config/submodels/{i}/model/metadata"),
        None => "/metadata".to_string(),
    }
}

/// One calibration value rewritten by [`recalibrate`] (as JSON: its four fields).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Recalibrated {
    /// The submodel (`None`: the file's own metadata).
    pub submodel: Option<usize>,
    /// `"loudness"` or `"gain"`.
    pub key: &'static str,
    pub before: f64,
    pub after: f64,
}

/// `submodel 0: metadata.loudness -20.021 -> -20.310 dB`.
impl std::fmt::Display for Recalibrated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(i) = self.submodel {
            write!(f, "submodel {i}: ")?;
        }
        let unit = if self.key == "loudness" { " dB" } else { "" };
        write!(
            f,
            "metadata.{} {:.3} -> {:.3}{unit}",
            self.key, self.before, self.after
        )
    }
}

/// Recomputes the calibration of every network of a NAM file that differs from the one it was
/// read with (a fine-tuned student), in its metadata, where the file states it: a key the
/// file does not have is not added (the plugin treats the student as it treated the teacher).
/// For a container, each changed submodel's own metadata, and the top level from the last
/// submodel as the trainer writes it. Other formats have no such values: nothing changes.
pub fn recalibrate(model: &mut ModelFile) -> Result<Vec<Recalibrated>> {
    if model.format != Format::Nam {
        return Ok(Vec::new());
    }
    let original = model.source_networks()?;
    // As the file will hold it (changed weights are written as f32): a network whose written
    // weights equal the file's is unchanged.
    let saved =
        crate::formats::load_model_from_bytes(&crate::formats::model_bytes(model, None)?, None)?;
    let written = saved.submodel_networks();
    if original.len() != written.len() {
        return Err(Error::InvalidArgument(format!(
            "the model holds {} networks but its file {}",
            written.len(),
            original.len()
        )));
    }
    let container = model.is_container();
    let mut changes = Vec::new();
    let mut last = None;
    for (i, (now, was)) in written.iter().zip(&original).enumerate() {
        if *now == was {
            continue;
        }
        let cal = nam_calibration(now);
        if i + 1 == written.len() {
            last = Some(cal);
        }
        let submodel = container.then_some(i);
        let pointer = metadata_pointer(submodel);
        changes.extend(set(&mut model.document, &pointer, cal, submodel));
    }
    if let (true, Some(cal)) = (container, last) {
        changes.extend(set(&mut model.document, "/metadata", cal, None));
    }
    Ok(changes)
}

/// Writes `cal` into the metadata object at `pointer`, for the keys it already has.
fn set(
    doc: &mut Value,
    pointer: &str,
    cal: NamCalibration,
    submodel: Option<usize>,
) -> Vec<Recalibrated> {
    let Some(md) = doc.pointer_mut(pointer).and_then(Value::as_object_mut) else {
        return Vec::new();
    };
    let mut changes = Vec::new();
    for (key, after) in [("loudness", cal.loudness_db), ("gain", cal.gain)] {
        let Some(before) = md.get(key).and_then(Value::as_f64) else {
            continue;
        };
        if let Some(n) = serde_json::Number::from_f64(after) {
            md.insert(key.into(), Value::Number(n));
            changes.push(Recalibrated {
                submodel,
                key,
                before,
                after,
            });
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The official trainer's export of identity WaveNets (neural-amp-modeler's
    /// `tests/resources/models/identity/wavenet_standard.nam`) states loudness
    /// -14.968024253845215 dB and gain 0: the standard input's own RMS, computed in float32.
    #[test]
    fn identity_gives_the_trainers_values() {
        let identity = Network::Linear(crate::models::linear::Linear {
            weights: vec![1.0],
            bias: None,
        });
        let cal = nam_calibration(&identity);
        // float32 RMS against our f64: agreement to 1e-5 dB measured (2.6e-7).
        assert!(
            (cal.loudness_db - -14.968024253845215).abs() < 1e-5,
            "{}",
            cal.loudness_db
        );
        // The trainer's 0.0 is a rounding away: linear sums in f64 leave 2.3e-14.
        assert!(cal.gain.abs() < 1e-12, "{}", cal.gain);
        assert_eq!(loudness_input().len(), 48_000);
    }

    /// Closed forms: a scaled identity `y = a x` shifts the loudness by `20 log10 a` and stays
    /// linear (gain 0); a model whose output is a constant `b` has the same level at every
    /// input gain, full compression: loudness `20 log10 |b|`, gain 1.
    #[test]
    fn scaled_and_constant_models_follow_the_definition() {
        let base = 20.0 * rms(&loudness_input()).log10();
        let scaled = Network::Linear(crate::models::linear::Linear {
            weights: vec![0.0, 0.25],
            bias: None,
        });
        let cal = nam_calibration(&scaled);
        assert!((cal.loudness_db - (base + 20.0 * 0.25f64.log10())).abs() < 1e-9);
        assert!(cal.gain.abs() < 1e-12, "{}", cal.gain);
        let constant = Network::Linear(crate::models::linear::Linear {
            weights: vec![0.0],
            bias: Some(vec![-0.1]),
        });
        let cal = nam_calibration(&constant);
        assert!(
            (cal.loudness_db - -20.0).abs() < 1e-9,
            "{}",
            cal.loudness_db
        );
        assert!((cal.gain - 1.0).abs() < 1e-12, "{}", cal.gain);
    }

    fn container() -> ModelFile {
        crate::load_model(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/nam07/a2_packed_container/a2_packed_container.nam"
        )))
        .unwrap()
    }

    /// The official 0.13 exporter's container (tools/gen_nam07_reference.py) states each
    /// submodel's calibration, computed by the trainer in float32: ours agrees to 1e-5 dB and
    /// 1e-6 in gain (measured 9.4e-8 dB and 3.1e-8).
    #[test]
    fn trainer_exported_container_states_our_values() {
        let m = container();
        for (i, n) in m.submodel_networks().into_iter().enumerate() {
            let md = m
                .document
                .pointer(&format!("/config/submodels/{i}/model/metadata"));
            let (loudness, gain) = stated(md);
            let cal = nam_calibration(n);
            assert!(
                (cal.loudness_db - loudness.unwrap()).abs() < 1e-5,
                "{i}: {cal:?}"
            );
            assert!((cal.gain - gain.unwrap()).abs() < 1e-6, "{i}: {cal:?}");
        }
        // The top level states the last submodel's, as the trainer writes it.
        assert_eq!(
            stated(m.document.get("metadata")),
            stated(m.document.pointer("/config/submodels/1/model/metadata"))
        );
    }

    /// A changed last submodel: its own metadata and the container's top level get its new
    /// values (its output halved through `head_scale`, the model has no post-head: loudness
    /// exactly 20 log10 0.5 lower, gain unchanged); the unchanged submodel keeps its own; an
    /// unchanged file changes nothing.
    #[test]
    fn recalibrate_rewrites_changed_submodels_and_resyncs_the_top_level() {
        let m = container();
        assert!(recalibrate(&mut m.clone()).unwrap().is_empty());
        let mut s = m.select_submodel(1).unwrap();
        let Network::WaveNet(w) = &mut s.network else {
            panic!("a WaveNet container")
        };
        assert!(w.head.is_none());
        w.head_scale[0] *= 0.5;
        let before = stated(m.document.get("metadata"));
        let changes = recalibrate(&mut s).unwrap();
        assert_eq!(changes.len(), 4, "{changes:?}");
        let expect = before.0.unwrap() + 20.0 * 0.5f64.log10();
        for p in ["/metadata", "/config/submodels/1/model/metadata"] {
            let (l, g) = stated(s.document.pointer(p));
            // The stated values are float32 results: 1e-5 dB as above.
            assert!((l.unwrap() - expect).abs() < 1e-5, "{p}: {l:?} vs {expect}");
            assert!((g.unwrap() - before.1.unwrap()).abs() < 1e-6, "{p}: {g:?}");
        }
        assert_eq!(
            s.document.pointer("/config/submodels/0/model/metadata"),
            m.document.pointer("/config/submodels/0/model/metadata")
        );
        // Saved and read back, the file states the new values.
        let text = crate::formats::model_bytes(&s, None).unwrap();
        let back = crate::formats::load_model_from_bytes(&text, None).unwrap();
        assert_eq!(
            stated(back.document.get("metadata")).0,
            stated(s.document.get("metadata")).0
        );
    }

    /// A single-model file: the keys it states are rewritten, missing keys are not added.
    #[test]
    fn recalibrate_a_plain_file_keeps_its_keys() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/reference/wavenet_tanh_plain/wavenet_tanh_plain.nam"
        );
        let mut m = crate::load_model(std::path::Path::new(path)).unwrap();
        m.document["metadata"] = serde_json::json!({"loudness": 0.0, "name": "x"});
        let mut s = m.clone();
        let Network::WaveNet(w) = &mut s.network else {
            panic!("a WaveNet")
        };
        w.head_scale[0] *= 0.5;
        let changes = recalibrate(&mut s).unwrap();
        assert_eq!(changes.len(), 1, "{changes:?}");
        let want = nam_calibration(&m.network).loudness_db + 20.0 * 0.5f64.log10();
        let got = s.document["metadata"]["loudness"].as_f64().unwrap();
        // f32 weights in the written file: 1e-5 dB.
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        assert!(s.document["metadata"].get("gain").is_none());
        assert_eq!(s.document["metadata"]["name"], "x");
    }
}
