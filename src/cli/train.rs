//! `dealias train`: pre-train a model from scratch (paper sec. 3.2) on a DI recording and the
//! device's output, or on the built-in training signal rendered by a reference device.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

use super::check;
use super::finetune::{Interrupt, PrecisionArg};
use crate::formats::Format;
use crate::models::init::Architecture;
use crate::train::finetune::{Precision, StopReason};
use crate::train::pretrain::{
    AudioPair, PretrainCheckpoint, PretrainConfig, PretrainEvent, Pretrainer,
};
use crate::ModelFile;

/// Arguments of `dealias train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// DI recording (mono WAV); with TARGET. Without both, the built-in training signal is
    /// rendered by --device.
    #[arg(requires = "target")]
    pub input: Option<PathBuf>,
    /// The device's output for the DI recording (mono WAV, same rate and length).
    pub target: Option<PathBuf>,
    /// Output model: `.json` (GuitarML, for lstm-H / gru-H) or `.nam` (for wavenet-*).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Architecture: lstm-H, gru-H (H hidden units), wavenet-standard, wavenet-lite,
    /// wavenet-feather, wavenet-nano; or like:FILE, the layout of a model file (any layout
    /// dealias loads, e.g. a NAM A2 WaveNet; for a container, with --submodel), written in
    /// that file's format with its configuration and fresh metadata.
    #[arg(long, default_value = "lstm-40")]
    pub arch: String,
    /// With --arch like:CONTAINER.nam: the submodel whose layout is trained (see `dealias
    /// inspect`); the result is a plain .nam of that layout.
    #[arg(long)]
    pub submodel: Option<usize>,
    /// Reference device that renders the built-in training signal (see `dealias device list`).
    #[arg(long, default_value = "diode-clipper", conflicts_with = "input")]
    pub device: String,
    /// Length of the built-in training signal in seconds (validation: a fifth of it, another
    /// draw).
    #[arg(long, default_value_t = 60.0, conflicts_with = "input")]
    pub signal_seconds: f64,
    /// Sample rate of the built-in signal (default: 44100 for GuitarML files, 48000 for .nam).
    #[arg(long, value_name = "HZ", conflicts_with = "input")]
    pub rate: Option<f64>,
    /// Share of a recording (its end) kept for validation.
    #[arg(long, default_value_t = 0.1)]
    pub validation_fraction: f64,
    /// Channel of multichannel WAVs (0 = left).
    #[arg(long, value_name = "N")]
    pub channel: Option<usize>,
    /// Time budget in minutes (default: until early stopping or --epochs).
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Most epochs (default 5000, the paper's).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Most optimiser steps.
    #[arg(long)]
    pub steps: Option<u64>,
    /// Epochs without a better validation loss before the run stops (0: never).
    #[arg(long, default_value_t = 20)]
    pub patience: usize,
    /// Learning rate (default 5e-3 recurrent, 4e-3 WaveNet).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Batch size (default 40, the paper's).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Seed of the initial weights, the built-in signal and the segment order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Worker threads (default: all cores); a run is reproducible for a given seed and count.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Arithmetic of the training engine (the loss is always f64).
    #[arg(long, value_enum, default_value_t = PrecisionArg::F32)]
    pub precision: PrecisionArg,
    /// Checkpoint file (default: OUT with ".checkpoint.json" appended).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Minutes between checkpoints.
    #[arg(long, default_value_t = 1.0)]
    pub checkpoint_minutes: f64,
    /// Continue from the checkpoint of an interrupted run with the same settings.
    #[arg(long, conflicts_with = "restart")]
    pub resume: bool,
    /// Start afresh even though the checkpoint file exists (it is replaced).
    #[arg(long)]
    pub restart: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// What `--arch` names: a built-in architecture, or the layout of a model file.
enum Layout {
    Builtin(Architecture),
    /// A model file of that layout (its configuration is written out again; plain, a
    /// container's submodel having been taken out).
    Like {
        template: Box<ModelFile>,
        name: String,
    },
}

impl Layout {
    fn parse(arch: &str, submodel: Option<usize>) -> anyhow::Result<Self> {
        let Some(path) = arch.strip_prefix("like:") else {
            if submodel.is_some() {
                bail!("--submodel goes with --arch like:CONTAINER.nam");
            }
            return Ok(Layout::Builtin(
                Architecture::parse(arch).map_err(|m| anyhow::anyhow!("--arch: {m}"))?,
            ));
        };
        let file = crate::formats::load_model(Path::new(path))
            .with_context(|| format!("--arch like:{path}"))?;
        let (template, name) = match (file.is_container(), submodel) {
            (false, None) => (file, format!("the layout of {path}")),
            (false, Some(_)) => bail!("--submodel: {path} is not a container"),
            (true, None) => bail!(
                "--arch like:{path}: the file is a container of {} submodels; choose the layout \
                 to train with --submodel N (0..{}, see `dealias inspect {path}`)",
                file.submodels.len(),
                file.submodels.len() - 1
            ),
            (true, Some(i)) => (
                crate::formats::submodel_file(&file, i)?,
                format!("the layout of submodel {i} of {path}"),
            ),
        };
        if let Err(m) = crate::models::init::reinitialised(&template.network, 0) {
            bail!("--arch like:{path}: {m}");
        }
        if template.network.num_knobs() > 0 {
            bail!(
                "--arch like:{path}: a knob-conditioned layout needs recordings at many knob \
                 settings; it is not trained from scratch"
            );
        }
        Ok(Layout::Like {
            template: Box::new(template),
            name,
        })
    }

    fn name(&self) -> String {
        match self {
            Layout::Builtin(a) => a.name(),
            Layout::Like { name, .. } => name.clone(),
        }
    }

    fn initial_network(&self, seed: u64) -> anyhow::Result<crate::Network> {
        match self {
            Layout::Builtin(a) => Ok(a.initial_network(seed)),
            Layout::Like { template, .. } => {
                crate::models::init::reinitialised(&template.network, seed)
                    .map_err(|m| anyhow::anyhow!(m))
            }
        }
    }

    /// The file the trained network is written in (`format` from [`layout_format`]).
    fn output_file(
        &self,
        net: crate::Network,
        format: Format,
        fs: f64,
    ) -> anyhow::Result<ModelFile> {
        match self {
            Layout::Builtin(_) => Ok(crate::formats::new_model_file(net, format, fs)?),
            Layout::Like { template, .. } => Ok(crate::formats::fresh_file(template, net, fs)?),
        }
    }

    /// The rate the built-in signal is rendered at without --rate.
    fn default_rate(&self, format: Format) -> f64 {
        match self {
            Layout::Builtin(_) => format.default_rate(),
            Layout::Like { template, .. } => template.rate_or_default().0,
        }
    }
}

/// The format a new model is written in, from the output's extension.
fn layout_format(layout: &Layout, output: &Path) -> anyhow::Result<Format> {
    match layout {
        Layout::Builtin(a) => output_format(*a, output),
        Layout::Like { template, name } => {
            let ext = extension(output);
            let want = match template.format {
                Format::Nam => "nam",
                _ => "json",
            };
            if ext.as_deref() != Some(want) {
                bail!(
                    "-o {}: {name} is a {} file, written as .{want}",
                    output.display(),
                    template.format.name()
                );
            }
            Ok(template.format)
        }
    }
}

/// The lower-case extension of `path`.
fn extension(path: &Path) -> Option<String> {
    path.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
}

/// The format a new model of a built-in architecture is written in, from the output's
/// extension.
fn output_format(arch: Architecture, output: &Path) -> anyhow::Result<Format> {
    let ext = extension(output);
    match (arch, ext.as_deref()) {
        (Architecture::Recurrent { .. }, Some("json")) => Ok(Format::GuitarMl),
        (Architecture::WaveNet(_), Some("nam")) => Ok(Format::Nam),
        (Architecture::Recurrent { .. }, _) => bail!(
            "-o {}: a {} is written as a GuitarML .json file",
            output.display(),
            arch.name()
        ),
        (Architecture::WaveNet(_), _) => bail!(
            "-o {}: a {} is written as a NAM .nam file",
            output.display(),
            arch.name()
        ),
    }
}

/// Runs `dealias train`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let arch = Layout::parse(&args.arch, args.submodel)?;
    let format = layout_format(&arch, &args.output)?;
    let max_duration = args
        .minutes
        .map(|m| check::minutes("--minutes", m))
        .transpose()?;
    let checkpoint_interval = check::minutes("--checkpoint-minutes", args.checkpoint_minutes)?;
    check::in_range(
        "--validation-fraction",
        args.validation_fraction,
        0.01,
        0.5,
        "",
    )?;
    if let Some(e) = args.epochs {
        check::count("--epochs", e, None)?;
    }
    if let Some(b) = args.batch_size {
        check::count(
            "--batch-size",
            b,
            Some((10_000, "the batch is held in memory")),
        )?;
    }
    if let Some(t) = args.threads {
        check::count(
            "--threads",
            t,
            Some((check::MAX_THREADS, "more threads only cost memory")),
        )?;
    }
    let rate = check::rate("--rate", args.rate)?;
    let checkpoint = args
        .checkpoint
        .clone()
        .unwrap_or_else(|| crate::train::batch::checkpoint_path(&args.output));
    let mut outputs = crate::io::Outputs::new()
        .output(&args.output, "the output model")
        .output(&checkpoint, "the checkpoint");
    if let (Some(i), Some(t)) = (&args.input, &args.target) {
        outputs = outputs.input(i, "DI.wav").input(t, "TARGET.wav");
    }
    let _locks = outputs.claim()?;
    let checkpoint_exists = checkpoint.exists();
    if args.resume && !checkpoint_exists {
        bail!(
            "--resume: there is no checkpoint at {} (give the same -o / --checkpoint as the interrupted run)",
            checkpoint.display()
        );
    }
    if checkpoint_exists && !args.resume && !args.restart {
        bail!(
            "{} holds the checkpoint of an earlier run; continue that run with --resume, or start \
             afresh with --restart (which replaces it)",
            checkpoint.display()
        );
    }

    // The audio: a recording, or the built-in signal through a device.
    let (fs, train, validation, source) = match (&args.input, &args.target) {
        (Some(di), Some(target)) => {
            let x = crate::audio::read_mono(di, args.channel)?;
            let y = crate::audio::read_mono(target, args.channel)?;
            for (a, p) in [(&x, di), (&y, target)] {
                if let Some(w) = a.clipping_warning() {
                    eprintln!("warning: {}: {w}", p.display());
                }
            }
            if x.sample_rate != y.sample_rate {
                bail!(
                    "{} is at {} Hz but {} at {} Hz; record both at the rate the model will run at",
                    di.display(),
                    x.sample_rate,
                    target.display(),
                    y.sample_rate
                );
            }
            if x.samples.len() != y.samples.len() {
                bail!(
                    "{} has {} samples but {} has {}; the recordings must be aligned and of equal length",
                    di.display(),
                    x.samples.len(),
                    target.display(),
                    y.samples.len()
                );
            }
            let fs = f64::from(x.sample_rate);
            let (t, v) = AudioPair {
                input: x.samples,
                target: y.samples,
            }
            .split_validation(args.validation_fraction)?;
            let what = format!("{} -> {}", di.display(), target.display());
            (fs, t, v, what)
        }
        _ => {
            let device = crate::device::Device::by_name(&args.device)?;
            let fs = rate.unwrap_or(arch.default_rate(format));
            super::notice(&format!(
                "rendering {} s of the built-in training signal (seed {}) through {} at {fs} Hz",
                args.signal_seconds, args.seed, device.name
            ));
            let (t, v) = AudioPair::from_device(&device, fs, args.signal_seconds, args.seed)?;
            let what = format!(
                "built-in training signal ({} s, seed {}) through the {} device",
                args.signal_seconds, args.seed, device.name
            );
            (fs, t, v, what)
        }
    };

    let initial = arch.initial_network(args.seed)?;
    let num_params = initial.num_params();
    let base = PretrainConfig::for_network(&initial);
    let threads = args
        .threads
        .unwrap_or_else(rayon::current_num_threads)
        .max(1);
    let config = PretrainConfig {
        seed: args.seed,
        batch_size: args.batch_size.unwrap_or(base.batch_size),
        adam: crate::train::adam::AdamConfig {
            lr: args.lr.unwrap_or(base.adam.lr),
            ..base.adam
        },
        precision: match args.precision {
            PrecisionArg::F64 => Precision::F64,
            PrecisionArg::F32 => Precision::F32,
        },
        threads,
        max_epochs: args.epochs.or(base.max_epochs),
        max_steps: args.steps,
        max_duration,
        patience: (args.patience > 0).then_some(args.patience),
        checkpoint_path: Some(checkpoint.clone()),
        checkpoint_interval,
        ..base
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start the worker threads")?;
    let interrupt = Interrupt::install()?;
    let outcome = pool.install(|| -> anyhow::Result<_> {
        let mut trainer = Pretrainer::new(initial, fs, train, validation, config.clone())?;
        if args.resume {
            let ck = PretrainCheckpoint::load(&checkpoint)?;
            trainer
                .resume(&ck)
                .with_context(|| format!("cannot resume from {}", checkpoint.display()))?;
            super::notice(&format!(
                "resuming from {} at step {}",
                checkpoint.display(),
                ck.step
            ));
        }
        let spe = trainer.steps_per_epoch();
        let total = [
            config.max_steps,
            config.max_epochs.map(|e| spe * e as u64),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(spe);
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
        bar.set_position(trainer.step());
        let say = |line: String| {
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        };
        say(format!(
            "training a {} ({} parameters) at {fs} Hz on {source}: {} segments, batch {}, {} steps per epoch, lr {}, {} threads; {}",
            arch.name(),
            num_params,
            trainer.segments(),
            config.batch_size,
            spe,
            config.adam.lr,
            threads,
            match (config.max_duration, config.patience) {
                (Some(d), _) => format!("at most {:.0} min", d.as_secs_f64() / 60.0),
                (None, Some(p)) => format!("until the validation loss has not improved for {p} epochs (at most {} epochs)", config.max_epochs.unwrap_or(0)),
                (None, None) => format!("{} epochs", config.max_epochs.unwrap_or(0)),
            }
        ));
        let mut on_event = |e: PretrainEvent| match e {
            PretrainEvent::Step {
                step,
                epoch,
                loss,
                steps_per_second,
            } => {
                bar.set_position(step);
                if let (Some(m), true) = (config.max_duration, steps_per_second > 0.0) {
                    let left = (m.as_secs_f64() - bar.elapsed().as_secs_f64()).max(0.0);
                    bar.set_length(total.min(step + (steps_per_second * left) as u64));
                }
                bar.set_message(format!(
                    "epoch {epoch} loss {:.5} ESR {:.5} DC {:.2e} {:.1} steps/s",
                    loss.value, loss.esr, loss.dc, steps_per_second
                ));
            }
            PretrainEvent::Validation(v) => {
                if v.improved || v.epoch % 10 == 0 {
                    say(format!(
                        "epoch {}: validation loss {:.5} (A-weighted ESR {:.2} dB, DC {:.1e}), lr {:.1e}{}",
                        v.epoch,
                        v.loss,
                        10.0 * v.esr.log10(),
                        v.dc,
                        v.lr,
                        if v.improved { " (best so far)" } else { "" }
                    ))
                }
            }
            PretrainEvent::Checkpoint { .. } => {}
        };
        let outcome = trainer.run(&interrupt.stop, &mut on_event)?;
        bar.finish_and_clear();
        Ok(outcome)
    })?;

    if outcome.steps == 0 {
        eprintln!("interrupted before the first step; nothing written");
        return Ok(interrupt.exit_code());
    }
    let best = outcome.history.iter().rfind(|v| v.improved).copied();
    let mut file = arch.output_file(outcome.best.clone(), format, fs)?;
    crate::eval::calibration::recalibrate(&mut file)?;
    let note = serde_json::json!({
        "trained": {
            "architecture": arch.name(),
            "data": source,
            "sample_rate": fs,
            "seed": args.seed,
            "steps": outcome.steps,
            "epochs": outcome.epochs,
            "validation_esr_a_weighted": best.map(|v| v.esr),
            "validation_dc": best.map(|v| v.dc),
        }
    });
    crate::formats::save_model_with_note(&file, &args.output, Some(note))?;
    let why = match outcome.stop {
        StopReason::MaxSteps => "step limit",
        StopReason::MaxEpochs => "epoch limit",
        StopReason::TimeBudget => "time budget",
        StopReason::EarlyStopping => "early stopping",
        StopReason::Interrupted => interrupt.name(),
    };
    println!(
        "wrote {} ({}, {} steps, {} epochs, {:.1} min, stopped by {why}); best validation: A-weighted ESR {}",
        args.output.display(),
        arch.name(),
        outcome.steps,
        outcome.epochs,
        outcome.elapsed.as_secs_f64() / 60.0,
        best.map_or("-".into(), |v| format!("{:.2} dB ({:.4})", 10.0 * v.esr.log10(), v.esr)),
    );
    if outcome.stop == StopReason::Interrupted {
        println!(
            "the checkpoint {} continues the run (--resume)",
            checkpoint.display()
        );
    }
    Ok(interrupt.exit_code())
}
