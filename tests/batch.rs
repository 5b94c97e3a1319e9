//! `dealias batch` end to end through the built binary: shards that together fine-tune each
//! model exactly once, a shard killed (SIGKILL) mid-training and restarted that ends with the
//! bytes of an uninterrupted run, two processes given the same shard, and a broken model that
//! fails alone with a non-zero exit.
//!
//! Runs are tiny (GuitarML models of a few hundred parameters at the sine set's lowest rate,
//! 20 steps of 2 tones); most of each model's seconds go to the before/after summary.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The committed models the batches run on (none states a sample rate, so `--rate` applies).
const MODELS: &[&str] = &[
    "guitarml_gru3x3_noskip_nobias",
    "guitarml_gru7x1_skip_bias",
    "guitarml_lstm4x1_noskip_nobias",
    "guitarml_lstm5x2_skip_bias",
];

/// Settings of every run: deterministic (seed, one thread, a step budget) and small.
const SETTINGS: &[&str] = &[
    "--batch-size",
    "2",
    "--tones-per-epoch",
    "4",
    "--validation-stride",
    "24",
    "--validate-every",
    "10",
    "--rate",
    "8400",
    "--pre-emphasis",
    "none",
    "--frame-seconds",
    "0.25",
    "--threads",
    "1",
    "--seed",
    "7",
    "--quiet",
];

/// A library folder with `models` copied in and a manifest `models.txt` listing them
/// (relative to it), after a comment line; `extra` lines are appended.
fn library(dir: &Path, models: &[&str], extra: &[&str]) -> PathBuf {
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let mut manifest = String::from("# models of the test\n\n");
    for m in models {
        let src = common::data(&format!("reference/{m}/{m}.json"));
        std::fs::copy(&src, lib.join(format!("{m}.json"))).unwrap();
        manifest.push_str(&format!("{m}.json\n"));
    }
    for e in extra {
        manifest.push_str(&format!("{e}\n"));
    }
    let path = lib.join("models.txt");
    std::fs::write(&path, manifest).unwrap();
    path
}

/// `dealias batch MANIFEST --out OUT --steps STEPS SETTINGS... EXTRA...`, with no scheduler
/// variables from the environment the tests run in.
fn batch(manifest: &Path, out: &Path, steps: u64, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dealias"));
    c.arg("batch")
        .arg(manifest)
        .arg("--out")
        .arg(out)
        .args(["--steps", &steps.to_string()])
        .args(SETTINGS)
        .args(extra);
    for v in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_COUNT",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_STEP",
        "JOB_COMPLETION_INDEX",
        "DEALIAS_SHARDS",
    ] {
        c.env_remove(v);
    }
    c.stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(
        &std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// The rows of a summary file, by model key.
fn rows(path: &Path) -> Vec<Value> {
    json(path)["models"].as_array().unwrap().clone()
}

/// Checks that `out/NAME` is a complete output: it loads, and its report is complete and
/// records its checksum.
fn assert_complete(out: &Path, name: &str) {
    let model = out.join(name);
    dealias::load_model(&model).unwrap_or_else(|e| panic!("{name}: {e}"));
    let report = json(&out.join(format!("{name}.report.json")));
    assert_eq!(report["complete"], true, "{name}");
    assert_eq!(
        report["model"]["checksum"].as_str().unwrap(),
        dealias::io::checksum(&std::fs::read(&model).unwrap()),
        "{name}: report and model disagree"
    );
    assert!(out.join(format!("{name}.report.html")).exists(), "{name}");
}

/// Output model files in `out` (not reports, checkpoints or summaries).
fn outputs(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.ends_with(".json")
                && !n.contains(".report.")
                && !n.contains(".checkpoint.")
                && !n.starts_with("summary")
                && !n.starts_with('.')
        })
        .collect();
    v.sort();
    v
}

