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

use crate::dsp::tones::{ToneLevels, ToneNotes};
use crate::loss::{EsrPooling, LossWeights, NmrPooling, PreEmphasis};
use crate::train::adam::AdamConfig;
use crate::train::checkpoint::Checkpoint;
use crate::train::finetune::{
    Event, FinetuneConfig, FinetuneOutcome, Finetuner, Precision, Preset, Selection, StopReason,
};
use crate::train::lr::{LrDecay, LrSchedule};

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

/// Preset of `--preset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PresetArg {
    Fast,
    Paper,
}

/// Learning-rate decay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LrDecayArg {
    Constant,
    Cosine,
}

/// Arguments of `dealias finetune`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model to anti-alias (.nam, GuitarML or AIDA-X .json); it is never modified.
    /// Without it, a built-in model (--builtin) is written to the current folder and
    /// fine-tuned there.
    pub model: Option<PathBuf>,
    /// The built-in model fine-tuned when no MODEL is given: lstm (GuitarML LSTM-40, the
    /// default) or wavenet (NAM standard WaveNet), both of the diode-clipper device.
    #[arg(long, conflicts_with = "model", value_name = "NAME")]
    pub builtin: Option<String>,
    /// Output model (same format); default: MODEL with "-dealiased" added to its name.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Checkpoint file (default: OUT with ".checkpoint.json" appended).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Continue from the checkpoint of an interrupted run with the same settings.
    #[arg(long, conflicts_with = "restart")]
    pub resume: bool,
    /// Start afresh even though the checkpoint file exists (it is replaced).
    #[arg(long)]
    pub restart: bool,
    #[command(flatten)]
    pub train: TrainArgs,
}

