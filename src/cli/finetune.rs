//! `dealias finetune MODEL [-o OUT]`: teacher–student anti-aliasing fine-tuning (paper sec. 2),
//! writing a model of the same format, a Table-1-style before/after summary (printed and as
//! JSON beside OUT) and a resumable checkpoint.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

use super::check;

use crate::loss::{LossWeights, PreEmphasis};
use crate::train::adam::AdamConfig;
use crate::train::checkpoint::Checkpoint;
use crate::train::finetune::{
    Event, FinetuneConfig, FinetuneOutcome, Finetuner, Precision, StopReason,
};

/// Pre-emphasis filter choice on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PreEmphasisArg {
    /// The paper's 12/16 kHz low-pass FIR (sec. 2.3).
    Lowpass,
    /// No filtering before the loss.
    None,
}

/// Arithmetic precision of the student.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PrecisionArg {
    F64,
    F32,
}

/// Arguments of `dealias finetune`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model to anti-alias (.nam, GuitarML or AIDA-X .json); it is never modified.
    pub model: PathBuf,
    /// Output model (same format); default: MODEL with "-dealiased" added to its name.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub slim: super::SlimArgs,
    /// Stop after this many optimiser steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Stop after this many epochs (the paper's 40,000 steps are 100 LSTM epochs).
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    /// Stop after this many minutes of training (wall clock).
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Stop when validation has not improved for this many validations (0: never).
    #[arg(long, default_value_t = 5)]
    pub patience: usize,
    /// Validate every this many batches (default: once per epoch).
    #[arg(long)]
    pub validate_every: Option<usize>,
    /// Random seed of the training tones.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Random tones per epoch.
    #[arg(long, default_value_t = 1600)]
    pub tones_per_epoch: usize,
    /// Tones per batch (default 40 for recurrent models, 32 for WaveNets).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Tone length in seconds (default 1.2 recurrent, 1.05 WaveNet; the last second is the target).
    #[arg(long)]
    pub tone_seconds: Option<f64>,
    /// Frame (one optimiser step) in seconds (default 0.1 recurrent, 0.5 WaveNet).
    #[arg(long)]
    pub frame_seconds: Option<f64>,
    /// Adam learning rate.
    #[arg(long, default_value_t = 5e-4)]
    pub lr: f64,
    /// Weight of the NMR term (λ of eq. 17).
    #[arg(long = "lambda", default_value_t = 0.5)]
    pub nmr_weight: f64,
    /// Weight of the ESR term.
    #[arg(long, default_value_t = 0.5)]
    pub esr_weight: f64,
    /// Weight of the DC term.
    #[arg(long, default_value_t = 1.0)]
    pub dc_weight: f64,
    /// Pre-emphasis filter applied to target and prediction before the loss.
    #[arg(long, value_enum, default_value = "lowpass")]
    pub pre_emphasis: PreEmphasisArg,
    /// Arithmetic precision of the student during training.
    #[arg(long, value_enum, default_value = "f64")]
    pub precision: PrecisionArg,
    /// Worker threads (default: all cores); the result depends on seed and thread count.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Sample rate for a model file that states none (default: its format's standard rate).
    #[arg(long = "rate", value_name = "HZ")]
    pub sample_rate: Option<f64>,
    /// Checkpoint file (default: OUT with ".checkpoint.json" appended).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Minutes between checkpoints.
    #[arg(long, default_value_t = 5.0)]
    pub checkpoint_minutes: f64,
    /// Continue from the checkpoint of an interrupted run with the same settings.
    #[arg(long, conflicts_with = "restart")]
    pub resume: bool,
    /// Start afresh even though the checkpoint file exists (it is replaced).
    #[arg(long)]
    pub restart: bool,
    /// Every how many semitones of the evaluation sine set the validation uses.
    #[arg(long, default_value_t = 3)]
    pub validation_stride: usize,
    /// Knob-conditioned models: values per knob of the validation grid, evenly over 0..1
    /// (every validation tone runs at every grid setting; training tones at random settings).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub validation_knob_points: usize,
    /// Print no progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Default output path: `dir/name-dealiased.ext`.
