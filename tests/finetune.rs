//! The fine-tuning loop: determinism, exact resumption after an interruption, step limits,
//! learning progress, and the command line's guarantees (same format out, input never
//! overwritten).
//!
//! Runs are kept small (a 5-unit 2-layer LSTM, 16 kHz, short tones, no pre-emphasis since the
//! 12/16 kHz low-pass needs a rate above 32 kHz) so the whole file takes seconds.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use dealias::loss::PreEmphasis;
use dealias::train::checkpoint::Checkpoint;
use dealias::train::finetune::{
    Event, FinetuneConfig, Finetuner, Precision, Selection, StopReason,
};
use dealias::Network;

fn small_model(name: &str) -> dealias::ModelFile {
    let path = common::data(&format!("reference/{name}/{name}.{}", ext(name)));
    dealias::load_model(&path).unwrap()
}

fn ext(name: &str) -> &'static str {
    if name.starts_with("guitarml") {
        "json"
    } else {
        "nam"
    }
}

fn config(dir: &std::path::Path) -> FinetuneConfig {
    FinetuneConfig {
        seed: 11,
        tones_per_epoch: 8,
        batch_size: Some(4),
        tone_seconds: Some(1.2),
        frame_seconds: Some(0.25),
        pre_emphasis: PreEmphasis::None,
        threads: 2,
        // 10 steps end in the middle of the third batch (4 frames a batch).
        max_steps: Some(10),
        max_epochs: Some(100),
        patience: None,
        validation_stride: 12,
        checkpoint_path: Some(dir.join("ck.json")),
        ..FinetuneConfig::default()
    }
}

fn run(
    net: &Network,
    cfg: FinetuneConfig,
    interrupt_after: Option<u64>,
) -> (Finetuner, dealias::train::finetune::FinetuneOutcome) {
    let mut t = Finetuner::new(net, 16000.0, cfg).unwrap();
    let stop = AtomicBool::new(false);
    let out = t
        .run(&stop, &mut |e| {
            if let (Event::Step { step, .. }, Some(k)) = (&e, interrupt_after) {
                if *step >= k {
                    stop.store(true, Ordering::SeqCst);
                }
            }
        })
        .unwrap();
    (t, out)
}

/// Two runs with the same seed and thread count give bit-identical students; an interrupted
/// run resumed from its checkpoint ends exactly where the uninterrupted one does.
#[test]
fn interrupted_and_resumed_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    let net = small_model("guitarml_lstm5x2_skip_bias").network;
    let (_, a) = run(&net, config(dir.path()), None);
    assert_eq!(a.stop, StopReason::MaxSteps);
    assert_eq!(a.steps, 10, "the step limit is exact, also mid-batch");
    assert_ne!(a.steps % 4, 0, "the limit falls inside a batch");

    let (_, again) = run(&net, config(dir.path()), None);
    assert_eq!(
        again.last.params(),
        a.last.params(),
        "same seed, same result"
    );

    // Interrupt in the middle of the second batch (a batch is 4 frames here).
    let (_, b) = run(&net, config(dir.path()), Some(6));
    assert_eq!(b.stop, StopReason::Interrupted);
    let ck = Checkpoint::load(&dir.path().join("ck.json")).unwrap();
    assert_eq!(ck.step, 4, "the checkpoint is the last batch boundary");

    let mut resumed = Finetuner::new(&net, 16000.0, config(dir.path())).unwrap();
    resumed.resume(&ck).unwrap();
    let stop = AtomicBool::new(false);
    let c = resumed.run(&stop, &mut |_| {}).unwrap();
    assert_eq!(c.steps, 10);
    assert_eq!(c.last.params(), a.last.params(), "resumed run differs");
    assert_eq!(c.best.params(), a.best.params());
}

/// A checkpoint of another run (different seed) is refused with a clear message.
#[test]
fn resuming_another_runs_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let net = small_model("guitarml_lstm5x2_skip_bias").network;
    let mut cfg = config(dir.path());
    cfg.max_steps = Some(4);
    run(&net, cfg.clone(), None);
    let ck = Checkpoint::load(&dir.path().join("ck.json")).unwrap();
    cfg.seed = 12;
    let mut other = Finetuner::new(&net, 16000.0, cfg).unwrap();
    let err = other.resume(&ck).unwrap_err().to_string();
    assert!(err.contains("another run"), "{err}");
}

