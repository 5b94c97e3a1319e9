//! End-to-end tests of `dealias measure`, `compare` and `analyze` with the built binary, on
//! small generated models (fast) and synthetic WAV files.

mod common;

use std::f64::consts::PI;
use std::process::Command;

use common::write_wav;
use serde_json::Value;

fn dealias(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_dealias"))
        .args(args)
        .output()
        .expect("binary runs");
    assert!(
        out.status.success(),
        "dealias {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

fn small(name: &str) -> String {
    common::data(&format!("reference/{name}/{name}.json"))
        .display()
        .to_string()
}

#[test]
fn measure_writes_json_csv_and_figures() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m");
    let v = dealias(&[
        "measure",
        &small("guitarml_lstm4x1_noskip_nobias"),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    for k in ["esr_s_db", "nmr_s_db", "esr_s_mean_db", "nmr_s_mean_db"] {
        assert!(v[k].is_number(), "{k}: {}", v[k]);
    }
    let tones = v["tones"].as_array().unwrap();
    assert_eq!(tones.len(), 264);
    for k in ["midi", "f0_hz", "amplitude_db", "esr_s_db", "nmr_s_db"] {
        assert!(tones[0].get(k).is_some(), "tone key {k}");
    }
    assert_eq!(tones[0]["midi"], 21);
    assert_eq!(tones[263]["amplitude_db"], -6.0);
    let csv = std::fs::read_to_string(out.join("tones.csv")).unwrap();
    assert_eq!(csv.lines().count(), 265);
    assert!(csv.starts_with("midi,f0_hz,amplitude_db,esr_s_db,nmr_s_db,harmonics_db"));
    for f in [
        "summary.json",
        "nmr_s_vs_f0.png",
        "nmr_s_vs_f0.svg",
        "spectrum_2394Hz_-6dBFS.png",
        "spectrum_2394Hz_-6dBFS.svg",
    ] {
        let m = std::fs::metadata(out.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(m.len() > 1000, "{f} is {} bytes", m.len());
    }
    let png = std::fs::read(out.join("nmr_s_vs_f0.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // The 2x oversampled baseline on the -6 dBFS tones.
    let v = dealias(&[
        "measure",
        &small("guitarml_lstm4x1_noskip_nobias"),
        "--oversample",
        "2",
        "--level",
        "-6",
        "--json",
    ]);
    assert_eq!(v["oversample"], 2);
    assert_eq!(v["tones"].as_array().unwrap().len(), 88);
    assert!(v["nmr_s_db"].is_number());
}

#[test]
fn compare_gives_table_1_keys_with_audio() {
    let dir = tempfile::tempdir().unwrap();
    let fs = 44_100;
    // A plucked-string-like clip and a "device recording" of it (a soft clipper).
    let x: Vec<f64> = (0..30_000)
        .map(|n| {
            let t = n as f64 / fs as f64;
            0.4 * (-4.0 * t).exp() * (2.0 * PI * 110.0 * t).sin()
        })
        .collect();
    let r: Vec<f64> = x.iter().map(|v| (3.0 * v).tanh() / 3.0).collect();
    let (xp, rp) = (dir.path().join("di.wav"), dir.path().join("ref.wav"));
    write_wav(&xp, &x, fs);
    write_wav(&rp, &r, fs);
    let teacher = small("guitarml_lstm4x1_noskip_nobias");
    let student = small("guitarml_lstm5x2_skip_bias");
    let v = dealias(&[
        "compare",
        &teacher,
        &student,
        "--audio",
        xp.to_str().unwrap(),
        "--level",
        "-6",
        "--json",
    ]);
    assert_eq!(v["rows"][1]["role"], "student");
    for k in ["esr_t_db", "nmr_t_db", "hesr_t_db", "gb_esr_db", "mrsl"] {
        assert!(v[k].is_number(), "{k}: {}", v[k]);
    }
    // The teacher against itself: HESR-T and G+B ESR are -inf (null), ESR-T equals ESR-S.
    let t = &v["rows"][0];
    assert!(t["hesr_t_db"].is_null() && t["gb_esr_db"].is_null());
    assert!((t["esr_t_db"].as_f64().unwrap() - t["esr_s_db"].as_f64().unwrap()).abs() < 1e-9);
    // Against a device recording both rows have finite G+B metrics.
    let v = dealias(&[
        "compare",
        &teacher,
        &student,
        "--audio",
        xp.to_str().unwrap(),
        "--reference",
        rp.to_str().unwrap(),
        "--level",
        "-36",
        "--json",
    ]);
    assert!(v["rows"][0]["gb_esr_db"].is_number());
    assert!(v["gb_esr_db"].is_number() && v["mrsl"].is_number());

    // Closed forms for the G+B ESR, against the teacher's own output y stored at half
    // amplitude (y/2, f32 WAV): as stored, the reference is y/2 and the teacher's
    // ESR = |y - y/2|^2 / |y/2|^2 = 1 (0 dB) whatever the A-weighting (a linear filter) does;
    // restored by --reference-gain-db 6.0206 (x2) it is y again and only the f32 rounding of
    // the WAV remains (measured -117.6 dB).
    let half = dir.path().join("half.wav");
    let yt = dir.path().join("yt.wav");
    let out = Command::new(env!("CARGO_BIN_EXE_dealias"))
        .args([
            "process",
            &teacher,
            xp.to_str().unwrap(),
            yt.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let y: Vec<f64> = hound::WavReader::open(&yt)
        .unwrap()
        .samples::<f32>()
        .map(|v| v.unwrap() as f64 * 0.5)
        .collect();
    write_wav(&half, &y, fs);
    let gb_against_half = |gain_db: f64| {
        let v = dealias(&[
            "compare",
            &teacher,
            &student,
            "--audio",
            xp.to_str().unwrap(),
            "--reference",
            half.to_str().unwrap(),
            "--reference-gain-db",
            &format!("{gain_db}"),
            "--level",
            "-36",
            "--json",
        ]);
        (
            v["rows"][0]["gb_esr_db"].as_f64().unwrap(),
            v["gb_esr_db"].as_f64().unwrap(),
        )
    };
    let (teacher_db, student_db) = gb_against_half(0.0);
    assert!(
        teacher_db.abs() < 1e-4,
        "teacher G+B ESR {teacher_db} dB, expected 0 dB"
    );
    // The student differs from the teacher, so its G+B ESR differs.
    assert!((student_db - teacher_db).abs() > 0.01);
    let (restored_db, _) = gb_against_half(20.0 * 2f64.log10());
    assert!(restored_db < -100.0, "restored reference: {restored_db} dB");
    // Without --audio the G+B columns are measured on the built-in guitar and bass clips:
    // the same values as those clips given as --audio files (f32 WAVs: the rounding moves the
    // ESR by well under 0.01 dB; measured 1.3e-9 dB).
    let v = dealias(&["compare", &teacher, &student, "--level", "-18", "--json"]);
    assert_eq!(v["gb_clips"], "the built-in guitar and bass clips");
    let builtin = v["gb_esr_db"].as_f64().unwrap();
    let mut args = vec![
        "compare".to_string(),
        teacher.clone(),
        student.clone(),
        "--level".into(),
        "-18".into(),
        "--json".into(),
    ];
    for (name, x) in dealias::dsp::training_signal::test_clips(fs as f64).unwrap() {
        let p = dir.path().join(format!("{name}.wav"));
        write_wav(&p, &x, fs);
        args.extend(["--audio".to_string(), p.display().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let given = dealias(&args)["gb_esr_db"].as_f64().unwrap();
    eprintln!(
        "G+B ESR: built-in clips {builtin} dB, as f32 files {given} dB (difference {:.1e})",
        given - builtin
    );
    assert!(
        (given - builtin).abs() < 0.01,
        "built-in clips {builtin} dB, the same clips as files {given} dB"
    );
    // The teacher against itself: the G+B ESR is -inf (null).
    let v = dealias(&["compare", &teacher, &teacher, "--level", "-18", "--json"]);
    assert!(v["gb_esr_db"].is_null() && v["mrsl"].is_number());
    assert!(v["hesr_t_db"].is_null());
}

/// `--convention paper`: Table 1's columns, labelled, with the -R columns against the teacher's
/// output or a sine-set recording, and the OS2 columns; bad combinations are errors.
#[test]
fn paper_convention_prints_table_1_columns() {
    let teacher = small("guitarml_lstm4x1_noskip_nobias");
    let student = small("guitarml_lstm5x2_skip_bias");
    let v = dealias(&[
        "measure",
        &teacher,
        "--convention",
        "paper",
        "--level",
        "-6",
        "--json",
    ]);
    assert_eq!(v["convention"], "paper");
    let row = &v["table1"]["rows"][0];
    for k in ["esr_s_db", "nmr_s_db", "esr_s_os2_db", "nmr_s_os2_db"] {
        assert!(row[k].is_number(), "{k}: {}", row[k]);
    }
    assert_eq!(row["per_level"]["nmr_s_db"][0]["level_dbfs"], -6.0);
    let v = dealias(&["measure", &teacher, "--level", "-6", "--json"]);
    assert_eq!(v["convention"], "spec");
    // compare: -R against the teacher's output (teacher: -inf = null) and OS2 columns.
    let paper_compare = [
        "compare",
        &teacher,
        &student,
        "--convention",
        "paper",
        "--level",
        "-36",
    ];
    let v = dealias(&[&paper_compare[..], &["--json"]].concat());
    assert_eq!(v["convention"], "paper");
    let (t, s) = (&v["rows"][0], &v["rows"][1]);
    assert_eq!(t["role"], "teacher");
    assert!(t["esr_r_db"].is_null() && t["hesr_r_db"].is_null());
    assert!(t["nmr_r_db"].as_f64().unwrap() < -100.0);
    for k in [
        "esr_r_db",
        "nmr_r_db",
        "hesr_r_db",
        "esr_t_db",
        "nmr_t_db",
        "hesr_t_db",
        "esr_s_db",
        "nmr_s_db",
        "esr_s_os2_db",
        "nmr_s_os2_db",
    ] {
        assert!(s[k].is_number(), "student {k}: {}", s[k]);
    }
    // A sine-set recording of the wrong length is refused, naming the file.
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec.wav");
    write_wav(&rec, &vec![0.0; 1000], 44_100);
    let err = dealias_fails(
        &[
            &paper_compare[..],
            &["--sine-reference", rec.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(
        err.contains("rec.wav") && err.contains("88 x 52920"),
        "{err}"
    );
    let err = dealias_fails(&[
        "measure",
        &teacher,
        "--convention",
        "paper",
        "--oversample",
        "2",
    ]);
    assert!(err.contains("--oversample"), "{err}");
}

/// Runs the binary expecting failure; returns its stderr.
fn dealias_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_dealias"))
        .args(args)
        .output()
        .expect("binary runs");
    assert!(!out.status.success(), "dealias {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A tone with known harmonics plus one inharmonic component of known power: ESR-S is the
/// power ratio of the inharmonic part to the harmonic part, and the harmonic amplitudes are
/// recovered.
#[test]
fn analyze_recovers_known_aliasing() {
    let dir = tempfile::tempdir().unwrap();
    let fs = 44_100u32;
    let f0 = 1000.0;
    let harm = [0.5, 0.25, 0.1];
    let alias_amp = 0.01;
    let alias_f = 1517.0;
    let x: Vec<f64> = (0..(fs as usize * 6 / 5))
        .map(|n| {
            let t = n as f64 / fs as f64;
            harm.iter()
                .enumerate()
                .map(|(m, a)| a * (2.0 * PI * (m + 1) as f64 * f0 * t + 0.3 * m as f64).sin())
                .sum::<f64>()
                + alias_amp * (2.0 * PI * alias_f * t).sin()
        })
        .collect();
    let p = dir.path().join("tone.wav");
    write_wav(&p, &x, fs);
    let v = dealias(&["analyze", p.to_str().unwrap(), "--f0", "1000", "--json"]);
    let want = 10.0 * (alias_amp * alias_amp / harm.iter().map(|a| a * a).sum::<f64>()).log10();
    let got = v["esr_s_db"].as_f64().unwrap();
    assert!(
        (got - want).abs() < 0.05,
        "ESR-S {got} dB, expected {want} dB"
    );
    assert!(v["nmr_s_db"].is_number());
    let h = v["harmonics_db"].as_array().unwrap();
    assert_eq!(h.len(), 22);
    for (m, a) in harm.iter().enumerate() {
        let d = h[m].as_f64().unwrap() - 20.0 * a.log10();
        assert!(d.abs() < 0.01, "harmonic {}: off by {d} dB", m + 1);
    }
    assert!(h[5].as_f64().unwrap() < -100.0);
}
