//! Property tests (fuzz targets) of the two readers of untrusted files besides the model
//! parsers (fuzzed in `tests/formats.rs`): the WAV reader and the checkpoint reader. On
//! arbitrary bytes and on mutated valid files they return a value or an error, never panic,
//! and never allocate more than the input justifies.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

use dealias::audio::parse_wav;
use dealias::loss::PreEmphasis;
use dealias::train::checkpoint::Checkpoint;
use dealias::train::finetune::{FinetuneConfig, Finetuner};
use proptest::prelude::*;

/// A valid 2-channel 16-bit WAV of 64 frames.
fn valid_wav() -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
        for i in 0..128 {
            w.write_sample((i * 97 % 65536 - 32768) as i16).unwrap();
        }
        w.finalize().unwrap();
    }
    cur.into_inner()
}

/// Settings of a tiny run whose checkpoints the fuzzer mutates.
fn config() -> FinetuneConfig {
    FinetuneConfig {
        seed: 3,
        tones_per_epoch: 4,
        batch_size: Some(2),
        tone_seconds: Some(1.0),
        frame_seconds: Some(0.5),
        pre_emphasis: PreEmphasis::None,
        threads: 1,
        max_steps: Some(2),
        validation_stride: 88,
        ..FinetuneConfig::default()
    }
}

fn network() -> dealias::Network {
    let p = common::data(
        "reference/guitarml_lstm4x1_noskip_nobias/guitarml_lstm4x1_noskip_nobias.json",
    );
    dealias::load_model(&p).unwrap().network
}

/// The checkpoint of a 2-step run (computed once).
fn valid_checkpoint() -> &'static [u8] {
    static CK: OnceLock<Vec<u8>> = OnceLock::new();
    CK.get_or_init(|| {
        let mut t = Finetuner::new(&network(), 16000.0, config()).unwrap();
        let out = t.run(&AtomicBool::new(false), &mut |_| {}).unwrap();
        t.checkpoint(out.elapsed).to_bytes().unwrap()
    })
}

/// Parses `bytes` as a checkpoint and, if that succeeds, resumes a run from it: either may
/// refuse, neither may panic.
fn load_and_resume(bytes: &[u8]) {
    if let Ok(ck) = Checkpoint::from_bytes(bytes) {
        let mut t = Finetuner::new(&network(), 16000.0, config()).unwrap();
        let _ = t.resume(&ck);
    }
}

/// Re-wraps an edited payload with a correct checksum, as a buggy writer (not a corrupted
/// disk) would produce: only the field checks stand between it and the run.
fn rewrap(payload: &serde_json::Value) -> Vec<u8> {
    let p = serde_json::to_string(payload).unwrap();
    format!(
        "{{\"format\":\"dealias checkpoint\",\"version\":{},\"checksum\":\"{}\",\"payload\":{p}}}",
        dealias::train::checkpoint::CHECKPOINT_VERSION,
        dealias::io::checksum(p.as_bytes())
    )
    .into_bytes()
}

/// Numbers a mutation puts into a field.
fn wild_number() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::json!(-1)),
        Just(serde_json::json!(0)),
        Just(serde_json::json!(1e300)),
        Just(serde_json::json!(-1e-300)),
        Just(serde_json::json!(u64::MAX)),
        Just(serde_json::json!(1_000_000_000_000u64)),
        Just(serde_json::Value::Null),
        Just(serde_json::json!([])),
        Just(serde_json::json!("x")),
        any::<i64>().prop_map(|v| serde_json::json!(v)),
        any::<f64>().prop_map(|v| serde_json::json!(v)),
    ]
}

/// Replaces the `k`-th leaf (number, string, bool or null) of `v`, counting depth first.
fn replace_leaf(v: &mut serde_json::Value, k: &mut usize, new: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Array(a) => a.iter_mut().any(|x| replace_leaf(x, k, new)),
        Value::Object(o) => o.values_mut().any(|x| replace_leaf(x, k, new)),
        leaf => {
            if *k == 0 {
                *leaf = new.clone();
                return true;
            }
            *k -= 1;
            false
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn wav_reader_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(a) = parse_wav(&bytes, Some(0)) {
            prop_assert!(a.samples.len() <= bytes.len());
        }
    }

    #[test]
    fn wav_reader_survives_mutated_files(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
        channel in proptest::option::of(0usize..4),
    ) {
        let mut b = valid_wav();
        for (at, v) in edits {
            let i = at % b.len();
            b[i] = v;
        }
        b.truncate(cut % (b.len() + 1));
        if let Ok(a) = parse_wav(&b, channel) {
            prop_assert!(a.samples.len() <= b.len());
            prop_assert!(a.samples.iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn checkpoint_reader_survives_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Checkpoint::from_bytes(&bytes);
    }
}

proptest! {
    // Each case resumes a small run: fewer cases.
    #![proptest_config(ProptestConfig { cases: 120, ..ProptestConfig::default() })]

    #[test]
    fn checkpoint_reader_survives_mutated_files(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        cut in any::<usize>(),
    ) {
        let mut b = valid_checkpoint().to_vec();
        for (at, v) in &edits {
            let i = at % b.len();
            b[i] = *v;
        }
        if !edits.is_empty() {
            b.truncate(cut % (b.len() + 1));
        }
        load_and_resume(&b);
    }

    #[test]
    fn checkpoint_fields_are_checked_even_with_a_good_checksum(
        leaf in any::<usize>(),
        value in wild_number(),
    ) {
        let text = std::str::from_utf8(valid_checkpoint()).unwrap();
        let env: serde_json::Value = serde_json::from_str(text).unwrap();
        let mut payload = env["payload"].clone();
        let mut k = leaf % 2000;
        replace_leaf(&mut payload, &mut k, &value);
        load_and_resume(&rewrap(&payload));
    }
}

/// The mutation helpers can fail: an unmodified checkpoint loads and resumes.
#[test]
fn the_unmutated_checkpoint_resumes() {
    let ck = Checkpoint::from_bytes(valid_checkpoint()).unwrap();
    let mut t = Finetuner::new(&network(), 16000.0, config()).unwrap();
    t.resume(&ck).unwrap();
    let text = std::str::from_utf8(valid_checkpoint()).unwrap();
    let env: serde_json::Value = serde_json::from_str(text).unwrap();
    assert!(Checkpoint::from_bytes(&rewrap(&env["payload"])).is_ok());
    assert!(parse_wav(&valid_wav(), Some(1)).is_ok());
}
