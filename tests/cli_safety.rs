//! Bad input and faults against the built binary: every option and file is checked before
//! any work with a message naming it, outputs never destroy inputs or each other, two runs
//! never write one result, checkpoints refuse corruption, and an interrupted `finetune` exits
//! with 130 / 143 saying what it wrote. One test (or one case of a table) per defect found
//! by probing the command line as a hostile user would.
//!
//! Models are the tiny generated ones of `tests/data/reference`; fine-tuning runs at 16 kHz
//! without pre-emphasis and stops after a few steps, so the file takes seconds.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn dealias(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dealias"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `dealias args`, expecting failure with exit status 1 and `expect` in the message.
fn fails_with(args: &[&str], expect: &str) -> String {
    let t0 = Instant::now();
    let o = dealias(args);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "dealias {args:?}: {e}");
    assert!(
        e.contains(expect),
        "dealias {args:?}: expected {expect:?} in {e}"
    );
    assert!(!e.contains("panicked"), "{e}");
    // Refused up front, not after minutes of work.
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "{args:?} took {:?}",
        t0.elapsed()
    );
    e
}

/// A GuitarML LSTM without sample rate (4 units), copied into `dir`.
fn small_model(dir: &Path) -> PathBuf {
    let src = common::data(
        "reference/guitarml_lstm4x1_noskip_nobias/guitarml_lstm4x1_noskip_nobias.json",
    );
    let p = dir.join("m.json");
    std::fs::copy(src, &p).unwrap();
    p
}

/// A NAM LSTM that states 48 kHz.
fn nam_model() -> String {
    common::data("reference/nam_lstm_1x5/nam_lstm_1x5.nam")
        .display()
        .to_string()
}

fn write_wav(path: &Path, rate: u32, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels: 1,
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

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Quick fine-tuning settings (16 kHz, no pre-emphasis, tiny batches).
const QUICK: [&str; 13] = [
    "--rate",
    "16000",
    "--frame-seconds",
    "0.25",
    "--pre-emphasis",
    "none",
    "--batch-size",
    "2",
    "--tones-per-epoch",
    "4",
    "--validation-stride",
    "44",
    "--quiet",
];

fn finetune_args<'a>(model: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["finetune", model, "-o", out];
    a.extend_from_slice(&QUICK);
    a.extend_from_slice(extra);
    a
}

/// Options out of range (NaN and infinities included) are refused before anything is read
/// or written, naming the option and the accepted range. Before: `--minutes -1`, NaN, inf and
/// `--checkpoint-minutes` likewise panicked in a Duration conversion; `--lr NaN` trained and
/// failed at the end; `--tone-seconds 1e9` and `--batch-size 100000` aborted on allocation;
/// `--rate 0` leaked "harmonic analysis length must be even and positive".
#[test]
fn finetune_options_are_checked_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let m = small_model(dir.path());
    let out = dir.path().join("o.json");
    // Values the option parser refuses: a usage error (status 2) naming the accepted form.
    for (value, expect) in [
        (
            "110:0.5",
            "focus notes 110 to 108.5, share 0.5: give MIDI notes 21 <= from < to <= 127",
        ),
        ("96:1.5", "share 1.5"),
        ("high", "give `paper` or `MIDI:SHARE`"),
    ] {
        let o = dealias(&finetune_args(s(&m), s(&out), &["--focus-notes", value]));
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{value}: {e}");
        assert!(e.contains(expect), "{value}: expected {expect:?} in {e}");
    }
    let cases: &[(&[&str], &str)] = &[
        (
            &["--minutes=-1"],
            "--minutes -1: must be a number of minutes above 0",
        ),
        (&["--minutes", "NaN"], "--minutes NaN"),
        (&["--minutes", "inf"], "--minutes inf"),
        (&["--checkpoint-minutes", "NaN"], "--checkpoint-minutes NaN"),
        (&["--checkpoint-minutes=-5"], "--checkpoint-minutes -5"),
        (&["--steps", "0"], "--steps 0: must be at least 1"),
        (&["--epochs", "0"], "--epochs 0: must be at least 1"),
        (
            &["--threads", "1000000"],
            "--threads 1000000: must be from 1 to 1024",
        ),
        (
            &["--lr", "NaN"],
            "--lr: the learning rate NaN must be a finite number above 0",
        ),
        (&["--lr=-1"], "--lr: the learning rate -1"),
        (&["--lambda", "inf"], "--lambda: the loss weight inf"),
        (&["--tone-seconds", "NaN"], "--tone-seconds: tones of NaN s"),
        (
            &["--tone-seconds", "1e9"],
            "needs at least 512 TB of memory, more than this machine",
        ),
        (&["--validate-every", "0"], "--validate-every 0"),
    ];
    for (extra, expect) in cases {
        fails_with(&finetune_args(s(&m), s(&out), extra), expect);
    }
    // Options that QUICK sets itself, given alone.
    let bare: &[(&[&str], &str)] = &[
        (
            &["--rate", "0"],
            "--rate 0: the sample rate must be an even whole number of Hz",
        ),
        (
            &[
                "--rate",
                "16000",
                "--batch-size",
                "10000000",
                "--tones-per-epoch",
                "10000000",
            ],
            "--batch-size / --tone-seconds: a batch of 10000000 tones",
        ),
        (
            &["--rate", "16000", "--frame-seconds", "0"],
            "--frame-seconds: frames of 0 s",
        ),
        (
            &["--rate", "16000", "--validation-stride", "0"],
            "--validation-stride: 0 must be from 1 to 88",
        ),
    ];
    for (extra, expect) in bare {
        let mut a = vec!["finetune", s(&m), "-o", s(&out)];
        a.extend_from_slice(extra);
        fails_with(&a, expect);
    }
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the model is there: {left:?}");
}

