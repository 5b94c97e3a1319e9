//! The built-in models (`assets/models/`, compiled in): they are what `assets/models/README.md`
//! says — a model of the diode-clipper device that aliases audibly on high loud notes — and
//! `dealias finetune` with no MODEL fine-tunes the default one in the current folder. Needs no
//! file beside the repository.

use std::process::Command;

use dealias::device::Device;
use dealias::dsp::tones::eval_sine_set;
use dealias::eval::sine_set::{measure_tones, no_progress, RunOptions};
use dealias::formats::embedded::{EmbeddedModel, EMBEDDED_MODELS};
use dealias::train::pretrain::AudioPair;
use dealias::{Format, Network};

#[test]
fn every_builtin_model_loads_and_names_are_checked() {
    for m in &EMBEDDED_MODELS {
        let f = m.load().unwrap();
        assert!(f.network.check_finite().is_ok(), "{}", m.name);
        assert!(f.sample_rate.is_some(), "{} states its rate", m.name);
    }
    let e = EmbeddedModel::by_name("nope").unwrap_err().to_string();
    assert!(e.contains("lstm"), "{e}");
}

/// The default model is a GuitarML LSTM-40 at 44.1 kHz that models the device: on 8 s of the
/// built-in signal it never saw (seed 99), its A-weighted ESR against the device is 0.0021
/// (measured; 0.031 on its 12 s of validation audio, whose loud sweeps it fits worst),
/// asserted below 0.01.
#[test]
fn default_model_models_the_device() {
    let m = EmbeddedModel::default_model().load().unwrap();
    assert_eq!(m.format, Format::GuitarMl);
    assert_eq!(m.sample_rate, Some(44_100.0));
    let Network::Rnn(r) = &m.network else {
        panic!("not recurrent")
    };
    assert_eq!(r.hidden_size(), 40);
    let device = Device::by_name("diode-clipper").unwrap();
    let (held_out, _) = AudioPair::from_device(&device, 44_100.0, 8.0, 99).unwrap();
    let y = m.network.process::<f64>(&held_out.input);
    let loss = dealias::loss::pretrain::PretrainLoss::new(44_100.0, Default::default()).unwrap();
    let v = loss.batch(&[&y], &[&held_out.target], None).unwrap();
    eprintln!("held-out A-weighted ESR {}", v.esr);
    assert!(v.esr < 0.01, "A-weighted ESR {}", v.esr);
}

/// It aliases audibly where the paper's models do: NMR-S above -10 dB on the high loud tones
/// (MIDI 101, 105, 108 at -6 dBFS: +17.8, +33.8, +37.2 dB measured), and far below it on quiet
/// ones (MIDI 60 and 101 at -36 dBFS: below -40 dB).
#[test]
fn default_model_aliases_on_high_loud_notes() {
    let m = EmbeddedModel::default_model().load().unwrap();
    let pick = |midi: u8, dbfs: f64| {
        eval_sine_set()
            .into_iter()
            .find(|t| t.midi == midi && t.dbfs == dbfs)
            .unwrap()
    };
    let loud = [pick(101, -6.0), pick(105, -6.0), pick(108, -6.0)];
    let quiet = [pick(60, -36.0), pick(101, -36.0)];
    let fs = 44_100.0;
    let db = |tones: &[_]| -> Vec<f64> {
        measure_tones(
            &m.network,
            fs,
            RunOptions::default(),
            None,
            tones,
            &no_progress,
        )
        .unwrap()
        .tones
        .iter()
        .map(|t| 10.0 * t.metrics.nmr_s.log10())
        .collect()
    };
    for (t, v) in loud.iter().zip(db(&loud)) {
        assert!(v > -10.0, "MIDI {} at {} dBFS: NMR-S {v}", t.midi, t.dbfs);
    }
    for (t, v) in quiet.iter().zip(db(&quiet)) {
        assert!(v < -40.0, "MIDI {} at {} dBFS: NMR-S {v}", t.midi, t.dbfs);
    }
}