/// The settings of a fine-tuning run: every option of `dealias finetune` but the files, shared
/// with `dealias batch` (which applies them to every model).
#[derive(Clone, Debug, clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub slim: super::SlimArgs,
    /// Stop after this many optimiser steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Settings: `fast` (minutes on a laptop) or `paper` (the paper's procedure exactly).
    /// Options given on their own override the preset's value.
    #[arg(long, value_enum, default_value = "fast")]
    pub preset: PresetArg,
    /// Stop after this many epochs of 1600 tones (paper preset: 100, the paper's 40,000
    /// LSTM steps; fast preset: no epoch limit).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many minutes of training, wall clock (fast preset: 15 for recurrent
    /// models, 60 for WaveNets; paper preset: none). The learning rate decays over it.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// The tone guard: the largest validation ESR-T (dB) a student may have to be kept; when
    /// none meets it, no student is written and the teacher stays as it is (fast preset:
    /// -15; paper preset: none).
    #[arg(long, value_name = "DB", allow_hyphen_values = true)]
    pub max_esr_t: Option<f64>,
    /// Stop when validation has not improved for this many validations (0: never; fast
    /// preset 10, paper preset 5).
    #[arg(long)]
    pub patience: Option<usize>,
    /// Validate every this many batches (fast preset: every 400 tones; paper preset: once
    /// per epoch).
    #[arg(long)]
    pub validate_every: Option<usize>,
    /// Random seed of the training tones.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Random tones per epoch.
    #[arg(long, default_value_t = 1600)]
    pub tones_per_epoch: usize,
    /// Tones per batch (both presets: 40 recurrent, 32 WaveNet).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Tone length in seconds (default 1.2 recurrent, 1.05 WaveNet; the last second is the target).
    #[arg(long)]
    pub tone_seconds: Option<f64>,
    /// Frame (one optimiser step) in seconds (default 0.1 recurrent, 0.5 WaveNet).
    #[arg(long)]
    pub frame_seconds: Option<f64>,
    /// Adam learning rate, the peak of the schedule (fast preset: 2e-3 recurrent, 5e-4
    /// WaveNet; paper preset: 5e-4).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Steps of linear learning-rate warm-up (fast preset: 100; paper preset: 0).
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// Learning-rate decay after the warm-up, over the step or time budget (fast preset:
    /// cosine; paper preset: constant).
    #[arg(long, value_enum)]
    pub lr_decay: Option<LrDecayArg>,
    /// Validate and keep a moving average of the weights with this decay per step (off in
    /// both presets; e.g. 0.995 averages about the last 200 steps; 0 turns it off).
    #[arg(long, value_name = "DECAY")]
    pub weight_average: Option<f64>,
    /// Clip every step's gradient norm to this many times the moving average of the previous
    /// steps' norms (fast preset: 2 for recurrent models, off for WaveNets; paper preset: off;
    /// 0 turns it off).
    #[arg(long, value_name = "FACTOR")]
    pub clip_gradient: Option<f64>,
    /// Final learning rate of the cosine decay, as a fraction of the peak.
    #[arg(long, default_value_t = 0.05)]
    pub lr_floor: f64,
    /// Weight of the NMR term (λ of eq. 17).
    #[arg(long = "lambda", default_value_t = 0.5)]
    pub nmr_weight: f64,
    /// Weight of the ESR term.
    #[arg(long, default_value_t = 0.5)]
    pub esr_weight: f64,
    /// Weight of the DC term.
    #[arg(long, default_value_t = 1.0)]
    pub dc_weight: f64,
    /// Training tone levels: `linear` (the paper's amplitude U(0, 1)) or `db:MIN` (the level
    /// in dB uniform from MIN to 0 dBFS, e.g. `db:-40`: quiet tones as often as loud ones).
    #[arg(long, value_parser = parse_tone_levels, value_name = "linear|db:MIN")]
    pub tone_levels: Option<ToneLevels>,
    /// Training tone notes: `paper` (eq. 5, MIDI uniform from 21 to 127) or `MIDI:SHARE`
    /// (e.g. `96:0.5`: half the tones from MIDI 96 to the sine set's top note, 108, where
    /// most of the aliasing is; the rest as the paper draws them).
    #[arg(long, value_parser = parse_focus_notes, value_name = "paper|MIDI:SHARE")]
    pub focus_notes: Option<ToneNotes>,
    /// How the ESR term pools the batch: `batch` (the paper's, loud tones dominate) or
    /// `item` (the mean of every tone's own ESR).
    #[arg(long, value_enum)]
    pub esr_pooling: Option<EsrPoolingArg>,
    /// How the NMR term pools the batch: `geometric` (the paper's, every tone alike in dB)
    /// or `arithmetic` (the tones that alias most dominate, as in the sine-set mean).
    #[arg(long, value_enum)]
    pub nmr_pooling: Option<NmrPoolingArg>,
    /// Pre-emphasis filter applied to target and prediction before the loss.
    #[arg(long, value_enum, default_value = "lowpass")]
    pub pre_emphasis: PreEmphasisArg,
    /// What chooses the best student and drives early stopping, among the students within
    /// the tone guard: `nmr-s` (the validation NMR-S, as Table 1 averages it; fast preset) or
    /// `objective` (the paper's validation objective; paper preset)
    #[arg(long, value_enum)]
    pub select: Option<SelectArg>,
    /// Arithmetic of the teacher's and the student's engines during training (the alias
    /// removal, the loss and the final measurements are f64; fast preset: f32, paper
    /// preset: f64)
    #[arg(long, value_enum)]
    pub precision: Option<PrecisionArg>,
    /// Worker threads (default: all cores); the result depends on seed and thread count.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Sample rate for a model file that states none (default: its format's standard rate).
    #[arg(long = "rate", value_name = "HZ")]
    pub sample_rate: Option<f64>,
    /// Minutes between checkpoints (fractions allowed).
    #[arg(long, default_value_t = 5.0)]
    pub checkpoint_minutes: f64,
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
    /// The reference device the model imitates (see `dealias device list`; set for the
    /// built-in models): the before/after summary and the report add the -R columns and the
    /// G+B metrics against it, and the report its spectrum, sweep and clips.
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
}

impl TrainArgs {
    /// The settings that shape the result, as one line (recorded in the report; `batch`
    /// compares it to tell a finished model of this run from one made with other settings).
    /// Leaves out what only changes the terminal output and the checkpoint interval.
    pub(crate) fn settings(&self) -> String {
        let mut s = self.clone();
        s.quiet = false;
        s.checkpoint_minutes = 0.0;
        format!("{s:?}")
    }
}

/// `--select` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum SelectArg {
    /// The paper's validation objective (ESR-T and the mean-of-dB NMR-T).
    Objective,
    /// The validation NMR-S (10 log10 of the mean), within the tone guard.
    NmrS,
}

/// `--esr-pooling` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum EsrPoolingArg {
    Batch,
    Item,
}

/// `--nmr-pooling` values.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum NmrPoolingArg {
    Geometric,
    Arithmetic,
}

/// Parses `--focus-notes`: `paper` or `MIDI:SHARE` (the focus range ends at the sine set's
/// top note, MIDI 108, half a semitone above it).
fn parse_focus_notes(s: &str) -> Result<ToneNotes, String> {
    if s == "paper" {
        return Ok(ToneNotes::Uniform);
    }
    let (from, share) = s
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| format!("{s:?}: give `paper` or `MIDI:SHARE` (e.g. 96:0.5)"))?;
    let notes = ToneNotes::Focus {
        from_midi: from,
        to_midi: 108.5,
        fraction: share,
    };
    notes.check()?;
    Ok(notes)
}

