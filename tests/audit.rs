//! `dealias audit` end to end: a folder with two small models, one unreadable file and a
//! nested folder; the ranking, the per-level aggregates, the listed failure, the exit code and
//! the three output files; a rerun with the same output folder reuses the kept results, and
//! a changed model file is measured again.

mod common;

use std::process::Command;

#[test]
fn audit_ranks_models_and_lists_failures() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("library");
    std::fs::create_dir_all(lib.join("nested")).unwrap();
    for (rel, to) in [
        (
            "reference/guitarml_lstm4x1_noskip_nobias/guitarml_lstm4x1_noskip_nobias.json",
            lib.join("a.json"),
        ),
        (
            "reference/nam_lstm_1x5/nam_lstm_1x5.nam",
            lib.join("nested").join("b.nam"),
        ),
    ] {
        std::fs::copy(common::data(rel), to).unwrap();
    }
    std::fs::write(lib.join("broken.json"), "{\"foo\": 1}").unwrap();
    std::fs::write(lib.join("notes.txt"), "not a model").unwrap();
    let out_dir = dir.path().join("out");
    let run_audit = || {
        Command::new(env!("CARGO_BIN_EXE_dealias"))
            .args([
                "audit",
                lib.to_str().unwrap(),
                "--out",
                out_dir.to_str().unwrap(),
                "--json",
            ])
            .output()
            .unwrap()
    };
    let out = run_audit();
    // One file could not be measured: a non-zero exit, after writing everything.
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 3 files"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let models = v["models"].as_array().unwrap();
    assert_eq!(models.len(), 2, "the .txt file is not a model file");
    let failed = v["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert!(failed[0]["path"].as_str().unwrap().ends_with("broken.json"));
    assert!(failed[0]["reason"]
        .as_str()
        .unwrap()
        .contains("unknown model format"));
    // Ranked worst first.
    let nmr: Vec<f64> = models
        .iter()
        .map(|m| m["nmr_s_db"].as_f64().unwrap())
        .collect();
    assert!(nmr[0] >= nmr[1], "{nmr:?}");
    for m in models {
        // Each level has 88 tones, so the mean over all tones is the mean of the three
        // per-level means: 10 log10 of the mean of 10^(level dB / 10) gives the overall value.
        let lv: Vec<f64> = m["per_level"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["nmr_s_db"].as_f64().unwrap())
            .collect();
        assert_eq!(lv.len(), 3);
        let mean = lv.iter().map(|d| 10f64.powf(d / 10.0)).sum::<f64>() / 3.0;
        let overall = m["nmr_s_db"].as_f64().unwrap();
        assert!(
            (10.0 * mean.log10() - overall).abs() < 1e-9,
            "{lv:?} vs {overall}"
        );
        let worst = m["worst_tone"]["nmr_s_db"].as_f64().unwrap();
        assert!(worst >= lv.iter().cloned().fold(f64::MIN, f64::max));
    }
    // The GuitarML file states no rate: measured at 44.1 kHz, marked as assumed.
    let a = models
        .iter()
        .find(|m| m["path"].as_str().unwrap().ends_with("a.json"))
        .unwrap();
    assert_eq!(a["sample_rate"], 44100.0);
    assert_eq!(a["sample_rate_assumed"], true);
    let csv = std::fs::read_to_string(out_dir.join("audit.csv")).unwrap();
    assert_eq!(csv.lines().count(), 4);
    let fields = csv.lines().next().unwrap().split(',').count();
    for line in csv.lines().take(3) {
        assert_eq!(line.split(',').count(), fields, "{line}");
    }
    let html = std::fs::read_to_string(out_dir.join("audit.html")).unwrap();
    assert_eq!(html.matches("<polyline").count(), 6, "3 curves per model");
    assert!(html.contains("broken.json") && html.contains("Not measured"));
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("audit.json")).unwrap()).unwrap();
    assert_eq!(j["models"].as_array().unwrap().len(), 2);

    // Each measured model was kept in out/measured/ (the failure is not kept: tried again).
    let kept_dir = out_dir.join("measured");
    let mut kept: Vec<_> = std::fs::read_dir(&kept_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    kept.sort();
    assert_eq!(kept.len(), 2);
    // Mark every kept result (a value no measurement gives), so the rerun shows which it used.
    for k in &kept {
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(k).unwrap()).unwrap();
        v["entry"]["nmr_s_db"] = 99.0.into();
        std::fs::write(k, serde_json::to_vec(&v).unwrap()).unwrap();
    }
    // Change b.nam's bytes (not its model): it must be measured again, a.json reused.
    let b = lib.join("nested").join("b.nam");
    let mut text = std::fs::read(&b).unwrap();
    text.push(b'\n');
    std::fs::write(&b, text).unwrap();
    let rerun = || {
        let v: serde_json::Value = serde_json::from_slice(&run_audit().stdout).unwrap();
        v["models"].as_array().unwrap().clone()
    };
    let models2 = rerun();
    let nmr_of = |ms: &[serde_json::Value], name: &str| {
        ms.iter()
            .find(|m| m["path"].as_str().unwrap().ends_with(name))
            .unwrap()["nmr_s_db"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(
        nmr_of(&models2, "a.json"),
        99.0,
        "a.json's kept result reused"
    );
    let b_first = nmr_of(models, "b.nam");
    assert_eq!(nmr_of(&models2, "b.nam"), b_first, "b.nam measured again");
    assert_eq!(std::fs::read_dir(&kept_dir).unwrap().count(), 3);
    // A kept result that is corrupt is measured again, not trusted.
    let a_kept = kept
        .iter()
        .find(|k| std::fs::read_to_string(k).unwrap().contains("a.json"))
        .unwrap();
    std::fs::write(a_kept, "{\"key\": ").unwrap();
    let models3 = rerun();
    assert_eq!(nmr_of(&models3, "a.json"), nmr_of(models, "a.json"));
}
