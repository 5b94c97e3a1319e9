//! Pre-training from scratch (`dealias train`, paper sec. 3.2) on the built-in device: the
//! networks learn it, runs resume exactly, and the files written load as what was trained.

mod common;

use std::process::Command;
use std::sync::atomic::AtomicBool;

use dealias::device::Device;
use dealias::models::init::Architecture;
use dealias::train::finetune::StopReason;
use dealias::train::pretrain::{AudioPair, PretrainConfig, PretrainOutcome, Pretrainer};
use dealias::Network;

fn device_data(fs: f64, seconds: f64) -> (AudioPair, AudioPair) {
    let d = Device::by_name("diode-clipper").unwrap();
    AudioPair::from_device(&d, fs, seconds, 3).unwrap()
}

fn config(net: &Network) -> PretrainConfig {
    PretrainConfig {
        batch_size: 8,
        threads: 2,
        ..PretrainConfig::for_network(net)
    }
}

fn run(t: &mut Pretrainer) -> PretrainOutcome {
    t.run(&AtomicBool::new(false), &mut |_| {}).unwrap()
}

/// A GuitarML LSTM-8 learns the diode clipper: 400 steps on 8 s of the built-in signal take
/// the A-weighted validation ESR from the untrained network's 0.69 to 0.085 (measured; the
/// run is deterministic for its seed and thread count); asserted below 0.12. The network
/// returned is the one validated best.
#[test]
fn recurrent_network_learns_the_device() {
    let (train, val) = device_data(44_100.0, 8.0);
    let net = Architecture::parse("lstm-8").unwrap().initial_network(1);
    let c = PretrainConfig {
        max_steps: Some(400),
        ..config(&net)
    };
    let mut t = Pretrainer::new(net.clone(), 44_100.0, train, val, c).unwrap();
    let before = t.validation_loss(&net).unwrap();
    let out = run(&mut t);
    assert_eq!(out.stop, StopReason::MaxSteps);
    assert_eq!(out.steps, 400);
    let after = t.validation_loss(&out.best).unwrap();
    let best = out
        .history
        .iter()
        .map(|v| v.loss)
        .fold(f64::INFINITY, f64::min);
    assert_eq!(
        after.value, best,
        "the best network is the best validated one"
    );
    eprintln!("LSTM-8: ESR {} -> {}", before.esr, after.esr);
    assert!(before.esr > 0.3, "untrained ESR {}", before.esr);
    assert!(after.esr < 0.12, "ESR {} -> {}", before.esr, after.esr);
}

/// A NAM WaveNet (nano) learns it too: 30 steps take the validation loss from 0.74 to 0.17
/// (measured); asserted below half the untrained loss.
#[test]
fn wavenet_learns_the_device() {
    let (train, val) = device_data(48_000.0, 8.0);
    let net = Architecture::parse("wavenet-nano")
        .unwrap()
        .initial_network(1);
    let c = PretrainConfig {
        max_steps: Some(30),
        segment_len: 4096,
        ..config(&net)
    };
    let mut t = Pretrainer::new(net.clone(), 48_000.0, train, val, c).unwrap();
    let before = t.validation_loss(&net).unwrap();
    let out = run(&mut t);
    let after = t.validation_loss(&out.best).unwrap();
    eprintln!("WaveNet nano: loss {} -> {}", before.value, after.value);
    assert!(
        after.value < 0.5 * before.value,
        "loss {} -> {}",
        before.value,
        after.value
    );
}