/// Parses `--tone-levels`: `linear` or `db:MIN` (MIN in dBFS, below 0).
fn parse_tone_levels(s: &str) -> Result<ToneLevels, String> {
    if s == "linear" {
        return Ok(ToneLevels::Uniform);
    }
    let min_db: f64 = s
        .strip_prefix("db:")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{s:?}: give `linear` or `db:MIN` (e.g. db:-40)"))?;
    let levels = ToneLevels::LogUniform {
        min_db,
        max_db: 0.0,
    };
    levels.check()?;
    Ok(levels)
}

/// What the run will do, said before it starts: the preset, the learning-rate schedule, the
/// budget and the tone guard.
fn plan(c: &FinetuneConfig, batch: usize, preset: PresetArg) -> String {
    let schedule = match c.lr_schedule.decay {
        LrDecay::Constant if c.lr_schedule.warmup_steps == 0 => {
            format!("constant lr {:e}", c.adam.lr)
        }
        LrDecay::Constant => format!(
            "lr {:e} after a {}-step warm-up",
            c.adam.lr, c.lr_schedule.warmup_steps
        ),
        LrDecay::Cosine { floor } => format!(
            "lr {:e} after a {}-step warm-up, cosine decay to {floor} x over the budget",
            c.adam.lr, c.lr_schedule.warmup_steps
        ),
    };
    let mut budget = vec![];
    if let Some(d) = c.max_duration {
        budget.push(format!("{:.0} min", d.as_secs_f64() / 60.0));
    }
    if let Some(s) = c.max_steps {
        budget.push(format!("{s} steps"));
    }
    if let Some(e) = c.max_epochs {
        budget.push(format!("{e} epochs of {} tones", c.tones_per_epoch));
    }
    let budget = if budget.is_empty() {
        "no limit".to_string()
    } else {
        format!("at most {}", budget.join(" or "))
    };
    let early = c.patience.map_or(String::new(), |p| {
        format!(", earlier when {p} validations in a row do not improve")
    });
    let guard = c.max_esr_t_db.map_or("no tone guard".to_string(), |g| {
        format!("tone guard: ESR-T <= {g} dB")
    });
    let preset = match preset {
        PresetArg::Fast => "fast",
        PresetArg::Paper => "paper",
    };
    let average = c
        .weight_average
        .map_or(String::new(), |b| format!(", weights averaged (decay {b})"));
    let clip = c.clip_gradient.map_or(String::new(), |k| {
        format!(", gradient norm clipped to {k}x its recent average")
    });
    let select = match c.selection {
        Selection::Objective => "the validation objective",
        Selection::NmrS => "validation NMR-S",
    };
    let precision = match c.precision {
        Precision::F64 => "f64",
        Precision::F32 => "f32",
    };
    format!(
        "{preset} preset: batch {batch}, {precision} engines, {schedule}{average}{clip}; \
         {budget}{early}; best student by {select}; {guard}"
    )
}

/// Writes the built-in model `m` into the current folder (as the teacher of the run, for
/// the user to compare with the student), unless the file is there already with the same
/// bytes; a different file of that name is never replaced. Returns its path.
fn write_builtin(m: &crate::formats::embedded::EmbeddedModel) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(m.file_name);
    match std::fs::read(&path) {
        Ok(b) if b == m.bytes() => {}
        Ok(_) => bail!(
            "{} exists and is not the built-in {} model; move it away, or give the model to \
             fine-tune as MODEL",
            path.display(),
            m.name
        ),
        Err(_) => {
            crate::io::write_atomic(&path, m.bytes())?;
            super::notice(&format!(
                "wrote the built-in model ({}) to {}",
                m.description,
                path.display()
            ));
        }
    }
    Ok(path)
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

/// Library settings and the options that set them (for [`check::name_settings`]).
const SETTINGS: &[(&str, &str)] = &[
    ("sample_rate", "the sample rate (the model's, or --rate)"),
    ("batch_size", "--batch-size"),
    ("batch_size/tone_seconds", "--batch-size / --tone-seconds"),
    ("tone_seconds", "--tone-seconds"),
    ("frame_seconds", "--frame-seconds"),
    ("adam.lr", "--lr"),
    ("lr_schedule", "--lr-floor"),
    ("weights.esr", "--esr-weight"),
    ("weights.nmr", "--lambda"),
    ("weights.dc", "--dc-weight"),
    ("validation_stride", "--validation-stride"),
    ("validate_every_batches", "--validate-every"),
    ("max_epochs", "--epochs"),
    ("patience", "--patience"),
    ("max_esr_t_db", "--max-esr-t"),
    ("weight_average", "--weight-average"),
    ("clip_gradient", "--clip-gradient"),
    ("tone_levels", "--tone-levels"),
    ("tone_notes", "--focus-notes"),
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

/// Option values of [`TrainArgs`] checked before any file is read or written.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Checked {
    max_duration: Option<std::time::Duration>,
    checkpoint_interval: std::time::Duration,
}