/// Training makes progress: the validation score (the training objective on fixed evaluation
/// tones; training tones are fresh every batch, so their losses are not comparable) improves
/// by at least 10 % within 40 steps of a small GRU.
#[test]
fn validation_score_improves() {
    let dir = tempfile::tempdir().unwrap();
    let net = small_model("guitarml_gru7x1_skip_bias").network;
    let mut cfg = config(dir.path());
    cfg.max_steps = Some(40);
    cfg.validate_every_batches = Some(1);
    cfg.adam.lr = 3e-3;
    let (_, out) = run(&net, cfg, None);
    let first = out.history.first().unwrap().score;
    let best = out
        .history
        .iter()
        .map(|v| v.score)
        .fold(f64::INFINITY, f64::min);
    assert!(
        best < 0.9 * first,
        "validation score did not improve: first {first}, best {best}"
    );
}

/// WaveNets train too (frames fed with their receptive-field context).
#[test]
fn wavenet_steps_run_and_change_the_weights() {
    let dir = tempfile::tempdir().unwrap();
    let net = small_model("wavenet_tanh_gated").network;
    let mut cfg = config(dir.path());
    cfg.tone_seconds = Some(1.05);
    cfg.frame_seconds = Some(0.5);
    cfg.max_steps = Some(2);
    let (_, out) = run(&net, cfg, None);
    assert_eq!(out.steps, 2);
    assert_ne!(out.last.params(), net.params());
    assert!(out.last.params().iter().all(|v| v.is_finite()));
}

/// `dealias finetune` writes a model of the input's format that loads again, a report beside
/// it, and refuses to overwrite its input.
#[test]
fn cli_writes_same_format_and_never_overwrites_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let src = common::data(
        "reference/guitarml_lstm4x1_noskip_nobias/guitarml_lstm4x1_noskip_nobias.json",
    );
    let model = dir.path().join("m.json");
    std::fs::copy(&src, &model).unwrap();
    let before = std::fs::read(&model).unwrap();
    let exe = env!("CARGO_BIN_EXE_dealias");

    let out = Command::new(exe)
        .args([
            "finetune",
            model.to_str().unwrap(),
            "-o",
            model.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));

    let student = dir.path().join("s.json");
    let out = Command::new(exe)
        .args([
            "finetune",
            model.to_str().unwrap(),
            "-o",
            student.to_str().unwrap(),
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--tones-per-epoch",
            "4",
            "--validation-stride",
            "24",
            "--quiet",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&model).unwrap(), before, "input changed");
    let loaded = dealias::load_model(&student).unwrap();
    assert_eq!(loaded.format, dealias::Format::GuitarMl);
    let original = dealias::load_model(&model).unwrap();
    assert_ne!(loaded.network.params(), original.network.params());
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("s.json.report.json")).unwrap())
            .unwrap();
    for key in [
        "esr_t_db",
        "nmr_t_db",
        "hesr_t_db",
        "teacher",
        "student",
        "steps",
    ] {
        assert!(report.get(key).is_some(), "report lacks {key}");
    }
    assert!(dir.path().join("s.json.checkpoint.json").exists());
    // The HTML report beside them, with the run's validation curves (tests/report_html.rs
    // loads one in a browser).
    let html = std::fs::read_to_string(dir.path().join("s.json.report.html")).unwrap();
    assert!(html.contains("<td>student</td>") && html.contains("Training curves"));
}