/// The built-in WaveNet is a NAM standard WaveNet at 48 kHz that models the device (A-weighted
/// ESR on 8 s of another draw of the signal: 0.00064 measured, asserted below 0.01) and aliases
/// on high loud tones (MIDI 103, 108 at -6 dBFS: +27.5, +29.2 dB measured; asserted above
/// -10 dB).
#[test]
fn builtin_wavenet_models_the_device_and_aliases() {
    let m = EmbeddedModel::by_name("wavenet").unwrap().load().unwrap();
    assert_eq!(m.format, Format::Nam);
    assert_eq!(m.sample_rate, Some(48_000.0));
    assert_eq!(m.network.num_params(), 13_802);
    let fs = 48_000.0;
    let device = Device::by_name("diode-clipper").unwrap();
    let (held_out, _) = AudioPair::from_device(&device, fs, 8.0, 99).unwrap();
    let y = m.network.process::<f64>(&held_out.input);
    let loss = dealias::loss::pretrain::PretrainLoss::new(fs, Default::default()).unwrap();
    let v = loss.batch(&[&y], &[&held_out.target], None).unwrap();
    eprintln!("WaveNet held-out A-weighted ESR {}", v.esr);
    assert!(v.esr < 0.01, "A-weighted ESR {}", v.esr);
    let tones: Vec<_> = eval_sine_set()
        .into_iter()
        .filter(|t| t.dbfs == -6.0 && (t.midi == 103 || t.midi == 108))
        .collect();
    let r = measure_tones(
        &m.network,
        fs,
        RunOptions::default(),
        None,
        &tones,
        &no_progress,
    )
    .unwrap();
    for t in &r.tones {
        let db = 10.0 * t.metrics.nmr_s.log10();
        assert!(db > -10.0, "MIDI {}: NMR-S {db}", t.tone.midi);
    }
}