impl TrainArgs {
    /// Checks every option (each error names the option and its range).
    pub(crate) fn check(&self) -> anyhow::Result<Checked> {
        let max_duration = self
            .minutes
            .map(|m| check::minutes("--minutes", m))
            .transpose()?;
        let checkpoint_interval = check::minutes("--checkpoint-minutes", self.checkpoint_minutes)?;
        if let Some(s) = self.steps {
            check::count("--steps", s as usize, None)?;
        }
        if let Some(e) = self.epochs {
            check::count("--epochs", e, None)?;
        }
        check::count("--tones-per-epoch", self.tones_per_epoch, None)?;
        if let Some(d) = &self.device {
            crate::device::Device::by_name(d)?;
        }
        if let Some(v) = self.validate_every {
            check::count("--validate-every", v, None)?;
        }
        if let Some(t) = self.threads {
            check::count(
                "--threads",
                t,
                Some((
                    check::MAX_THREADS,
                    "more threads than that only cost memory",
                )),
            )?;
        }
        check::rate("--rate", self.sample_rate)?;
        Ok(Checked {
            max_duration,
            checkpoint_interval,
        })
    }
}

/// The files of one fine-tuning run: the model read, and the report, HTML report, checkpoint
/// and student written beside the output.
#[derive(Clone, Debug)]
pub(crate) struct RunFiles {
    pub model: PathBuf,
    pub output: PathBuf,
    pub report: PathBuf,
    pub html: PathBuf,
    pub checkpoint: PathBuf,
}

impl RunFiles {
    /// The files of a run of `model` into `output` (the checkpoint beside it by default).
    pub(crate) fn new(model: &Path, output: &Path, checkpoint: Option<&Path>) -> Self {
        use crate::train::batch;
        RunFiles {
            model: model.to_path_buf(),
            output: output.to_path_buf(),
            report: batch::report_path(output),
            html: batch::html_path(output),
            checkpoint: checkpoint
                .map_or_else(|| batch::checkpoint_path(output), Path::to_path_buf),
        }
    }

    /// The checks and locks of these files: no output may be the input or another output,
    /// every folder must be writable, and each output is locked for the run.
    pub(crate) fn outputs(&self) -> crate::io::Outputs {
        crate::io::Outputs::new()
            .input(&self.model, "MODEL")
            .output(&self.output, "the output model")
            .output(&self.report, "the report")
            .output(&self.html, "the HTML report")
            .output(&self.checkpoint, "the checkpoint")
    }
}

/// The stop flag that SIGINT and SIGTERM set, and which of them did; installed once per
/// process (a batch runs many models under one).
pub(crate) struct Interrupt {
    pub stop: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Interrupt {
    /// Installs the signal handlers (see [`install_signal_handlers`]).
    pub(crate) fn install() -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let signal = install_signal_handlers(&stop)?;
        Ok(Interrupt { stop, signal })
    }

    /// The signal received (0: none).
    pub(crate) fn signal(&self) -> usize {
        self.signal.load(Ordering::SeqCst)
    }

    /// Whether a stop was asked for.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// The exit status a shell gives a process ended by the signal received: 128 + signal,
    /// or 0 when there was none.
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self.signal() {
            0 => ExitCode::SUCCESS,
            s => ExitCode::from(128 + s as u8),
        }
    }

    /// Words for the signal received.
    pub(crate) fn name(&self) -> &'static str {
        signal_name(self.signal())
    }
}

/// How a fine-tuning run ended, when it did not fail.
#[derive(Clone, Debug)]
pub(crate) struct RunEnd {
    /// Written: the before/after numbers of the student (`None`: the run was interrupted
    /// before its first step and wrote nothing).
    pub scores: Option<crate::train::batch::Scores>,
    /// Interrupted by a signal: the output, if any, is the best student of a partial run and
    /// the checkpoint continues it.
    pub interrupted: bool,
}