fn default_output(model: &Path) -> PathBuf {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let ext = model
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    model.with_file_name(format!("{stem}-dealiased{ext}"))
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Library settings and the options that set them (for [`check::name_settings`]).
const SETTINGS: &[(&str, &str)] = &[
    ("sample_rate", "the sample rate (the model's, or --rate)"),
    ("batch_size", "--batch-size"),
    ("batch_size/tone_seconds", "--batch-size / --tone-seconds"),
    ("tone_seconds", "--tone-seconds"),
    ("frame_seconds", "--frame-seconds"),
    ("adam.lr", "--lr"),
    ("weights.esr", "--esr-weight"),
    ("weights.nmr", "--lambda"),
    ("weights.dc", "--dc-weight"),
    ("validation_stride", "--validation-stride"),
    ("validate_every_batches", "--validate-every"),
    ("max_epochs", "--epochs"),
    ("patience", "--patience"),
];

/// Signal numbers as `usize` (what `signal_hook::flag::register_usize` stores).
const SIGINT: usize = signal_hook::consts::SIGINT as usize;
const SIGTERM: usize = signal_hook::consts::SIGTERM as usize;

/// Installs the handlers of SIGINT (Ctrl-C) and SIGTERM: the first sets `stop` (the run ends
/// at the next step with a checkpoint) and is remembered in the returned cell; a second one
/// ends the process at once with status 128 + the signal (130 / 143), as a shell would.
fn install_signal_handlers(stop: &Arc<AtomicBool>) -> anyhow::Result<Arc<AtomicUsize>> {
    use signal_hook::flag;
    let which = Arc::new(AtomicUsize::new(0));
    for sig in [SIGINT, SIGTERM] {
        let s = sig as i32;
        // Registered first, so it sees `stop` as it was before this signal set it.
        flag::register_conditional_shutdown(s, 128 + s, stop.clone())
            .and_then(|_| flag::register_usize(s, which.clone(), sig))
            .and_then(|_| flag::register(s, stop.clone()))
            .context("cannot install the signal handlers")?;
    }
    // Say at once that the signal was seen (a step can take seconds).
    let (stop, seen) = (stop.clone(), which.clone());
    std::thread::spawn(move || loop {
        std::thread::sleep(std::time::Duration::from_millis(100));
        if stop.load(Ordering::SeqCst) {
            eprintln!(
                "\n{}: stopping after the current step and writing a checkpoint (send it again to quit at once)",
                signal_name(seen.load(Ordering::SeqCst))
            );
            break;
        }
    });
    Ok(which)
}

fn signal_name(sig: usize) -> &'static str {
    match sig {
        SIGINT => "interrupted (SIGINT)",
        SIGTERM => "terminated (SIGTERM)",
        _ => "stopped",
    }
}