/// Evaluation options: the oversampling factor and the rate are bounded by the machine's
/// memory (before: `measure --oversample 1000000` and `--rate 1e9` aborted on allocation),
/// `--rate 0` names the option, `analyze --f0 1e-6` (353 GB) and NaN are refused, and
/// `--reference-gain-db NaN` (which gave a G+B ESR of null, "perfect") too.
#[test]
fn evaluation_options_are_bounded() {
    let m = nam_model();
    fails_with(
        &["measure", &m, "--oversample", "1000000"],
        "--oversample 1000000 at 48000 Hz (the model's rate, or --rate): the sine-set evaluation",
    );
    let dir = tempfile::tempdir().unwrap();
    let g = small_model(dir.path());
    fails_with(
        &["measure", s(&g), "--rate", "1e9"],
        "more than this machine",
    );
    fails_with(
        &["measure", s(&g), "--rate", "0"],
        "--rate 0: the sample rate must be",
    );
    fails_with(&["measure", s(&g), "--rate", "44101"], "--rate 44101");
    fails_with(
        &["measure", &m, "--oversample", "0"],
        "--oversample 0: must be at least 1",
    );
    fails_with(
        &["compare", &m, &m, "--reference-gain-db", "NaN"],
        "--reference-gain-db NaN: must be a number from -120 to 120 dB",
    );
    let tone = dir.path().join("t.wav");
    let x: Vec<f32> = (0..48000).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
    write_wav(&tone, 48000, &x);
    for f0 in ["1e-6", "NaN", "0"] {
        fails_with(
            &["analyze", s(&tone), "--f0", f0],
            "the fundamental must be a finite frequency of at least 20 Hz",
        );
    }
    fails_with(
        &["analyze", s(&tone), "--f0", "30000"],
        "below half the sample rate",
    );
}

/// WAV files: a header stating 0 Hz (before: a division by zero in `process`), a truncated
/// file (before: "Failed to read enough bytes." for every short WAV) and a file too short for
/// `analyze` each get a message saying what is wrong.
#[test]
fn bad_wav_files_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let m = nam_model();
    let wav = dir.path().join("in.wav");
    write_wav(&wav, 48000, &[0.1; 100]);
    let good = std::fs::read(&wav).unwrap();
    let out = dir.path().join("out.wav");

    let mut zero_hz = good.clone();
    zero_hz[24..28].copy_from_slice(&0u32.to_le_bytes());
    std::fs::write(&wav, &zero_hz).unwrap();
    fails_with(&["process", &m, s(&wav), s(&out)], "sample rate of 0 Hz");

    std::fs::write(&wav, &good[..good.len() - 7]).unwrap();
    let e = fails_with(&["process", &m, s(&wav), s(&out)], "the file is truncated");
    assert!(!e.contains("Failed to read enough bytes"), "{e}");

    std::fs::write(&wav, &good[..20]).unwrap();
    fails_with(
        &["process", &m, s(&wav), s(&out)],
        "the fmt chunk declares 40 bytes but the file ends after 0",
    );

    std::fs::write(&wav, &good).unwrap();
    fails_with(
        &["analyze", s(&wav), "--f0", "440"],
        "is 0.002 s long (100 samples at 48000 Hz); the analysis needs at least one second",
    );
    assert!(!out.exists());
}

/// Model paths that are not regular files are refused at once: a FIFO (before: blocked for
/// ever), `/dev/zero` (before: read until memory ran out), a directory.
#[cfg(unix)]
#[test]
fn only_regular_files_are_read_as_models() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.nam");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: mkfifo on a path in a fresh temporary directory.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    fails_with(
        &["inspect", s(&fifo)],
        "is a FIFO (named pipe), not a model file",
    );
    fails_with(
        &["inspect", "/dev/zero"],
        "is a character device, not a model file",
    );
    fails_with(
        &["inspect", s(dir.path())],
        "is a directory, not a model file",
    );
}

