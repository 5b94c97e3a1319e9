//! Helpers shared by the integration tests: fixture paths and raw f64 files.
#![allow(dead_code)]

use std::path::PathBuf;

/// A path under the shared fixtures folder (read in place, never copied).
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/")).join(rel)
}

/// The path of a shared fixture when it is there. When it is absent the test says so on
/// stderr and the caller skips it (`None`), unless `DEALIAS_REQUIRE_FIXTURES` is set (as
/// `.ci/run` does, where the fixtures are beside the clone): then its absence is a failure.
pub fn fixture_or_skip(rel: &str) -> Option<PathBuf> {
    let p = fixture(rel);
    if p.exists() {
        return Some(p);
    }
    if std::env::var_os("DEALIAS_REQUIRE_FIXTURES").is_some() {
        panic!(
            "fixture {} is absent and DEALIAS_REQUIRE_FIXTURES is set",
            p.display()
        );
    }
    eprintln!(
        "skipped: fixture {} is absent (the paper's files are read from ../shared/fixtures/)",
        p.display()
    );
    None
}

/// A path under this crate's `tests/data`.
pub fn data(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/")).join(rel)
}

/// Reads a raw little-endian f64 file.
pub fn read_f64(path: &std::path::Path) -> Vec<f64> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Largest |a - b| / max|b| (error relative to the reference's peak) and the largest
/// pointwise |a - b| / max(|b|, peak·1e-3).
pub fn errors(out: &[f64], reference: &[f64]) -> (f64, f64) {
    assert_eq!(out.len(), reference.len());
    let peak = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut rel_peak = 0.0f64;
    let mut rel_point = 0.0f64;
    for (a, b) in out.iter().zip(reference) {
        let d = (a - b).abs();
        rel_peak = rel_peak.max(d / peak);
        rel_point = rel_point.max(d / b.abs().max(peak * 1e-3));
    }
    (rel_peak, rel_point)
}

/// Writes a mono 32-bit float WAV.
pub fn write_wav(path: &std::path::Path, x: &[f64], fs: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: fs,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &v in x {
        w.write_sample(v as f32).unwrap();
    }
    w.finalize().unwrap();
}

/// The path of a committed small model, `tests/data/reference/NAME/NAME.json`.
pub fn small_model_path(name: &str) -> String {
    data(&format!("reference/{name}/{name}.json"))
        .display()
        .to_string()
}

/// Runs the `dealias` binary with `args`.
pub fn dealias_cmd(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dealias"))
        .args(args)
        .output()
        .expect("the dealias binary runs")
}

/// [`errors`] (relative to the reference's peak) of `model` run from its initial state on
/// `input` in f64 and in f32: `(f64 error, f32 error)`.
pub fn precision_errors(
    model: &dealias::ModelFile,
    input: &[f64],
    reference: &[f64],
) -> (f64, f64) {
    let (e64, _) = errors(&model.process::<f64>(input), reference);
    let in32: Vec<f32> = input.iter().map(|&x| x as f32).collect();
    let out32: Vec<f64> = model
        .process::<f32>(&in32)
        .iter()
        .map(|&x| x as f64)
        .collect();
    let (e32, _) = errors(&out32, reference);
    (e64, e32)
}