/// A run stopped mid-batch by a step limit and resumed from its checkpoint (the batch
/// boundary before the stop) ends bit for bit where an uninterrupted run ends.
#[test]
fn interrupted_and_resumed_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("run.checkpoint.json");
    let (train, val) = device_data(44_100.0, 8.0);
    let net = Architecture::parse("gru-4").unwrap().initial_network(2);
    let c = |steps: u64, path: Option<std::path::PathBuf>| PretrainConfig {
        max_steps: Some(steps),
        checkpoint_path: path,
        ..config(&net)
    };
    let mut whole = Pretrainer::new(
        net.clone(),
        44_100.0,
        train.clone(),
        val.clone(),
        c(50, None),
    )
    .unwrap();
    let whole = run(&mut whole);
    // 8 s make 16 segments: 2 batches of 8 (10 frames, 10 steps each) per epoch. Step 35 is in
    // the middle of epoch 1's second batch: the checkpoint is its start, step 30, mid-epoch.
    let mut first = Pretrainer::new(
        net.clone(),
        44_100.0,
        train.clone(),
        val.clone(),
        c(35, Some(ck.clone())),
    )
    .unwrap();
    run(&mut first);
    let saved = dealias::train::pretrain::PretrainCheckpoint::load(&ck).unwrap();
    assert_eq!((saved.step, saved.epoch, saved.batch_in_epoch), (30, 1, 1));
    let mut second = Pretrainer::new(net.clone(), 44_100.0, train, val, c(50, None)).unwrap();
    second.resume(&saved).unwrap();
    let second = run(&mut second);
    assert_eq!(second.steps, 50);
    assert_eq!(second.last.params(), whole.last.params());
    assert_eq!(second.best.params(), whole.best.params());
    // A different setting is refused.
    let (train, val) = device_data(44_100.0, 8.0);
    let mut other = Pretrainer::new(
        net.clone(),
        44_100.0,
        train,
        val,
        PretrainConfig {
            batch_size: 4,
            ..c(50, None)
        },
    )
    .unwrap();
    assert!(other.resume(&saved).is_err());
}

/// Bad audio is refused with a reason.
#[test]
fn bad_audio_is_refused() {
    let net = Architecture::parse("lstm-4").unwrap().initial_network(1);
    let short = AudioPair {
        input: vec![0.1; 5000],
        target: vec![0.1; 5000],
    };
    let (_, val) = device_data(44_100.0, 4.0);
    let e = Pretrainer::new(net.clone(), 44_100.0, short, val.clone(), config(&net))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("shorter than one training segment"), "{e}");
    let uneven = AudioPair {
        input: vec![0.1; 50_000],
        target: vec![0.1; 49_999],
    };
    let e = Pretrainer::new(net.clone(), 44_100.0, uneven, val.clone(), config(&net))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("equal length"), "{e}");
    let mut nan = val.clone();
    nan.target[7] = f64::NAN;
    let e = Pretrainer::new(net.clone(), 44_100.0, val, nan, config(&net))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("not finite"), "{e}");
}

fn dealias() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dealias"))
}

/// `dealias train` writes a GuitarML file and a .nam that load back as the networks trained
/// (weights rounded to f32, as the exporters write them), the .nam with the calibration the
/// official trainer's definition gives for it; a wrong extension and a leftover checkpoint
/// are refused.
#[test]
fn cli_writes_loadable_files() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("m.json");
    let out = dealias()
        .args([
            "train",
            "--arch",
            "gru-4",
            "--signal-seconds",
            "4",
            "--steps",
            "12",
            "--quiet",
            "-o",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = dealias::load_model(&json).unwrap();
    assert_eq!(m.format, dealias::Format::GuitarMl);
    assert_eq!(m.sample_rate, Some(44_100.0));
    let Network::Rnn(r) = &m.network else {
        panic!()
    };
    assert_eq!((r.hidden_size(), r.skip), (4, true));
    // The untrained network of the same seed is not what was written.
    let init = Architecture::parse("gru-4").unwrap().initial_network(0);
    assert_ne!(m.network.params(), init.params());
    // A second run into the same output finds the checkpoint and refuses.
    let again = dealias()
        .args([
            "train",
            "--arch",
            "gru-4",
            "--signal-seconds",
            "4",
            "--steps",
            "12",
            "--quiet",
            "-o",
        ])
        .arg(&json)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));

    let nam = dir.path().join("w.nam");
    let out = dealias()
        .args([
            "train",
            "--arch",
            "wavenet-nano",
            "--signal-seconds",
            "4",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--quiet",
            "-o",
        ])
        .arg(&nam)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let w = dealias::load_model(&nam).unwrap();
    assert_eq!(w.format, dealias::Format::Nam);
    assert_eq!(w.sample_rate, Some(48_000.0));
    let cal = dealias::eval::calibration::nam_calibration(&w.network);
    let stated = w.document["metadata"]["loudness"].as_f64().unwrap();
    assert!(
        (stated - cal.loudness_db).abs() < 1e-9,
        "{stated} vs {}",
        cal.loudness_db
    );

    let bad = dealias()
        .args(["train", "--arch", "lstm-4", "-o"])
        .arg(dir.path().join("m.nam"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("GuitarML .json"));
}