/// Three shards (chosen by `--shard`, by Slurm's and by Kubernetes's variables) run at once
/// over four models: each model is fine-tuned by exactly one shard (k mod 3), the parts are
/// disjoint, and the merged summary lists each model once, done; a shard run again skips
/// its finished models and exits 0.
#[test]
fn shards_together_fine_tune_each_model_once() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = library(dir.path(), MODELS, &[]);
    let out = dir.path().join("out");
    let mut s0 = batch(&manifest, &out, 20, &["--shard", "0/3"]);
    let mut s1 = batch(&manifest, &out, 20, &[]);
    s1.env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "3");
    let mut s2 = batch(&manifest, &out, 20, &[]);
    s2.env("JOB_COMPLETION_INDEX", "2")
        .env("DEALIAS_SHARDS", "3");
    let children: Vec<Child> = [s0.spawn(), s1.spawn(), s2.spawn()]
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    let names: Vec<String> = MODELS.iter().map(|m| format!("{m}.json")).collect();
    assert_eq!(outputs(&out), names);
    for n in &names {
        assert_complete(&out, n);
    }
    // Position k (in sorted order, which MODELS is) belongs to shard k mod 3.
    for i in 0..3 {
        let part = rows(&out.join(format!("summary.shard-{i}-of-3.json")));
        let keys: Vec<&str> = part.iter().map(|r| r["model"].as_str().unwrap()).collect();
        let want: Vec<&str> = names
            .iter()
            .enumerate()
            .filter(|(k, _)| k % 3 == i)
            .map(|(_, n)| n.as_str())
            .collect();
        assert_eq!(keys, want, "shard {i}");
        assert!(part.iter().all(|r| r["status"] == "done"), "{part:?}");
    }
    let merged = rows(&out.join("summary.json"));
    assert_eq!(merged.len(), 4);
    for (r, n) in merged.iter().zip(&names) {
        assert_eq!(r["model"], n.as_str());
        assert_eq!(r["output"], n.as_str());
        assert_eq!(r["status"], "done");
        for k in ["nmr_s_before_db", "nmr_s_after_db", "esr_t_db"] {
            assert!(r[k].as_f64().is_some(), "{k}: {r}");
        }
    }
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(csv.lines().skip(1).all(|l| l.contains(",done,")), "{csv}");

    // Idempotent: shard 0 again finds its two models done.
    let before = std::fs::read(out.join(&names[0])).unwrap();
    let o = batch(&manifest, &out, 20, &["--shard", "0/3"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0 done, 2 skipped"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read(out.join(&names[0])).unwrap(), before);
    let part = rows(&out.join("summary.shard-0-of-3.json"));
    assert!(part
        .iter()
        .all(|r| r["status"] == "skipped" && r["reason"] == "already done with these settings"));
    assert!(part[0]["nmr_s_after_db"].as_f64().is_some());
    // Other settings: the finished models are neither taken as this run's nor overwritten.
    let o = batch(&manifest, &out, 21, &["--shard", "0/3"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("fine-tuned with other settings"),
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read(out.join(&names[0])).unwrap(), before);
    let part = rows(&out.join("summary.shard-0-of-3.json"));
    assert!(part.iter().all(|r| r["status"] == "failed"), "{part:?}");
    // A shard index out of range is refused before anything runs.
    let o = batch(&manifest, &out, 20, &["--shard", "3/3"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("out of range"),
        "{}",
        text(&o)
    );
}

/// The step of a checkpoint file, if it can be read (it is replaced atomically).
fn checkpoint_step(path: &Path) -> Option<u64> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["payload"]["step"].as_u64()
}

/// A shard killed with SIGKILL in the middle of training, then run again, resumes from its
/// checkpoint and ends with the same model file, byte for byte, as an uninterrupted run.
#[test]
fn a_shard_killed_mid_training_resumes_to_the_same_bytes() {
    const STEPS: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let model = "guitarml_lstm5x2_skip_bias";
    let manifest = library(dir.path(), &[model], &[]);
    let (whole, killed) = (dir.path().join("whole"), dir.path().join("killed"));
    // A checkpoint after every batch, so that the kill lands between two of them.
    let often = ["--checkpoint-minutes", "0.0001"];
    let reference = batch(&manifest, &whole, STEPS, &often).spawn().unwrap();

    let name = format!("{model}.json");
    let ck = killed.join(format!("{name}.checkpoint.json"));
    let mut victim = batch(&manifest, &killed, STEPS, &often).spawn().unwrap();
    let start = Instant::now();
    let step = loop {
        if let Some(s) = checkpoint_step(&ck).filter(|&s| s >= 8) {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no checkpoint appeared"
        );
        assert!(victim.try_wait().unwrap().is_none(), "the run ended early");
        std::thread::sleep(Duration::from_millis(10));
    };
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    assert!(step < STEPS, "killed after training ({step} steps)");
    assert!(
        !killed.join(&name).exists(),
        "the kill came after the output was written"
    );
    assert!(checkpoint_step(&ck).unwrap() < STEPS);

    let o = batch(&manifest, &killed, STEPS, &often).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("(resuming)"),
        "{}",
        text(&o)
    );
    let o = reference.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_complete(&killed, &name);
    assert_eq!(
        std::fs::read(killed.join(&name)).unwrap(),
        std::fs::read(whole.join(&name)).unwrap(),
        "the resumed run's model differs from the uninterrupted one's"
    );
    let r = &rows(&killed.join("summary.json"))[0];
    assert_eq!(r["status"], "done");
    assert_eq!(
        r["nmr_s_after_db"],
        rows(&whole.join("summary.json"))[0]["nmr_s_after_db"]
    );
    // No temporary files were left behind.
    for e in std::fs::read_dir(&killed).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!n.contains("dealias-tmp"), "{n}");
    }
}