/// A checkpoint whose fields do not fit this run is refused with a message naming the
/// field, even with a valid checksum: counters off a batch boundary, a tone generator at
/// another position, a parameter vector of another network.
#[test]
fn resume_checks_the_checkpoint_against_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let net = small_model("guitarml_lstm5x2_skip_bias").network;
    let mut cfg = config(dir.path());
    cfg.max_steps = Some(4);
    run(&net, cfg.clone(), None);
    let good = Checkpoint::load(&dir.path().join("ck.json")).unwrap();
    let refuse = |edit: &dyn Fn(&mut Checkpoint), expect: &str| {
        let mut ck = good.clone();
        edit(&mut ck);
        // Through the file format, so that the checksum is valid and only the checks refuse.
        let err = match Checkpoint::from_bytes(&ck.to_bytes().unwrap()) {
            Err(e) => e,
            Ok(ck) => {
                let mut t = Finetuner::new(&net, 16000.0, cfg.clone()).unwrap();
                t.resume(&ck).unwrap_err().to_string()
            }
        };
        assert!(err.contains(expect), "expected {expect:?}, got {err:?}");
    };
    refuse(
        &|c| {
            c.step = 5;
            c.adam.step = 5;
        },
        "step 5 is not the end of batch",
    );
    refuse(
        &|c| c.rng.word_pos += 2,
        "the tone generator's position does not match",
    );
    refuse(
        &|c| c.batch_in_epoch = 7,
        "at batch 7 of an epoch of 2 batches",
    );
    refuse(&|c| c.adam.config.lr = 1.0, "Adam settings");
    refuse(
        &|c| {
            c.epoch = usize::MAX / 8;
            c.history.clear();
            c.best_score = None;
            c.best_params = None;
            c.epochs_without_improvement = 0;
        },
        "the counters are inconsistent",
    );
    let mut t = Finetuner::new(&net, 16000.0, cfg.clone()).unwrap();
    t.resume(&good).unwrap();
}

/// A knob-conditioned model trains across its knob range: the knob weights (layer 0's
/// `w_ih` columns after the audio input) move, the random knob values of the tones come from
/// the checkpointed stream (an interrupted and resumed run equals an uninterrupted one), and
/// validation covers the knob grid.
#[test]
fn conditioned_model_trains_across_its_knob_range() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::data("guitarml_family/guitarml_lstm6x1_knobs1/guitarml_lstm6x1_knobs1.json");
    let net = dealias::load_model(&path).unwrap().network;
    let (_, a) = run(&net, config(dir.path()), None);
    let knob_weights = |n: &Network| match n {
        Network::Rnn(r) => r.layers[0]
            .w_ih
            .chunks(2)
            .map(|row| row[1])
            .collect::<Vec<f64>>(),
        _ => unreachable!(),
    };
    let (w0, w1) = (knob_weights(&net), knob_weights(&a.last));
    assert!(
        w0.iter().zip(&w1).all(|(x, y)| x != y),
        "every knob weight is trained"
    );
    let (_, b) = run(&net, config(dir.path()), Some(6));
    assert_eq!(b.stop, StopReason::Interrupted);
    let ck = Checkpoint::load(&dir.path().join("ck.json")).unwrap();
    let mut resumed = Finetuner::new(&net, 16000.0, config(dir.path())).unwrap();
    resumed.resume(&ck).unwrap();
    let c = resumed.run(&AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!(c.last.params(), a.last.params(), "resumed run differs");
    // A different validation grid is a different run.
    let mut cfg = config(dir.path());
    cfg.validation_knob_points = 2;
    let mut other = Finetuner::new(&net, 16000.0, cfg).unwrap();
    assert!(other.resume(&ck).is_err());
}

/// The tone guard: with a learning rate that wrecks the tone at once, no validated student
/// meets a strict ESR-T limit, so the outcome is the teacher, flagged as such; the same run
/// without the guard hands back a changed student.
#[test]
fn tone_guard_keeps_the_teacher_when_every_student_loses_the_tone() {
    let dir = tempfile::tempdir().unwrap();
    let net = small_model("guitarml_gru7x1_skip_bias").network;
    let mut cfg = config(dir.path());
    cfg.adam.lr = 0.3;
    cfg.max_steps = Some(8);
    cfg.validate_every_batches = Some(1);
    cfg.max_esr_t_db = None;
    let (_, unguarded) = run(&net, cfg.clone(), None);
    assert!(unguarded.student_found);
    assert_ne!(unguarded.best.params(), net.params());
    let closest = unguarded
        .history
        .iter()
        .map(|v| v.esr_t_db)
        .fold(f64::INFINITY, f64::min);
    assert!(
        closest > -20.0,
        "lr 0.3 should wreck the tone, best ESR-T {closest} dB"
    );

    cfg.max_esr_t_db = Some(-20.0);
    let (_, guarded) = run(&net, cfg, None);
    assert!(!guarded.student_found);
    assert_eq!(guarded.best.params(), net.params(), "the teacher is kept");
    assert!(guarded.history.iter().all(|v| !v.improved));
}

