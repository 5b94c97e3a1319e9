//! `dealias inspect` and `dealias process` end to end through the built binary, and the
//! secondary check against the authors' own render of the paper's WaveNet teacher.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn dealias(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dealias"))
        .args(args)
        .output()
        .unwrap()
}

fn write_wav(path: &Path, channels: u16, rate: u32, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

fn read_wav(path: &Path) -> (hound::WavSpec, Vec<f32>) {
    let mut r = hound::WavReader::open(path).unwrap();
    let spec = r.spec();
    (spec, r.samples::<f32>().map(|s| s.unwrap()).collect())
}

const MODEL: &str = "reference/nam_lstm_1x5/nam_lstm_1x5.nam";

/// The JSON description agrees with what the file itself says (read here with serde_json, not
/// through dealias): architecture, sizes, rate, and the parameter count = the length of the
/// file's flat `weights` list.
#[test]
fn inspect_json_describes_the_model() {
    let model = common::data(MODEL);
    let out = dealias(&["inspect", model.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(&model).unwrap()).unwrap();
    assert_eq!(v["architecture"], "LSTM");
    assert_eq!(v["format"], "Neural Amp Modeler (.nam)");
    assert_eq!(
        v["parameters"].as_u64().unwrap() as usize,
        file["weights"].as_array().unwrap().len()
    );
    assert_eq!(v["settings"]["hidden_size"], file["config"]["hidden_size"]);
    assert_eq!(v["settings"]["layers"], file["config"]["num_layers"]);
    assert_eq!(
        v["sample_rate"].as_f64(),
        file["sample_rate"].as_f64(),
        "sample rate"
    );
    // LSTM state: hidden + cell values per layer.
    assert_eq!(v["state_size"].as_u64(), Some(2 * 5));
    assert!(v["receptive_field"].is_null());
}

#[test]
fn process_matches_the_official_output_and_checks_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let model_path = common::data(MODEL);
    let model = dealias::load_model(&model_path).unwrap();
    let rate = model.sample_rate.unwrap() as u32;
    let x: Vec<f32> = (0..3000).map(|i| 0.5 * (i as f32 * 0.031).sin()).collect();
    let input = dir.path().join("in.wav");
    let output = dir.path().join("out.wav");
    write_wav(&input, 1, rate, &x);
    let m = model_path.to_str().unwrap();
    let out = dealias(&[
        "process",
        m,
        input.to_str().unwrap(),
        output.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (spec, y) = read_wav(&output);
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, rate, 32)
    );
    assert_eq!(y.len(), x.len(), "output length = input length");

    // Against the official implementation's output (neural-amp-modeler, f64) on the reference
    // input stored as a 32-bit float WAV: the input's f32 rounding and the f32 output WAV
    // give a measured 1.6e-7 of the peak; bound 5e-7.
    let ref_dir = common::data("reference/nam_lstm_1x5");
    let rx = common::read_f64(&ref_dir.join("input.f64"));
    let ry = common::read_f64(&ref_dir.join("output.f64"));
    let rx32: Vec<f32> = rx.iter().map(|&v| v as f32).collect();
    let ref_in = dir.path().join("ref_in.wav");
    let ref_out = dir.path().join("ref_out.wav");
    write_wav(&ref_in, 1, rate, &rx32);
    let out = dealias(&[
        "process",
        m,
        ref_in.to_str().unwrap(),
        ref_out.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, got) = read_wav(&ref_out);
    let got: Vec<f64> = got.iter().map(|&v| v as f64).collect();
    let (e, _) = common::errors(&got, &ry);
    println!("process vs neural-amp-modeler: {e:.2e} of peak");
    assert!(
        e < 5e-7,
        "process output off the official one by {e:e} of the peak"
    );

    // A sample-rate mismatch names both rates.
    let wrong = dir.path().join("wrong.wav");
    write_wav(&wrong, 1, rate / 2, &x);
    let out = dealias(&[
        "process",
        m,
        wrong.to_str().unwrap(),
        output.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&rate.to_string()) && err.contains(&(rate / 2).to_string()),
        "{err}"
    );

    // Stereo needs a channel, and says how to pick one.
    let stereo = dir.path().join("stereo.wav");
    let inter: Vec<f32> = x.iter().flat_map(|&v| [v, -v]).collect();
    write_wav(&stereo, 2, rate, &inter);
    let out = dealias(&[
        "process",
        m,
        stereo.to_str().unwrap(),
        output.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--channel N"));
    let right = dir.path().join("right.wav");
    let out = dealias(&[
        "process",
        m,
        stereo.to_str().unwrap(),
        right.to_str().unwrap(),
        "--channel",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The output may not overwrite the input.
    let out = dealias(&[
        "process",
        m,
        input.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
}

/// The authors' render of the paper's WaveNet teacher is 0.5 x the model output; after its
/// first 10,000 samples (which start from another state) it agrees with ours to 5e-7
/// (fixtures README).
#[test]
fn paper_wavenet_matches_the_authors_render() {
    let (Some(m), Some(di), Some(og)) = (
        common::fixture_or_skip("paper-models/broadcast_tcn_teacher.nam"),
        common::fixture_or_skip("paper-audio/guitar_1/input_reroute.wav"),
        common::fixture_or_skip("paper-audio/guitar_1/broadcast_wavenet_og.wav"),
    ) else {
        return;
    };
    let model = dealias::load_model(&m).unwrap();
    let (_, x) = read_wav(&di);
    let (_, render) = read_wav(&og);
    let y = model.process::<f64>(&x.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let worst = y
        .iter()
        .zip(&render)
        .skip(10_000)
        .map(|(a, &r)| (0.5 * a - r as f64).abs())
        .fold(0.0, f64::max);
    assert!(worst < 5e-7, "max |0.5 y - render| = {worst:e}");
}

/// One optimiser step on two short tones, validated on every 44th sine-set tone: a fine-tuning
/// run that exercises the whole command in seconds of training.
const ONE_STEP: [&str; 13] = [
    "--steps",
    "1",
    "--frame-seconds",
    "0.1",
    "--pre-emphasis",
    "none",
    "--batch-size",
    "2",
    "--tones-per-epoch",
    "2",
    "--validation-stride",
    "44",
    "--quiet",
];

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// A `SlimmableContainer` (the trainer's packed A2 export): `inspect` lists the submodels and
/// their max_values; `process` runs the plugin's default (the last submodel) or the one a
/// slider value or index picks, each equal to the official output of that submodel (f32 WAV
/// output: within 1e-6 of peak); `finetune` fine-tunes every submodel (or the one chosen) and
/// writes the container back.
#[test]
fn slimmable_container_commands() {
    let dir = common::data("nam07/a2_packed_container");
    let model = dir.join("a2_packed_container.nam");
    let m = model.to_str().unwrap();
    let out = dealias(&["inspect", "--json", m]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let subs = d["submodels"].as_array().expect("submodels listed");
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[0]["max_value"], 0.5);
    assert_eq!(subs[1]["max_value"], 1.0);
    assert_eq!(subs[1]["default"], true);
    let text = dealias(&["inspect", m]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("max_value 0.5"));
    // The calibration the official exporter stated for each submodel, and ours (1e-5 dB; the
    // library test pins the measured agreement).
    let cal = d["calibration"].as_array().expect("NAM calibration listed");
    assert_eq!(cal.len(), 2);
    for c in cal {
        let (a, b) = (c["stated_loudness"].as_f64(), c["loudness"].as_f64());
        assert!((a.unwrap() - b.unwrap()).abs() < 1e-5, "{c}");
    }

    let tmp = tempfile::tempdir().unwrap();
    let input = common::read_f64(&dir.join("input.f64"));
    let wav_in = tmp.path().join("in.wav");
    let x32: Vec<f32> = input.iter().map(|&v| v as f32).collect();
    write_wav(&wav_in, 1, 48000, &x32);
    for (extra, expect) in [
        (vec![], 1),
        (vec!["--slim", "0.25"], 0),
        (vec!["--slim", "0.5"], 1),
        (vec!["--submodel", "0"], 0),
    ] {
        let wav_out = tmp.path().join("out.wav");
        let _ = std::fs::remove_file(&wav_out);
        let mut args = vec![
            "process",
            m,
            wav_in.to_str().unwrap(),
            wav_out.to_str().unwrap(),
        ];
        args.extend(&extra);
        let out = dealias(&args);
        assert!(
            out.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (_, y) = read_wav(&wav_out);
        let y: Vec<f64> = y.iter().map(|&v| v as f64).collect();
        let reference = common::read_f64(&dir.join(format!("output_{expect}.f64")));
        let (e, _) = common::errors(&y, &reference);
        assert!(e < 1e-6, "{extra:?}: {e:e} against submodel {expect}");
    }
    let out = dealias(&[
        "process",
        m,
        wav_in.to_str().unwrap(),
        tmp.path().join("x.wav").to_str().unwrap(),
        "--submodel",
        "2",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("submodel 2 does not exist"));

    // One step on the small submodel: the container comes back with the same structure, the
    // other submodel untouched and each config unchanged.
    let student = tmp.path().join("s.nam");
    let mut args = vec![
        "finetune",
        m,
        "-o",
        student.to_str().unwrap(),
        "--submodel",
        "0",
    ];
    args.extend(ONE_STEP);
    let out = dealias(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = read_json(&model);
    let b = read_json(&student);
    let (sa, sb) = (&a["config"]["submodels"], &b["config"]["submodels"]);
    assert_eq!(b["architecture"], "SlimmableContainer");
    assert_eq!(sa[1], sb[1], "the other submodel is unchanged");
    for i in 0..2 {
        assert_eq!(sa[i]["max_value"], sb[i]["max_value"]);
        assert_eq!(
            sa[i]["model"]["config"].to_string(),
            sb[i]["model"]["config"].to_string()
        );
    }
    assert_ne!(sa[0]["model"]["weights"], sb[0]["model"]["weights"]);
    assert!(b["metadata"]["dealias"].is_object());
    // The fine-tuned submodel states its own calibration, the one `inspect` computes for the
    // student (not the teacher's); the top level keeps the last submodel's, which did not change.
    let md = |v: &serde_json::Value, k: &str| {
        v["config"]["submodels"][0]["model"]["metadata"][k]
            .as_f64()
            .unwrap()
    };
    let out = dealias(&["inspect", "--json", student.to_str().unwrap()]);
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let computed = d["calibration"][0]["loudness"].as_f64().unwrap();
    assert!(
        (md(&b, "loudness") - computed).abs() < 1e-9,
        "{} vs {computed}",
        md(&b, "loudness")
    );
    assert_ne!(md(&b, "loudness"), md(&a, "loudness"));
    assert!((md(&b, "gain") - d["calibration"][0]["gain"].as_f64().unwrap()).abs() < 1e-9);
    assert_eq!(a["metadata"]["loudness"], b["metadata"]["loudness"]);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("s.nam.report.json")).unwrap())
            .unwrap();
    assert_eq!(
        report["calibration"].as_array().unwrap().len(),
        2,
        "{}",
        report["calibration"]
    );
}

/// A container without `--submodel`: `finetune` fine-tunes every submodel, one after another,
/// and writes the container back once (each config unchanged, each submodel's calibration its
/// own, the top level the last submodel's); a rerun keeps the finished parts. The container is
/// made of two small generated WaveNets, so the two runs stay cheap.
#[test]
fn finetune_fine_tunes_every_submodel_of_a_container() {
    let tmp = tempfile::tempdir().unwrap();
    let sub = |name: &str| {
        let mut d = read_json(&common::data(&format!("reference/{name}/{name}.nam")));
        d["metadata"] = serde_json::json!({"loudness": -20.0, "gain": 0.5});
        d
    };
    let container = serde_json::json!({
        "version": "0.7.0",
        "architecture": "SlimmableContainer",
        "sample_rate": 48000,
        "metadata": {"loudness": -20.0, "gain": 0.5},
        "config": {"submodels": [
            {"max_value": 0.5, "model": sub("wavenet_tanh_plain")},
            {"max_value": 1.0, "model": sub("wavenet_relu_plain")},
        ]},
    });
    let model = tmp.path().join("c.nam");
    std::fs::write(&model, serde_json::to_vec(&container).unwrap()).unwrap();
    let m = model.to_str().unwrap();
    let all = tmp.path().join("all.nam");
    // The tone guard off: one step on random small WaveNets need not keep any tone.
    let mut args = vec![
        "finetune",
        m,
        "-o",
        all.to_str().unwrap(),
        "--max-esr-t",
        "100",
    ];
    args.extend(ONE_STEP);
    let out = dealias(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (a, c) = (read_json(&model), read_json(&all));
    for i in 0..2 {
        let (sa, sc) = (
            &a["config"]["submodels"][i]["model"],
            &c["config"]["submodels"][i]["model"],
        );
        assert_ne!(sa["weights"], sc["weights"], "submodel {i} fine-tuned");
        assert_eq!(sa["config"].to_string(), sc["config"].to_string());
        assert_ne!(sa["metadata"]["loudness"], sc["metadata"]["loudness"]);
    }
    assert_eq!(
        c["metadata"]["loudness"], c["config"]["submodels"][1]["model"]["metadata"]["loudness"],
        "the top level states the last submodel's"
    );
    let report = read_json(&tmp.path().join("all.nam.report.json"));
    assert_eq!(report["submodels"].as_array().unwrap().len(), 2);
    assert_eq!(report["complete"], true);
    // A rerun keeps the finished parts and writes the same container.
    let first = std::fs::read(&all).unwrap();
    let out = dealias(&args);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already fine-tuned"));
    assert_eq!(std::fs::read(&all).unwrap(), first);
}