/// Runs `dealias finetune`. Exits with 130 (SIGINT) or 143 (SIGTERM) when interrupted, after
/// saying what was written.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Every option first, before any file is read or written.
    let checked = args.train.check()?;
    let mut train = args.train.clone();
    let model = match &args.model {
        Some(m) => m.clone(),
        None => {
            let name = args.builtin.as_deref().unwrap_or("lstm");
            // The built-in models imitate a built-in device: the summary's -R columns.
            let builtin = crate::formats::embedded::EmbeddedModel::by_name(name)?;
            train
                .device
                .get_or_insert_with(|| builtin.device.to_string());
            write_builtin(builtin)?
        }
    };
    // Then the files, checked and locked together.
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(&model));
    let files = RunFiles::new(&model, &output, args.checkpoint.as_deref());
    let _locks = files.outputs().claim()?;
    let checkpoint_exists = files.checkpoint.exists();
    if args.resume && !checkpoint_exists {
        bail!(
            "--resume: there is no checkpoint at {} (give the same -o / --checkpoint as the interrupted run)",
            files.checkpoint.display()
        );
    }
    if checkpoint_exists && !args.resume && !args.restart {
        bail!(
            "{} holds the checkpoint of an earlier run; continue that run with --resume, or start \
             afresh with --restart (which replaces it)",
            files.checkpoint.display()
        );
    }
    if args.restart {
        remove_part_checkpoints(&output)?;
    }
    let interrupt = Interrupt::install()?;
    finetune_one(&train, &checked, &files, args.resume, &interrupt)?;
    Ok(interrupt.exit_code())
}