/// Runs `dealias finetune`. Exits with 130 (SIGINT) or 143 (SIGTERM) when interrupted, after
/// saying what was written.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Every option first, before any file is read or written.
    let max_duration = args
        .minutes
        .map(|m| check::minutes("--minutes", m))
        .transpose()?;
    let checkpoint_interval = check::minutes("--checkpoint-minutes", args.checkpoint_minutes)?;
    if let Some(s) = args.steps {
        check::count("--steps", s as usize, None)?;
    }
    check::count("--epochs", args.epochs, None)?;
    check::count("--tones-per-epoch", args.tones_per_epoch, None)?;
    if let Some(v) = args.validate_every {
        check::count("--validate-every", v, None)?;
    }
    if let Some(t) = args.threads {
        check::count(
            "--threads",
            t,
            Some((
                check::MAX_THREADS,
                "more threads than that only cost memory",
            )),
        )?;
    }
    check::rate("--rate", args.sample_rate)?;

    // Then the files: no output may be an input or another output, every folder must be
    // writable, and each output is locked for this run.
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(&args.model));
    let report = with_suffix(&output, ".report.json");
    let checkpoint_path = args
        .checkpoint
        .clone()
        .unwrap_or_else(|| with_suffix(&output, ".checkpoint.json"));
    let _locks = crate::io::Outputs::new()
        .input(&args.model, "MODEL")
        .output(&output, "the output model")
        .output(&report, "the report")
        .output(&checkpoint_path, "the checkpoint")
        .claim()?;
    let checkpoint_exists = checkpoint_path.exists();
    if args.resume && !checkpoint_exists {
        bail!(
            "--resume: there is no checkpoint at {} (give the same -o / --checkpoint as the interrupted run)",
            checkpoint_path.display()
        );
    }
    if checkpoint_exists && !args.resume && !args.restart {
        bail!(
            "{} holds the checkpoint of an earlier run; continue that run with --resume, or start \
             afresh with --restart (which replaces it)",
            checkpoint_path.display()
        );
    }

    let (model, fs) = super::load_with_rate(&args.model, args.sample_rate)?;
    if let Some(l) = model.licence() {
        if crate::formats::forbids_derivatives(&l) {
            eprintln!(
                "warning: {} is licensed \"{l}\", which forbids derivative works; a fine-tuned \
                 student is one (the licence is carried into it unchanged)",
                args.model.display()
            );
        }
    }
    let stated = |k: &str| {
        model.document.pointer(&format!("/metadata/{k}")).is_some()
            || model
                .document
                .pointer("/config/submodels")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .any(|s| s.pointer(&format!("/model/metadata/{k}")).is_some())
                })
    };
    if stated("loudness") || stated("gain") {
        eprintln!(
            "warning: {}: metadata.loudness and metadata.gain are carried into the student \
             unchanged, not recomputed for it (the plugin's Normalize uses loudness)",
            args.model.display()
        );
    }
    // A container: one submodel per run, written back into the container.
    let model = match super::chosen_submodel(&model, &args.slim, &args.model)? {
        Some(i) => model.select_submodel(i)?,
        None if model.is_container() => bail!(
            "{} is a container of {} submodels; choose the one to fine-tune with --submodel N or \
             --slim VALUE (the others are written back unchanged; fine-tuning every submodel in \
             one run is not supported yet)",
            args.model.display(),
            model.submodels.len()
        ),
        None => model,
    };
    let threads = args
        .threads
        .unwrap_or_else(rayon::current_num_threads)
        .max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start the worker threads")?;
    let config = FinetuneConfig {
        seed: args.seed,
        tones_per_epoch: args.tones_per_epoch,
        batch_size: args.batch_size,
        tone_seconds: args.tone_seconds,
        frame_seconds: args.frame_seconds,
        weights: LossWeights {
            esr: args.esr_weight,
            nmr: args.nmr_weight,
            dc: args.dc_weight,
        },
        pre_emphasis: match args.pre_emphasis {
            PreEmphasisArg::Lowpass => PreEmphasis::Lowpass,
            PreEmphasisArg::None => PreEmphasis::None,
        },
        adam: AdamConfig {
            lr: args.lr,
            ..AdamConfig::default()
        },
        precision: match args.precision {
            PrecisionArg::F64 => Precision::F64,
            PrecisionArg::F32 => Precision::F32,
        },
        threads,
        max_steps: args.steps,
        max_epochs: Some(args.epochs),
        max_duration,
        patience: (args.patience > 0).then_some(args.patience),
        validate_every_batches: args.validate_every,
        validation_stride: args.validation_stride,
        validation_knob_points: args.validation_knob_points,
        checkpoint_path: Some(checkpoint_path.clone()),
        checkpoint_interval,
    };

    let stop = Arc::new(AtomicBool::new(false));
    let signal = install_signal_handlers(&stop)?;

    let (outcome, teacher) = pool.install(|| -> anyhow::Result<_> {
        let mut tuner = Finetuner::new(&model.network, fs, config.clone())
            .map_err(|e| check::name_settings(e, SETTINGS))?;
        if args.resume {
            let ck = Checkpoint::load(&checkpoint_path)?;
            tuner
                .resume(&ck)
                .with_context(|| format!("cannot resume from {}", checkpoint_path.display()))?;
            super::notice(&format!(
                "resuming from {} at step {}",
                checkpoint_path.display(),
                ck.step
            ));
        }
        let sched = tuner.schedule();
        let steps_per_epoch = (sched.batches_per_epoch * sched.frames) as u64;
        let total = args
            .steps
            .unwrap_or(steps_per_epoch * args.epochs as u64)
            .min(steps_per_epoch * args.epochs as u64);
        let bar = if args.quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(total)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} step {pos}/{len} [{elapsed_precise} ETA {eta}] {msg}",
            )
            .expect("valid template"),
        );
        bar.set_position(tuner.step());
        // Lines between progress updates; plain stderr when there is no terminal.
        let say = |line: String| {
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        };
        let nk = model.network.num_knobs();
        if nk > 0 {
            say(format!(
                "{} knob input(s): each training tone at its own random knob setting in 0..1; validation at {} knob settings",
                nk,
                model.network.knob_grid(args.validation_knob_points.max(1)).len()
            ));
        }
        say(format!(
            "fine-tuning {} ({}, {} parameters) at {fs} Hz: batch {}, {} frames of {} samples per batch, {} threads",
            args.model.display(),
            model.network.kind(),
            model.network.num_params(),
            sched.batch,
            sched.frames,
            sched.frame_len,
            threads
        ));
        let mut on_event = |e: Event| match e {
            Event::Step {
                step,
                epoch,
                loss,
                steps_per_second,
            } => {
                bar.set_position(step);
                // With a time budget, the last step is where the current rate reaches the end
                // of the budget (so that the ETA tracks the budget, not the epoch limit).
                if let (Some(m), true) = (args.minutes, steps_per_second > 0.0) {
                    let left = (m * 60.0 - bar.elapsed().as_secs_f64()).max(0.0);
                    bar.set_length(total.min(step + (steps_per_second * left) as u64));
                }
                bar.set_message(format!(
                    "epoch {epoch} loss {:.4} ESR {:.4} NMR {:.4} {:.2} steps/s",
                    loss.value, loss.esr, loss.nmr, steps_per_second
                ));
            }
            Event::Validation(v) => say(format!(
                "validation at step {}: NMR-S {:.2} dB, ESR-T {:.2} dB (mean of dB), score {:.5}{}",
                v.step,
                v.nmr_s_db,
                v.esr_t_db,
                v.score,
                if v.improved { " (best so far)" } else { "" }
            )),
            Event::Checkpoint { .. } => {}
        };
        let outcome = tuner.run(&stop, &mut on_event)?;
        bar.finish_and_clear();
        Ok((outcome, model.network.clone()))
    })?;

    let code = report_and_save(
        &args,
        &model,
        &teacher,
        &outcome,
        [&output, &report, &checkpoint_path],
        signal.load(Ordering::SeqCst),
        fs,
        &pool,
    )?;
    Ok(code)
}