/// `--preset paper` is the paper's procedure (sec. 2.5) exactly: Adam at a constant 5e-4,
/// batches of 40 tones of 1.2 s (recurrent) and 32 of 1.05 s (WaveNet), TBPTT frames of
/// 0.1 s and WaveNet frames of 0.5 s, 100 epochs of 1600 tones, no tone guard, no time limit.
/// The fast preset differs exactly in the settings the README lists.
#[test]
fn presets_resolve_to_their_documented_settings() {
    use dealias::train::finetune::{Preset, Schedule};
    use dealias::train::lr::{LrDecay, LrSchedule};
    let lstm = small_model("guitarml_lstm5x2_skip_bias").network;
    let wavenet = small_model("wavenet_tanh_gated").network;
    for (net, batch, tone, frame) in [(&lstm, 40, 52_920, 4410), (&wavenet, 32, 46_305, 22_050)] {
        let c = FinetuneConfig::preset(Preset::Paper, net);
        assert_eq!(c.adam.lr, 5e-4);
        assert_eq!(c.lr_schedule, LrSchedule::CONSTANT);
        assert_eq!((c.max_epochs, c.tones_per_epoch), (Some(100), 1600));
        assert_eq!((c.max_duration, c.max_esr_t_db), (None, None));
        assert_eq!((c.weight_average, c.clip_gradient), (None, None));
        assert_eq!((c.validate_every_batches, c.patience), (None, Some(5)));
        assert_eq!(c.precision, Precision::F64);
        assert_eq!(c.selection, Selection::Objective);
        let s = Schedule::new(net, 44100.0, &c).unwrap();
        assert_eq!((s.batch, s.tone_len, s.frame_len), (batch, tone, frame));
    }
    let fast = FinetuneConfig::preset(Preset::Fast, &lstm);
    assert_eq!(fast.adam.lr, 2e-3);
    assert_eq!(fast.batch_size, Some(40));
    assert_eq!(fast.lr_schedule.warmup_steps, 100);
    assert_eq!(fast.lr_schedule.decay, LrDecay::Cosine { floor: 0.05 });
    assert_eq!(fast.max_duration.unwrap().as_secs(), 15 * 60);
    assert_eq!(fast.max_esr_t_db, Some(-15.0));
    assert_eq!(fast.validate_every_batches, Some(10));
    assert_eq!((fast.weight_average, fast.patience), (None, Some(10)));
    assert_eq!(fast.clip_gradient, Some(2.0));
    assert_eq!(fast.precision, Precision::F32);
    assert_eq!(fast.selection, Selection::NmrS);
    let fast = FinetuneConfig::preset(Preset::Fast, &wavenet);
    assert_eq!((fast.adam.lr, fast.batch_size), (5e-4, Some(32)));
    assert_eq!(fast.clip_gradient, None);
    assert_eq!(fast.max_duration.unwrap().as_secs(), 60 * 60);
    // Tones, frames and the loss stay the paper's in both.
    let s = Schedule::new(&lstm, 44100.0, &FinetuneConfig::preset(Preset::Fast, &lstm)).unwrap();
    assert_eq!((s.tone_len, s.frame_len), (52_920, 4410));
}