/// An OS error is printed once (before: "x: No such file or directory (os error 2): No such
/// file or directory (os error 2)").
#[test]
fn os_errors_are_printed_once() {
    let o = dealias(&["inspect", "/nonexistent/model.nam"]);
    let e = stderr(&o);
    assert_eq!(e.matches("No such file or directory").count(), 1, "{e}");
}

/// Outputs never destroy inputs or each other. Before: `finetune MODEL --checkpoint MODEL`
/// overwrote the model with checkpoint JSON and exited 0; `--checkpoint` equal to `-o` made a
/// resume impossible; an output that is a device or a symlink was replaced by a regular file;
/// `-o missing/dir/x.json` trained and then failed.
#[test]
fn outputs_never_alias_inputs_or_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let m = small_model(dir.path());
    let before = std::fs::read(&m).unwrap();
    let out = dir.path().join("o.json");
    fails_with(
        &finetune_args(s(&m), s(&out), &["--checkpoint", s(&m)]),
        "(the checkpoint) is the same file as the input",
    );
    fails_with(
        &finetune_args(s(&m), s(&out), &["--checkpoint", s(&out)]),
        "are the same file; every output needs its own path",
    );
    #[cfg(unix)]
    {
        let hard = dir.path().join("hard.json");
        std::fs::hard_link(&m, &hard).unwrap();
        fails_with(
            &finetune_args(s(&m), s(&hard), &[]),
            "is the same file as the input",
        );
    }
    let missing = dir.path().join("missing").join("x.json");
    fails_with(&finetune_args(s(&m), s(&missing), &[]), "does not exist");
    assert_eq!(std::fs::read(&m).unwrap(), before, "the input changed");

    // process: a symlink or a device as OUT.wav is refused and left as it was.
    let wav = dir.path().join("in.wav");
    write_wav(&wav, 48000, &[0.1; 64]);
    let nam = nam_model();
    #[cfg(unix)]
    {
        let target = dir.path().join("target.wav");
        std::fs::write(&target, b"keep").unwrap();
        let link = dir.path().join("link.wav");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        fails_with(&["process", &nam, s(&wav), s(&link)], "is a symbolic link");
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        fails_with(
            &["process", &nam, s(&wav), "/dev/null"],
            "is a character device",
        );
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
    }
    fails_with(
        &["process", &nam, s(&wav), s(&wav)],
        "is the same file as the input",
    );
}

/// A second run writing the same result stops with a clear message while the first holds it
/// (before: two runs interleaved, the model of one beside the report of the other).
#[test]
fn two_runs_cannot_write_one_result() {
    let dir = tempfile::tempdir().unwrap();
    let m = small_model(dir.path());
    let out = dir.path().join("o.json");
    // Hold the output as a running `dealias` would.
    let held = dealias::io::Outputs::new()
        .output(&out, "-o")
        .claim()
        .unwrap();
    let e = fails_with(
        &finetune_args(s(&m), s(&out), &["--steps", "1"]),
        "is being written by another dealias run",
    );
    assert!(
        e.contains(&format!("process {}", std::process::id())),
        "{e}"
    );
    drop(held);
    assert!(!out.exists());
}

/// A complete run: the report (written first) names the model's checksum, a stale temporary
/// file of a killed writer is cleaned up, no lock files remain, and a second run into the same
/// checkpoint without `--resume` is refused instead of destroying the resumable state.
#[test]
fn a_run_leaves_a_consistent_result_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let m = small_model(dir.path());
    let out = dir.path().join("o.json");
    let stale = dir.path().join(".o.json.Xy12Zw.dealias-tmp.json");
    std::fs::write(&stale, vec![0u8; 4096]).unwrap();
    let o = dealias(&finetune_args(s(&m), s(&out), &["--steps", "2"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !stale.exists(),
        "the killed writer's temporary file is still there"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("o.json.report.json")).unwrap())
            .unwrap();
    let model_bytes = std::fs::read(&out).unwrap();
    assert_eq!(
        report["model"]["checksum"],
        dealias::io::checksum(&model_bytes)
    );
    assert_eq!(report["complete"], true);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.ends_with(".lock") || n.contains("dealias-tmp")),
        "{names:?}"
    );
    fails_with(
        &finetune_args(s(&m), s(&out), &["--steps", "2"]),
        "holds the checkpoint of an earlier run; continue that run with --resume",
    );
    let o = dealias(&finetune_args(
        s(&m),
        s(&out),
        &["--steps", "2", "--restart"],
    ));
    assert!(o.status.success(), "{}", stderr(&o));
}