/// `dealias finetune` with no MODEL writes the built-in teacher into the current folder and
/// fine-tunes it there (student, reports, checkpoint); a different file of the teacher's name
/// is never replaced.
#[test]
fn finetune_without_a_model_uses_the_builtin_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dealias"))
        .current_dir(dir.path())
        .args([
            "finetune",
            "--steps",
            "2",
            "--quiet",
            "--validation-stride",
            "40",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let teacher = dir.path().join("dealias-diode-clipper-lstm40.json");
    assert_eq!(
        std::fs::read(&teacher).unwrap(),
        EmbeddedModel::default_model().bytes()
    );
    let student = dir
        .path()
        .join("dealias-diode-clipper-lstm40-dealiased.json");
    let s = dealias::load_model(&student).unwrap();
    assert_ne!(s.network, dealias::load_model(&teacher).unwrap().network);
    // The built-in model imitates the diode clipper: the summary has the -R columns and the
    // G+B metrics on the built-in clips against the device. The teacher models it (G+B ESR
    // -26.7 dB in `dealias compare … --device diode-clipper`; held-out ESR of its training
    // 0.0021), so the value lies well below -15 dB, and it is not the teacher against itself
    // (-inf) nor against the dry input.
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            dir.path()
                .join("dealias-diode-clipper-lstm40-dealiased.json.report.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(report["reference_device"], "diode-clipper");
    assert_eq!(report["gb"]["against"], "the diode-clipper device");
    let gb = report["gb"]["teacher"]["esr_db"].as_f64().unwrap();
    assert!((-60.0..-15.0).contains(&gb), "teacher G+B ESR {gb} dB");
    for role in ["teacher", "student"] {
        let r = &report["reference"][role];
        for k in ["esr_r_db", "nmr_r_db", "hesr_r_db"] {
            assert!(r[k].as_f64().is_some_and(f64::is_finite), "{role} {k}: {r}");
        }
    }
    let html = std::fs::read_to_string(
        dir.path()
            .join("dealias-diode-clipper-lstm40-dealiased.json.report.html"),
    )
    .unwrap();
    for want in [
        "<th>ESR-R</th>",
        "Listen: the built-in guitar clip",
        "Listen: the built-in bass clip",
        "reference (diode-clipper)",
    ] {
        assert!(html.contains(want), "the report lacks {want}");
    }
    // A user's file of the same name stays as it is.
    std::fs::write(&teacher, b"{}").unwrap();
    let again = Command::new(env!("CARGO_BIN_EXE_dealias"))
        .current_dir(dir.path())
        .args(["finetune", "--steps", "2", "--quiet", "--restart"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("is not the built-in"));
    assert_eq!(std::fs::read(&teacher).unwrap(), b"{}");
}

/// A reference device as the -R reference (`compare --device`): the sine set rendered through
/// the circuit, and the teacher's ESR-R on each tone equal to the ESR of its analysed second
/// against the device's, computed here directly from the two signals (to 1e-9; both run from
/// rest in f64).
#[test]
fn device_recordings_are_the_r_reference() {
    use dealias::eval::sine_set::{compare_sine_set_with, device_recordings, SineReference};
    let m = EmbeddedModel::default_model().load().unwrap();
    let fs = 44_100.0;
    let device = Device::by_name("diode-clipper").unwrap();
    let tones: Vec<_> = eval_sine_set()
        .into_iter()
        .filter(|t| (t.midi == 69 && t.dbfs == -18.0) || (t.midi == 100 && t.dbfs == -6.0))
        .collect();
    let recordings = device_recordings(&device, &tones, fs).unwrap();
    let (teacher, _) = compare_sine_set_with(
        &m.network,
        &m.network,
        fs,
        RunOptions::default(),
        &tones,
        SineReference::Recordings(&recordings),
        &no_progress,
    )
    .unwrap();
    let single = dealias::eval::measure_tones_against(
        &m.network,
        fs,
        RunOptions::default(),
        None,
        &tones,
        Some(&recordings),
        &no_progress,
    )
    .unwrap();
    let n = dealias::loss::SineSetAnalyzer::new(fs)
        .unwrap()
        .analyzer()
        .len();
    for (t, r) in tones.iter().zip(&teacher.tones) {
        let x = t.tone.render(fs, dealias::dsp::tones::eval_tone_len(fs));
        let y = m.network.process::<f64>(&x);
        let d = device.render(&x, fs).unwrap();
        let direct = dealias::loss::esr(&y[y.len() - n..], &d[d.len() - n..]);
        let esr_r = r.metrics.esr_r.expect("an -R metric");
        assert!(
            (esr_r / direct - 1.0).abs() < 1e-9,
            "MIDI {}: {esr_r} vs {direct}",
            t.midi
        );
        // One model measured against the device (`measure --device`) gives the same.
        let own = single.tones.iter().find(|s| s.tone == *t).unwrap();
        let esr_r = own.metrics.esr_r.expect("an -R metric");
        assert!(
            (esr_r / direct - 1.0).abs() < 1e-9,
            "measure: {esr_r} vs {direct}"
        );
        assert_eq!(own.metrics.nmr_r, r.metrics.nmr_r);
        assert_eq!(own.metrics.hesr_r, r.metrics.hesr_r);
    }
}

/// `dealias measure --device`: the -R aggregates in the JSON summary, finite, and ESR-R of the
/// built-in model against its device well below the -S values' scale of a copy (-15 dB).
#[test]
fn measure_with_a_device_reports_the_r_columns() {
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/assets/models/dealias-diode-clipper-lstm40.json"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_dealias"))
        .args([
            "measure",
            model,
            "--device",
            "diode-clipper",
            "--level",
            "-18",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let esr_r = v["esr_r_db"].as_f64().unwrap();
    assert!(esr_r < -15.0, "ESR-R {esr_r} dB");
    assert!(v["nmr_r_db"].as_f64().is_some() && v["hesr_r_db"].as_f64().is_some());
    assert!(v["tones"][0]["esr_r_db"].as_f64().is_some());
    let bad = Command::new(env!("CARGO_BIN_EXE_dealias"))
        .args(["measure", model, "--device", "no-such-circuit"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