/// Fine-tunes one model: loads `files.model`, trains (from `files.checkpoint` when `resume`),
/// prints the before/after summary and writes the report, the HTML report and the student.
/// The caller has checked `train` ([`TrainArgs::check`]) and holds the locks of
/// [`RunFiles::outputs`]. Fails when no student could be written (the model cannot be read or
/// trained, the tone guard kept the teacher), unless the run was interrupted.
pub(crate) fn finetune_one(
    train: &TrainArgs,
    checked: &Checked,
    files: &RunFiles,
    resume: bool,
    interrupt: &Interrupt,
) -> anyhow::Result<RunEnd> {
    let model_path = &files.model;
    let checkpoint_path = &files.checkpoint;
    let (model, fs) = super::load_with_rate(model_path, train.sample_rate)?;
    if let Some(l) = model.licence() {
        if crate::formats::forbids_derivatives(&l) {
            eprintln!(
                "warning: {} is licensed \"{l}\", which forbids derivative works; a fine-tuned \
                 student is one (the licence is carried into it unchanged)",
                model_path.display()
            );
        }
    }
    // A container: the chosen submodel, written back into the container; or every one in turn.
    let model = match super::chosen_submodel(&model, &train.slim, model_path)? {
        Some(i) => model.select_submodel(i)?,
        None if model.is_container() => {
            return finetune_container(train, checked, files, interrupt, &model)
        }
        None => model,
    };
    let threads = train
        .threads
        .unwrap_or_else(rayon::current_num_threads)
        .max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start the worker threads")?;
    let preset = match train.preset {
        PresetArg::Fast => Preset::Fast,
        PresetArg::Paper => Preset::Paper,
    };
    let base = FinetuneConfig::preset(preset, &model.network);
    let config = FinetuneConfig {
        seed: train.seed,
        tones_per_epoch: train.tones_per_epoch,
        batch_size: train.batch_size.or(base.batch_size),
        tone_seconds: train.tone_seconds,
        frame_seconds: train.frame_seconds,
        weights: LossWeights {
            esr: train.esr_weight,
            nmr: train.nmr_weight,
            dc: train.dc_weight,
        },
        esr_pooling: match train.esr_pooling {
            None => base.esr_pooling,
            Some(EsrPoolingArg::Batch) => EsrPooling::Batch,
            Some(EsrPoolingArg::Item) => EsrPooling::PerItem,
        },
        nmr_pooling: match train.nmr_pooling {
            None => base.nmr_pooling,
            Some(NmrPoolingArg::Geometric) => NmrPooling::Geometric,
            Some(NmrPoolingArg::Arithmetic) => NmrPooling::Arithmetic,
        },
        tone_levels: train.tone_levels.unwrap_or(base.tone_levels),
        tone_notes: train.focus_notes.unwrap_or(base.tone_notes),
        pre_emphasis: match train.pre_emphasis {
            PreEmphasisArg::Lowpass => PreEmphasis::Lowpass,
            PreEmphasisArg::None => PreEmphasis::None,
        },
        adam: AdamConfig {
            lr: train.lr.unwrap_or(base.adam.lr),
            ..base.adam
        },
        lr_schedule: LrSchedule {
            warmup_steps: train.warmup_steps.unwrap_or(base.lr_schedule.warmup_steps),
            decay: match train.lr_decay {
                None => match base.lr_schedule.decay {
                    LrDecay::Cosine { .. } => LrDecay::Cosine {
                        floor: train.lr_floor,
                    },
                    d => d,
                },
                Some(LrDecayArg::Constant) => LrDecay::Constant,
                Some(LrDecayArg::Cosine) => LrDecay::Cosine {
                    floor: train.lr_floor,
                },
            },
        },
        weight_average: train
            .weight_average
            .map_or(base.weight_average, |b| (b > 0.0).then_some(b)),
        clip_gradient: train
            .clip_gradient
            .map_or(base.clip_gradient, |k| (k > 0.0).then_some(k)),
        selection: train.select.map_or(base.selection, |p| match p {
            SelectArg::Objective => Selection::Objective,
            SelectArg::NmrS => Selection::NmrS,
        }),
        precision: train.precision.map_or(base.precision, |p| match p {
            PrecisionArg::F64 => Precision::F64,
            PrecisionArg::F32 => Precision::F32,
        }),
        threads,
        max_steps: train.steps,
        max_epochs: train.epochs.or(base.max_epochs),
        // A step limit alone replaces the preset's time budget.
        max_duration: checked.max_duration.or(if train.steps.is_some() {
            None
        } else {
            base.max_duration
        }),
        patience: train
            .patience
            .map_or(base.patience, |p| (p > 0).then_some(p)),
        max_esr_t_db: train.max_esr_t.or(base.max_esr_t_db),
        validate_every_batches: train.validate_every.or(base.validate_every_batches),
        validation_stride: train.validation_stride,
        validation_knob_points: train.validation_knob_points,
        checkpoint_path: Some(checkpoint_path.clone()),
        checkpoint_interval: checked.checkpoint_interval,
    };

    let (outcome, teacher) = pool.install(|| -> anyhow::Result<_> {
        let mut tuner = Finetuner::new(&model.network, fs, config.clone())
            .map_err(|e| check::name_settings(e, SETTINGS))?;
        if resume {
            let ck = Checkpoint::load(checkpoint_path)?;
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
        super::notice(&plan(&config, sched.batch, train.preset));
        let steps_per_epoch = (sched.batches_per_epoch * sched.frames) as u64;
        // The bar's length: the step or epoch limit; with a time budget it follows the rate
        // measured so far (below), so that the ETA tracks the budget.
        let total = [
            config.max_steps,
            config.max_epochs.map(|e| steps_per_epoch * e as u64),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(steps_per_epoch);
        let bar = if train.quiet {
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
                model.network.knob_grid(train.validation_knob_points.max(1)).len()
            ));
        }
        say(format!(
            "fine-tuning {} ({}, {} parameters) at {fs} Hz: batch {}, {} frames of {} samples per batch, {} threads",
            model_path.display(),
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
                if let (Some(m), true) = (config.max_duration, steps_per_second > 0.0) {
                    let left = (m.as_secs_f64() - bar.elapsed().as_secs_f64()).max(0.0);
                    bar.set_length(total.min(step + (steps_per_second * left) as u64));
                }
                bar.set_message(format!(
                    "epoch {epoch} loss {:.4} ESR {:.4} NMR {:.4} {:.2} steps/s",
                    loss.value, loss.esr, loss.nmr, steps_per_second
                ));
            }
            Event::Validation(v) => say(format!(
                "validation at step {}: NMR-S {:.2} dB, ESR-T {:.2} dB (10·log10 of the mean over the validation tones), score {:.5}{}",
                v.step,
                v.nmr_s_db,
                v.esr_t_db,
                v.score,
                if v.improved { " (best so far)" } else { "" }
            )),
            Event::Checkpoint { .. } => {}
        };
        let outcome = tuner.run(&interrupt.stop, &mut on_event)?;
        bar.finish_and_clear();
        Ok((outcome, model.network.clone()))
    })?;

    let guard = config.max_esr_t_db;
    report_and_save(
        train, &model, &teacher, &outcome, guard, files, interrupt, fs, &pool,
    )
}