/// An altered checkpoint is refused on `--resume` (before: an altered weight or a step count
/// of 10^12 was accepted silently, and Adam moments one value short panicked).
#[test]
fn altered_checkpoints_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = small_model(dir.path());
    let out = dir.path().join("o.json");
    // One batch of 4 frames: the checkpoint is at step 4.
    let o = dealias(&finetune_args(s(&m), s(&out), &["--steps", "4"]));
    assert!(o.status.success(), "{}", stderr(&o));
    let ck = dir.path().join("o.json.checkpoint.json");
    let text = std::fs::read_to_string(&ck).unwrap();
    let resume = finetune_args(s(&m), s(&out), &["--steps", "8", "--resume"]);
    for (from, to) in [
        ("\"step\":4,", "\"step\":1000000000000,"),
        ("\"params\":[", "\"params\":[1e3,"),
    ] {
        assert!(text.contains(from), "{from}");
        std::fs::write(&ck, text.replacen(from, to, 1)).unwrap();
        fails_with(&resume, "the checkpoint is corrupt or was edited");
    }
    // Adam moments one value short, with the checksum recomputed (as a buggy writer would).
    let mut c = dealias::train::checkpoint::Checkpoint::from_bytes(text.as_bytes()).unwrap();
    c.adam.m.pop();
    std::fs::write(&ck, c.to_bytes().unwrap()).unwrap();
    fails_with(&resume, "adam.m has");
    std::fs::write(&ck, &text).unwrap();
    let o = dealias(&resume);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Spawns `dealias args`, waits for a line containing `when` on stderr, sends `signal`, and
/// returns the exit status and all of stderr.
#[cfg(unix)]
fn interrupt(args: &[&str], when: &str, signal: i32) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dealias"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut all = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        all.push_str(&line);
        all.push('\n');
        if line.contains(when) {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(child.id() as i32, signal) };
            break;
        }
    }
    for line in lines {
        all.push_str(&line.unwrap());
        all.push('\n');
    }
    (child.wait().unwrap().code(), all)
}

/// Interrupted mid-run (SIGINT, Ctrl-C): exit 130, the best student so far and its report
/// written and marked partial, and the run resumable. Before: exit 0.
#[cfg(unix)]
#[test]
fn sigint_exits_130_saying_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let m = small_model(dir.path());
    let out = dir.path().join("o.json");
    let args = finetune_args(
        s(&m),
        s(&out),
        &["--steps", "100000", "--validate-every", "1"],
    );
    let (code, err) = interrupt(&args, "validation at step", libc::SIGINT);
    assert_eq!(code, Some(130), "{err}");
    assert!(
        err.contains("is the best student of a partial run"),
        "{err}"
    );
    assert!(err.contains("--resume"), "{err}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("o.json.report.json")).unwrap())
            .unwrap();
    assert_eq!(report["complete"], false);
    assert_eq!(report["stop"], "interrupted (SIGINT)");
    assert!(dealias::load_model(&out).is_ok());
    assert!(dir.path().join("o.json.checkpoint.json").exists());
}

/// Terminated before the first step (SIGTERM while the first batch is prepared): exit 143,
/// and no output that could pass for a fine-tuned model. Before: exit 0 with OUT an unchanged
/// copy of the teacher, so `finetune … && deploy` shipped it.
#[cfg(unix)]
#[test]
fn sigterm_before_the_first_step_exits_143_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = small_model(dir.path());
    let out = dir.path().join("o.json");
    // A large first batch at 48 kHz takes seconds to prepare: the signal lands before step 1.
    let args = [
        "finetune",
        s(&m),
        "-o",
        s(&out),
        "--rate",
        "48000",
        "--pre-emphasis",
        "none",
        "--batch-size",
        "100",
        "--tones-per-epoch",
        "100",
        "--validation-stride",
        "88",
    ];
    let (code, err) = interrupt(&args, "fine-tuning", libc::SIGTERM);
    assert_eq!(code, Some(143), "{err}");
    assert!(err.contains("no student was produced"), "{err}");
    assert!(!out.exists());
    assert!(!dir.path().join("o.json.report.json").exists());
    assert!(!dir.path().join("o.json.checkpoint.json").exists());
}

/// `dealias inspect MODEL | head`: a reader that has gone away ends the command as it ends
/// Unix tools (SIGPIPE), never with a panic from println!.
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_inspect_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let model = nam_model();
    let mut child = Command::new(env!("CARGO_BIN_EXE_dealias"))
        .args(["inspect", &model])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end before the model is loaded and its calibration computed.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{:?}", out.status);
}