/// Prints the summary and writes the report and the student (in that order, see
/// [`crate::io::write_together`]); says what was written. Returns the exit status: 0, or
/// 128 + the signal that interrupted the run.
#[allow(clippy::too_many_arguments)]
fn report_and_save(
    args: &Args,
    model: &crate::ModelFile,
    teacher: &crate::Network,
    outcome: &FinetuneOutcome,
    [output, report, checkpoint_path]: [&Path; 3],
    signal: usize,
    fs: f64,
    pool: &rayon::ThreadPool,
) -> anyhow::Result<ExitCode> {
    let why = match outcome.stop {
        StopReason::MaxSteps => "step limit reached",
        StopReason::MaxEpochs => "epoch limit reached",
        StopReason::TimeBudget => "time budget spent",
        StopReason::EarlyStopping => "validation stopped improving",
        StopReason::Interrupted => signal_name(signal),
    };
    eprintln!(
        "stopped after {} steps, {} epochs, {:.1} min: {why}",
        outcome.steps,
        outcome.epochs,
        outcome.elapsed.as_secs_f64() / 60.0
    );
    let code = if signal != 0 {
        ExitCode::from(128 + signal as u8)
    } else {
        ExitCode::SUCCESS
    };
    if outcome.steps == 0 {
        // The "student" would be a copy of the teacher: write nothing that could pass for a
        // fine-tuned model, and drop the checkpoint of a run that never started.
        let _ = std::fs::remove_file(checkpoint_path);
        let msg = format!(
            "no student was produced: the run ended before its first step; nothing was written \
             ({} was not created)",
            output.display()
        );
        if signal != 0 {
            eprintln!("{msg}");
            return Ok(code);
        }
        bail!("{msg}");
    }
    // Conditioned models are summarised at the middle of the knob range.
    let (mut teacher, mut best) = (teacher.clone(), outcome.best.clone());
    if teacher.num_knobs() > 0 {
        let mid = vec![0.5; teacher.num_knobs()];
        teacher.set_knobs(&mid)?;
        best.set_knobs(&mid)?;
        eprintln!("before/after summary at knob values {mid:?} (all settings: dealias measure --knob-grid)");
    }
    let summary = pool.install(|| crate::eval::summary::before_after(&teacher, &best, fs))?;
    println!("{}", summary.table());
    let mut student = model.clone();
    student.network = outcome.best.clone();
    let note = serde_json::json!({
        "method": "teacher-student anti-aliasing fine-tuning (Carson, Wright & Bilbao, DAFx25)",
        "steps": outcome.steps,
        "seed": args.seed,
        "nmr_s_db": summary.student.nmr_s_db,
        "esr_t_db": summary.esr_t_db,
        "complete": outcome.stop != StopReason::Interrupted,
    });
    let model_bytes = crate::formats::model_bytes(&student, Some(note))?;
    let mut json = summary.to_json();
    json["steps"] = outcome.steps.into();
    json["epochs"] = outcome.epochs.into();
    json["minutes"] = (outcome.elapsed.as_secs_f64() / 60.0).into();
    json["stop"] = why.into();
    json["complete"] = (outcome.stop != StopReason::Interrupted).into();
    // Ties the report to the model it describes (the report is written first).
    json["model"] = serde_json::json!({
        "file": output.file_name().map(|n| n.to_string_lossy().into_owned()),
        "checksum": crate::io::checksum(&model_bytes),
    });
    json["validation"] = outcome
        .history
        .iter()
        .map(|v| {
            serde_json::json!({"epoch": v.epoch, "step": v.step, "nmr_s_mean_db": v.nmr_s_db,
                "esr_t_mean_db": v.esr_t_db, "score": v.score})
        })
        .collect();
    let report_bytes = serde_json::to_string_pretty(&json)?.into_bytes();
    crate::io::write_together(&[(report, &report_bytes), (output, &model_bytes)])?;
    eprintln!("wrote {} and {}", report.display(), output.display());
    if outcome.stop == StopReason::Interrupted {
        eprintln!(
            "{}: {} is the best student of a partial run ({} steps), not a finished one; continue \
             with the same command and --resume (checkpoint {})",
            signal_name(signal),
            output.display(),
            outcome.steps,
            checkpoint_path.display()
        );
    }
    Ok(code)
}