/// `--arch like:FILE` trains a file's own layout from fresh weights: a NAM A2-style WaveNet
/// (per-layer kernels, LeakyReLU objects, layer1x1, convolutional head) comes back with the
/// template's configuration exactly, new weights, fresh metadata (the template's capture
/// details dropped, the calibration recomputed); a container needs `--submodel`, and gives a
/// plain `.nam` of that submodel's configuration.
#[test]
fn cli_trains_the_layout_of_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let template = common::data("nam07/a2_like/a2_like.nam");
    let t = dealias::load_model(&template).unwrap();
    let out_path = dir.path().join("a2.nam");
    let train = |like: &std::path::Path, extra: &[&str], out: &std::path::Path| {
        dealias()
            .args(["train", "--arch"])
            .arg(format!("like:{}", like.display()))
            .args(extra)
            .args(["--signal-seconds", "4", "--steps", "2", "--batch-size", "4"])
            .args(["--quiet", "-o"])
            .arg(out)
            .output()
            .unwrap()
    };
    let out = train(&template, &[], &out_path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = dealias::load_model(&out_path).unwrap();
    assert_eq!(m.format, dealias::Format::Nam);
    // Every setting but head_scale, which dealias's trainer trains (NAM keeps it fixed; see
    // the README's open point).
    let without_scale = |d: &serde_json::Value| {
        let mut c = d["config"].clone();
        c.as_object_mut().unwrap().remove("head_scale");
        c
    };
    assert_eq!(
        without_scale(&m.document),
        without_scale(&t.document),
        "configuration changed"
    );
    assert_eq!(m.document["architecture"], t.document["architecture"]);
    assert_eq!(m.network.num_params(), t.network.num_params());
    assert_ne!(
        m.network.params(),
        t.network.params(),
        "the template's weights kept"
    );
    let fresh = dealias::models::init::reinitialised(&t.network, 0).unwrap();
    assert_ne!(m.network.params(), fresh.params(), "not trained");
    let meta = m.document["metadata"].as_object().unwrap();
    for (k, _) in t.document["metadata"].as_object().into_iter().flatten() {
        assert!(
            k == "loudness" || k == "gain" || !meta.contains_key(k),
            "the template's metadata {k} was copied"
        );
    }
    let cal = dealias::eval::calibration::nam_calibration(&m.network);
    let stated = meta["loudness"].as_f64().unwrap();
    assert!(
        (stated - cal.loudness_db).abs() < 1e-9,
        "{stated} vs {}",
        cal.loudness_db
    );

    let container = common::data("nam07/a2_packed_container/a2_packed_container.nam");
    let refused = train(&container, &[], &dir.path().join("c.nam"));
    assert!(!refused.status.success());
    let msg = String::from_utf8_lossy(&refused.stderr);
    assert!(
        msg.contains("--submodel") && msg.contains("container"),
        "{msg}"
    );
    let sub_path = dir.path().join("sub0.nam");
    let out = train(&container, &["--submodel", "0"], &sub_path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = dealias::load_model(&container).unwrap();
    let s = dealias::load_model(&sub_path).unwrap();
    assert!(!s.is_container());
    assert_eq!(
        without_scale(&s.document),
        without_scale(&c.document["config"]["submodels"][0]["model"])
    );
    assert_eq!(s.sample_rate, Some(48_000.0));
    let wrong = train(&template, &[], &dir.path().join("a2.json"));
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains(".nam"));
}