/// Two processes given the same shard at the same moment share it: each model is fine-tuned
/// by one of them (the other finds it done), the outputs are complete and the summary lists
/// each model once with its numbers.
#[test]
fn two_processes_on_one_shard_share_it() {
    let dir = tempfile::tempdir().unwrap();
    let models = &MODELS[..2];
    let manifest = library(dir.path(), models, &[]);
    let out = dir.path().join("out");
    let a = batch(&manifest, &out, 20, &["--shard", "0/1"])
        .spawn()
        .unwrap();
    let b = batch(&manifest, &out, 20, &["--shard", "0/1"])
        .spawn()
        .unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", text(&a));
    assert!(b.status.success(), "{}", text(&b));
    let done = |o: &Output| -> usize {
        let s = String::from_utf8_lossy(&o.stdout);
        let line = s
            .lines()
            .find(|l| l.starts_with("shard 0/1:"))
            .unwrap()
            .to_string();
        line["shard 0/1: ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        done(&a) + done(&b),
        2,
        "each model once:\n{}\n{}",
        text(&a),
        text(&b)
    );
    let names: Vec<String> = models.iter().map(|m| format!("{m}.json")).collect();
    assert_eq!(outputs(&out), names);
    for n in &names {
        assert_complete(&out, n);
    }
    let merged = rows(&out.join("summary.json"));
    assert_eq!(merged.len(), 2);
    for (r, n) in merged.iter().zip(&names) {
        assert_eq!(r["model"], n.as_str());
        assert!(r["status"] == "done" || r["status"] == "skipped", "{r}");
        assert!(r["esr_t_db"].as_f64().is_some(), "{r}");
    }
    assert!(!out.join(".summary.json.lock").exists());
}

/// A broken model file and a missing one fail alone: the others are done, the exit status is
/// 1, and the failures are listed on stderr and in the summary with their reasons.
#[test]
fn a_broken_model_fails_alone_with_a_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let good = MODELS[3];
    let manifest = library(dir.path(), &[good], &["broken.json", "missing.nam"]);
    std::fs::write(dir.path().join("lib/broken.json"), "{\"model_data\": {").unwrap();
    let out = dir.path().join("out");
    let o = batch(&manifest, &out, 20, &[]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("failed: broken.json:"), "{err}");
    assert!(err.contains("failed: missing.nam:"), "{err}");
    assert_complete(&out, &format!("{good}.json"));
    let merged = rows(&out.join("summary.json"));
    let status: Vec<(&str, &str)> = merged
        .iter()
        .map(|r| (r["model"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        status,
        vec![
            ("broken.json", "failed"),
            (&*format!("{good}.json"), "done"),
            ("missing.nam", "failed")
        ]
    );
    assert!(
        merged[0]["reason"].as_str().unwrap().contains("JSON"),
        "{:?}",
        merged[0]
    );
    assert!(!out.join("broken.json").exists());
}