/// The checkpoints of a container run's parts (see [`finetune_container`]), removed for
/// `--restart`.
fn remove_part_checkpoints(output: &Path) -> anyhow::Result<()> {
    let parts = crate::train::batch::with_suffix(output, ".submodels");
    let Ok(entries) = std::fs::read_dir(&parts) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.to_string_lossy().ends_with(".nam.checkpoint.json") {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    Ok(())
}

/// Fine-tunes every submodel of a container, one after another, and writes the container
/// back once. Each submodel's run is a part under `OUT.submodels/` (`submodel-I.nam` with its
/// reports and checkpoint, exactly as `--submodel I` would write them), so that a kill loses
/// at most the part in progress: a rerun skips the parts already finished with these settings
/// and continues the unfinished one from its checkpoint (`--restart` removes the parts'
/// checkpoints first). The container's report is
/// the default (last) submodel's, with every part's under `submodels`; its HTML report is the
/// default submodel's.
fn finetune_container(
    train: &TrainArgs,
    checked: &Checked,
    files: &RunFiles,
    interrupt: &Interrupt,
    model: &crate::ModelFile,
) -> anyhow::Result<RunEnd> {
    use crate::train::batch;
    let n = model.submodels.len();
    let parts = batch::with_suffix(&files.output, ".submodels");
    std::fs::create_dir_all(&parts).with_context(|| format!("creating {}", parts.display()))?;
    super::notice(&format!(
        "{} is a container of {n} submodels: fine-tuning each in turn (each with the whole \
         budget), parts in {} (--submodel N fine-tunes one)",
        files.model.display(),
        parts.display()
    ));
    let mut student = model.clone();
    let mut reports = Vec::with_capacity(n);
    for i in 0..n {
        let part = RunFiles::new(&files.model, &parts.join(format!("submodel-{i}.nam")), None);
        let _locks = part.outputs().claim()?;
        let mut part_train = train.clone();
        part_train.slim = super::SlimArgs {
            slim: None,
            submodel: Some(i),
        };
        let settings = part_train.settings();
        let finished = batch::completed(&part.output)
            .filter(|f| f.settings.as_deref() == Some(settings.as_str()));
        if finished.is_some() {
            super::notice(&format!(
                "submodel {i}: already fine-tuned with these settings ({}), kept",
                part.output.display()
            ));
        } else {
            // A part's checkpoint is its interrupted run: continued (a checkpoint of other
            // settings is refused by name; `--restart` removed them before).
            let part_resume = part.checkpoint.exists();
            eprintln!(
                "submodel {i} of {n}{}:",
                if part_resume { " (resuming)" } else { "" }
            );
            let end = finetune_one(&part_train, checked, &part, part_resume, interrupt)?;
            if end.interrupted {
                eprintln!(
                    "the container is not written: submodel {i} was interrupted; the same \
                     command continues it from its checkpoint"
                );
                return Ok(RunEnd {
                    scores: None,
                    interrupted: true,
                });
            }
        }
        let done = crate::load_model(&part.output)?;
        let net = done
            .submodel_networks()
            .get(i)
            .map(|n| (*n).clone())
            .context("a part holds the container")?;
        student = student.select_submodel(i)?;
        student.network = net;
        reports.push(serde_json::from_slice::<serde_json::Value>(
            &std::fs::read(&part.report)?,
        )?);
    }
    let mut student = student.select_submodel(model.active)?;
    let recalibrated = crate::eval::calibration::recalibrate(&mut student)?;
    let changed: Vec<usize> = (0..n)
        .filter(|&i| reports[i]["steps"].as_u64().unwrap_or(0) > 0)
        .collect();
    let note = serde_json::json!({
        "method": "teacher-student anti-aliasing fine-tuning (Carson, Wright & Bilbao, DAFx25)",
        "submodels_fine_tuned": changed,
        "seed": train.seed,
    });
    let model_bytes = crate::formats::model_bytes(&student, Some(note))?;
    let mut json = reports.last().cloned().unwrap_or_default();
    json["settings"] = train.settings().into();
    json["calibration"] = serde_json::to_value(&recalibrated)?;
    json["model"] = serde_json::json!({
        "file": files.output.file_name().map(|n| n.to_string_lossy().into_owned()),
        "checksum": crate::io::checksum(&model_bytes),
    });
    json["submodels"] = reports.into_iter().collect();
    let report_bytes = serde_json::to_string_pretty(&json)?.into_bytes();
    let last = parts.join(format!("submodel-{}.nam", n - 1));
    let html = std::fs::read(batch::html_path(&last)).ok();
    let mut written: Vec<(&Path, &[u8])> = vec![(&files.report, &report_bytes)];
    if let Some(h) = &html {
        written.push((&files.html, h));
    }
    written.push((&files.output, &model_bytes));
    crate::io::write_together(&written)?;
    for r in &recalibrated {
        eprintln!("{r} (recomputed for the student as the NAM trainer does)");
    }
    eprintln!(
        "wrote {} (every submodel; each one's reports in {})",
        files.output.display(),
        parts.display()
    );
    Ok(RunEnd {
        // The container's report is the default submodel's: its scores.
        scores: Some(batch::Scores::from_report(&json)),
        interrupted: false,
    })
}

/// Prints the summary and writes the report, the HTML report and the student (in that
/// order, see [`crate::io::write_together`]: a student on disk always has its reports);
/// says what was written.
#[allow(clippy::too_many_arguments)]
fn report_and_save(
    train: &TrainArgs,
    model: &crate::ModelFile,
    teacher: &crate::Network,
    outcome: &FinetuneOutcome,
    tone_guard_db: Option<f64>,
    files: &RunFiles,
    interrupt: &Interrupt,
    fs: f64,
    pool: &rayon::ThreadPool,
) -> anyhow::Result<RunEnd> {
    let (output, report, checkpoint_path) = (&files.output, &files.report, &files.checkpoint);
    let signal = interrupt.signal();
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
    let interrupted = signal != 0;
    if outcome.steps == 0 {
        // The "student" would be a copy of the teacher: write nothing that could pass for a
        // fine-tuned model, and drop the checkpoint of a run that never started.
        let _ = std::fs::remove_file(checkpoint_path);
        let msg = format!(
            "no student was produced: the run ended before its first step; nothing was written \
             ({} was not created)",
            output.display()
        );
        if interrupted {
            eprintln!("{msg}");
            return Ok(RunEnd {
                scores: None,
                interrupted,
            });
        }
        bail!("{msg}");
    }
    if !outcome.student_found {
        // Every validated student lost the teacher's tone: hand back nothing rather than a
        // broken model (the checkpoint stays, so a run with other settings can be compared).
        let closest = outcome
            .history
            .iter()
            .map(|v| v.esr_t_db)
            .fold(f64::INFINITY, f64::min);
        let msg = format!(
            "no student kept the teacher's tone: every validation had ESR-T above the guard of \
             {} dB (the closest: {closest:.1} dB), so nothing was written and the teacher stays \
             as it is; try a lower --lr, a longer budget, or a looser --max-esr-t",
            tone_guard_db.map_or("(none)".to_string(), |g| format!("{g:.1}"))
        );
        if interrupted {
            eprintln!("{msg}");
            return Ok(RunEnd {
                scores: None,
                interrupted,
            });
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
    let device = train
        .device
        .as_deref()
        .map(crate::device::Device::by_name)
        .transpose()?;
    let summary = pool.install(|| {
        crate::eval::summary::before_after_with(&teacher, &best, fs, device.as_ref())
    })?;
    println!("{}", summary.table());
    let mut student = model.clone();
    student.network = outcome.best.clone();
    // The plugin's Normalize reads metadata.loudness: the student states its own.
    let recalibrated = crate::eval::calibration::recalibrate(&mut student)?;
    for r in &recalibrated {
        eprintln!("{r} (recomputed for the student as the NAM trainer does)");
    }
    let note = serde_json::json!({
        "method": "teacher-student anti-aliasing fine-tuning (Carson, Wright & Bilbao, DAFx25)",
        "steps": outcome.steps,
        "seed": train.seed,
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
    json["settings"] = train.settings().into();
    json["calibration"] = serde_json::to_value(&recalibrated)?;
    // Ties the report to the model it describes (the report is written first).
    json["model"] = serde_json::json!({
        "file": output.file_name().map(|n| n.to_string_lossy().into_owned()),
        "checksum": crate::io::checksum(&model_bytes),
    });
    json["validation"] = outcome
        .history
        .iter()
        .map(|v| {
            serde_json::json!({"epoch": v.epoch, "step": v.step, "seconds": v.seconds,
                "nmr_s_db": v.nmr_s_db, "esr_t_db": v.esr_t_db, "score": v.score})
        })
        .collect();
    let report_bytes = serde_json::to_string_pretty(&json)?.into_bytes();
    let html = pool.install(|| {
        super::report::finetune_html(
            &files.model,
            (&teacher, &best),
            fs,
            device.as_ref(),
            &summary,
            &json,
            output,
        )
    });
    let html = match html {
        Ok(h) => Some(h),
        Err(e) => {
            // The student is still worth having; an HTML report of an earlier run must not
            // pass for this one's.
            let _ = std::fs::remove_file(&files.html);
            eprintln!(
                "warning: the HTML report was not written ({e}); make it with `dealias report {} {}`",
                files.model.display(),
                output.display()
            );
            None
        }
    };
    // The student last: whoever finds it finds its reports complete.
    let mut written: Vec<(&Path, &[u8])> = vec![(report, &report_bytes)];
    if let Some(h) = &html {
        written.push((&files.html, h.as_bytes()));
    }
    written.push((output, &model_bytes));
    crate::io::write_together(&written)?;
    let names: Vec<String> = written
        .iter()
        .map(|(p, _)| p.display().to_string())
        .collect();
    eprintln!("wrote {}", names.join(", "));
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
    Ok(RunEnd {
        scores: Some(crate::train::batch::Scores {
            nmr_s_before_db: Some(summary.teacher.nmr_s_db),
            nmr_s_after_db: Some(summary.student.nmr_s_db),
            esr_t_db: Some(summary.esr_t_db),
        }),
        interrupted,
    })
}