/// A step budget fixes the decay's horizon, so the learning rate of every step is known in
/// advance: a run resumed from a checkpoint mid-schedule ends exactly where the
/// uninterrupted one does.
#[test]
fn scheduled_runs_resume_exactly() {
    use dealias::train::lr::{LrDecay, LrSchedule};
    let dir = tempfile::tempdir().unwrap();
    let net = small_model("guitarml_lstm5x2_skip_bias").network;
    let mut cfg = config(dir.path());
    cfg.lr_schedule = LrSchedule {
        warmup_steps: 3,
        decay: LrDecay::Cosine { floor: 0.1 },
    };
    cfg.adam.lr = 3e-3;
    let (_, a) = run(&net, cfg.clone(), None);
    let (_, b) = run(&net, cfg.clone(), Some(6));
    assert_eq!(b.stop, StopReason::Interrupted);
    let ck = Checkpoint::load(&dir.path().join("ck.json")).unwrap();
    let mut resumed = Finetuner::new(&net, 16000.0, cfg.clone()).unwrap();
    resumed.resume(&ck).unwrap();
    let c = resumed.run(&AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!(c.last.params(), a.last.params(), "resumed run differs");
    // And the schedule matters: the constant rate ends elsewhere.
    cfg.lr_schedule = LrSchedule::CONSTANT;
    let (_, d) = run(&net, cfg, None);
    assert_ne!(d.last.params(), a.last.params());
}

/// Gradient clipping carries state (the moving average of norms) through checkpoints: with a
/// factor of 1, every step whose norm is above the recent average is clipped, so a resumed run
/// that lost the average would take different steps. It also changes the run (the option is
/// not a no-op), and factors below 1 are refused before any work.
#[test]
fn clipped_runs_resume_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let net = small_model("guitarml_lstm5x2_skip_bias").network;
    let mut cfg = config(dir.path());
    cfg.adam.lr = 3e-3;
    let (_, plain) = run(&net, cfg.clone(), None);
    cfg.clip_gradient = Some(1.0);
    let (_, a) = run(&net, cfg.clone(), None);
    assert_ne!(
        a.last.params(),
        plain.last.params(),
        "clipping changed nothing"
    );
    let (_, b) = run(&net, cfg.clone(), Some(6));
    assert_eq!(b.stop, StopReason::Interrupted);
    let ck = Checkpoint::load(&dir.path().join("ck.json")).unwrap();
    assert!(ck.grad_clip.average.is_some_and(|n| n > 0.0));
    let mut resumed = Finetuner::new(&net, 16000.0, cfg.clone()).unwrap();
    resumed.resume(&ck).unwrap();
    let c = resumed.run(&AtomicBool::new(false), &mut |_| {}).unwrap();
    assert_eq!(
        c.last.params(),
        a.last.params(),
        "resumed clipped run differs"
    );
    cfg.clip_gradient = Some(0.5);
    let e = Finetuner::new(&net, 16000.0, cfg)
        .err()
        .expect("factor 0.5 accepted");
    assert!(e.to_string().contains("at least 1"), "{e}");
}

/// Weight averaging, checked at its two closed-form ends: decay 0 keeps exactly the current
/// weights (the same students as no averaging), and a decay of 1 - 1e-9 keeps the teacher's
/// weights: the average moves by 1e-9 × the sum of the 10 steps' offsets, bounded here by
/// 1e-7 × the largest distance the training moved (100x headroom for a path that overshoots).
#[test]
fn weight_average_is_an_exponential_moving_average() {
    let dir = tempfile::tempdir().unwrap();
    let net = small_model("guitarml_lstm5x2_skip_bias").network;
    let mut cfg = config(dir.path());
    cfg.validate_every_batches = Some(1);
    let (_, plain) = run(&net, cfg.clone(), None);
    cfg.weight_average = Some(0.0);
    let (_, zero) = run(&net, cfg.clone(), None);
    assert_eq!(zero.best.params(), plain.best.params());
    assert_eq!(zero.last.params(), plain.last.params());
    cfg.weight_average = Some(1.0 - 1e-9);
    let (_, slow) = run(&net, cfg, None);
    assert_eq!(
        slow.last.params(),
        plain.last.params(),
        "averaging never steers training"
    );
    let (t, b, l) = (net.params(), slow.best.params(), plain.last.params());
    let dist = |x: &[f64]| {
        x.iter()
            .zip(&t)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    };
    assert!(dist(&l) > 1e-4, "training moved the weights");
    assert!(dist(&b) <= 1e-7 * dist(&l), "{} vs {}", dist(&b), dist(&l));
    assert!(dist(&b) > 0.0, "the average moves a little");
}
