//! The `dealias` command line: one module per subcommand, each with its clap `Args` and a
//! `run` function. Everything below this module is the library, which neither prints nor
//! parses arguments.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod analyze;
pub mod audit;
pub mod batch;
mod check;
pub mod compare;
pub mod device;
pub mod finetune;
pub mod inspect;
pub mod measure;
pub mod process;
pub mod report;
pub mod train;

/// Remove aliasing from neural guitar amp and pedal models (GuitarML, Neural Amp Modeler).
#[derive(Debug, Parser)]
#[command(name = "dealias", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show a model file's format, architecture, settings and metadata.
    Inspect(inspect::Args),
    /// Run a model over a mono WAV file.
    Process(process::Args),
    /// Fine-tune a model to remove its aliasing (teacher-student, same format out).
    Finetune(finetune::Args),
    /// Measure a model's aliasing on the paper's sine set (ESR-S, NMR-S, figures).
    Measure(measure::Args),
    /// Compare a fine-tuned student with its teacher (the paper's Table 1 metrics).
    Compare(compare::Args),
    /// Measure the aliasing of a recorded or rendered sine response (WAV).
    Analyze(analyze::Args),
    /// Rank every model of a library (files and folders) by its sine-set aliasing.
    Audit(audit::Args),
    /// Fine-tune every model of a library (files, folders, manifests; sharded for a scheduler).
    Batch(batch::Args),
    /// Alias-free reference circuits: list them, or run one over a WAV file.
    Device(device::Args),
    /// Write a self-contained HTML report (figures, Table 1 row, audio) for a teacher and student.
    Report(report::Args),
    /// Train a model from scratch on a DI recording and a device's output, or on a built-in device.
    Train(train::Args),
}

/// Parses the command line and runs the subcommand; errors are printed to stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that only read and print (or write their outputs atomically) end quietly on a
    // closed pipe (`dealias inspect m.nam | head`), as Unix tools do, instead of panicking in
    // println!. Training keeps Rust's default (the write fails, no signal), so a closed pipe
    // cannot kill a run between checkpoints.
    if !matches!(
        cli.command,
        Command::Finetune(_) | Command::Batch(_) | Command::Train(_)
    ) {
        default_sigpipe();
    }
    let result = match cli.command {
        Command::Inspect(a) => inspect::run(a).map(|()| ExitCode::SUCCESS),
        Command::Process(a) => process::run(a).map(|()| ExitCode::SUCCESS),
        Command::Finetune(a) => finetune::run(a),
        Command::Measure(a) => measure::run(a).map(|()| ExitCode::SUCCESS),
        Command::Compare(a) => compare::run(a).map(|()| ExitCode::SUCCESS),
        Command::Analyze(a) => analyze::run(a).map(|()| ExitCode::SUCCESS),
        Command::Audit(a) => audit::run(a).map(|()| ExitCode::SUCCESS),
        Command::Batch(a) => batch::run(a),
        Command::Device(a) => device::run(a).map(|()| ExitCode::SUCCESS),
        Command::Report(a) => report::run(a).map(|()| ExitCode::SUCCESS),
        Command::Train(a) => train::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Restores SIGPIPE's default action (the process ends), which Rust's runtime ignores.
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called once at start-up, before any thread is spawned; SIG_DFL is a valid
    // handler for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Choice of a submodel of a container file (NAM `SlimmableContainer`).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct SlimArgs {
    /// Container files: the plugin's size slider value; the submodel NeuralAmpModelerCore
    /// runs at that value is used (the first whose max_value is above it, else the last).
    /// Default: every submodel for measure/compare/finetune; the plugin's default, the last
    /// (full-size) submodel, for process.
    #[arg(
        long,
        value_name = "VALUE",
        conflicts_with = "submodel",
        allow_hyphen_values = true
    )]
    pub slim: Option<f64>,
    /// Container files: the submodel to use, by index (see `dealias inspect`).
    #[arg(long, value_name = "N")]
    pub submodel: Option<usize>,
}

impl SlimArgs {
    /// Whether a submodel was chosen.
    pub fn is_chosen(&self) -> bool {
        self.slim.is_some() || self.submodel.is_some()
    }
}

/// The submodel `args` choose (`None`: none chosen); an error for a file that is not a
/// container.
pub(crate) fn chosen_submodel(
    model: &crate::ModelFile,
    args: &SlimArgs,
    path: &std::path::Path,
) -> anyhow::Result<Option<usize>> {
    if !args.is_chosen() {
        return Ok(None);
    }
    if !model.is_container() {
        anyhow::bail!(
            "--slim/--submodel: {} is not a container of submodels",
            path.display()
        );
    }
    if let Some(v) = args.slim {
        check::in_range("--slim", v, -1e12, 1e12, "")?;
    }
    let i = args
        .submodel
        .unwrap_or_else(|| model.slim_index(args.slim.unwrap_or(1.0)));
    model.select_submodel(i)?;
    Ok(Some(i))
}

/// The models a per-submodel command runs on: the chosen submodel, every submodel of a
/// container when none is chosen (labelled), or the file's network.
pub(crate) fn chosen_submodels(
    model: &crate::ModelFile,
    args: &SlimArgs,
    path: &std::path::Path,
) -> anyhow::Result<Vec<(Option<String>, crate::ModelFile)>> {
    if let Some(i) = chosen_submodel(model, args, path)? {
        return Ok(vec![(None, model.select_submodel(i)?)]);
    }
    if !model.is_container() {
        return Ok(vec![(None, model.clone())]);
    }
    (0..model.submodels.len())
        .map(|i| {
            let label = format!(
                "submodel {i} (max_value {}, {} parameters):",
                model.submodels[i].max_value,
                model.submodels[i].network.num_params()
            );
            Ok((Some(label), model.select_submodel(i)?))
        })
        .collect()
}

/// Loads a model and decides the sample rate to run it at: the rate the file states, else
/// `override_rate`, else the default of its format's plugins (GuitarML 44.1 kHz, NAM and AIDA-X 48 kHz),
/// with a notice whenever the rate was not stated. An override that contradicts the file's
/// rate is an error (dealias never resamples a model silently).
pub(crate) fn load_with_rate(
    path: &std::path::Path,
    override_rate: Option<f64>,
) -> anyhow::Result<(crate::ModelFile, f64)> {
    let model = crate::load_model(path)?;
    for n in &model.notices {
        notice(n);
    }
    let fs = match (model.sample_rate, override_rate) {
        (Some(m), Some(o)) if m != o => anyhow::bail!(
            "{} was trained at {m} Hz; the requested rate {o} Hz contradicts it",
            path.display()
        ),
        (Some(m), _) => m,
        (None, Some(o)) => {
            notice(&format!(
                "{} states no sample rate; using {o} Hz",
                path.display()
            ));
            o
        }
        (None, None) => {
            let (rate, _) = model.rate_or_default();
            notice(&format!(
                "{} states no sample rate; using {rate} Hz, the {} default (set it with --rate)",
                path.display(),
                model.format.name()
            ));
            rate
        }
    };
    Ok((model, fs))
}

/// The `--knobs` option of the commands that run a model.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KnobArgs {
    /// Knob values of a knob-conditioned model (Proteus / NeuralPi "...Knob" captures, AIDA-X
    /// models with 2-3 inputs), comma-separated, in the plugins' range 0..1. Default: 0.
    /// `--param` is accepted as another name.
    #[arg(
        long,
        alias = "param",
        value_name = "A[,B]",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    pub knobs: Vec<f64>,
}

/// Sets a conditioned model's knobs from `--knobs`, or says which values it runs at; refuses
/// `--knobs` that do not fit the model.
pub(crate) fn apply_knobs(
    model: &mut crate::ModelFile,
    knobs: &[f64],
    path: &std::path::Path,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let n = model.network.num_knobs();
    if knobs.is_empty() {
        if n > 0 {
            notice(&format!(
                "{} is conditioned on {n} knob(s); running at {:?} (set them with --knobs)",
                path.display(),
                model.network.knobs()
            ));
        }
        return Ok(());
    }
    model
        .network
        .set_knobs(knobs)
        .with_context(|| format!("--knobs for {}", path.display()))
}

/// Prints a notice (something the user should know that is not an error).
pub(crate) fn notice(msg: &str) {
    eprintln!("note: {msg}");
}

/// The -R reference of `measure` and `compare`: a reference circuit, or a device recording of
/// the sine set, and the gain applied to recordings.
#[derive(Debug, Clone, clap::Args)]
pub struct ReferenceArgs {
    /// The reference device the model imitates (see `dealias device list`, e.g. for the
    /// built-in models): the sine set (and `compare`'s clips) rendered through it give ESR-R,
    /// NMR-R and HESR-R (and the G+B reference).
    #[arg(long, value_name = "NAME", conflicts_with = "sine_reference")]
    pub device: Option<String>,
    /// A device recording of the sine set (mono WAV at the model's rate: the tones in the
    /// order of the set, -36/-18/-6 dBFS then MIDI 21-108, each 1.2 s) for ESR-R, NMR-R and
    /// HESR-R.
    #[arg(long, value_name = "REF.wav")]
    pub sine_reference: Option<PathBuf>,
    /// Gain in dB applied to the recordings (--sine-reference, and `compare`'s --reference)
    /// before comparing (e.g. 6.02 for recordings stored at half amplitude, as the paper's
    /// listening-test files).
    #[arg(
        long,
        value_name = "DB",
        default_value_t = 0.0,
        allow_hyphen_values = true
    )]
    pub reference_gain_db: f64,
}

impl ReferenceArgs {
    /// Checks the gain and the device's name (before any model is read); returns the device.
    pub(crate) fn check(&self) -> anyhow::Result<Option<crate::device::Device>> {
        // Levels beyond ±120 dB are not recordings at a reduced level but a mistake.
        check::in_range(
            "--reference-gain-db",
            self.reference_gain_db,
            -120.0,
            120.0,
            " dB",
        )?;
        Ok(self
            .device
            .as_deref()
            .map(crate::device::Device::by_name)
            .transpose()?)
    }

    /// Whether a sine-set reference is given.
    pub(crate) fn is_given(&self) -> bool {
        self.device.is_some() || self.sine_reference.is_some()
    }

    /// The linear gain of `--reference-gain-db`.
    pub(crate) fn gain(&self) -> f64 {
        10f64.powf(self.reference_gain_db / 20.0)
    }

    /// The sine set's reference: the recording (scaled by the gain, split into its tones) or
    /// the tones rendered through `device` (from [`ReferenceArgs::check`]); `None` when
    /// neither is given.
    pub(crate) fn sine_recordings(
        &self,
        device: Option<&crate::device::Device>,
        tones: &[crate::dsp::tones::EvalTone],
        fs: f64,
    ) -> anyhow::Result<Option<Vec<Vec<f64>>>> {
        if let Some(p) = &self.sine_reference {
            let a = crate::audio::read_mono(p, None)?;
            if a.sample_rate as f64 != fs {
                anyhow::bail!(
                    "{} is at {} Hz but the model runs at {fs} Hz",
                    p.display(),
                    a.sample_rate
                );
            }
            let gain = self.gain();
            let x: Vec<f64> = a.samples.iter().map(|v| v * gain).collect();
            return Ok(Some(
                crate::eval::sine_set::split_recording(&x, fs, tones.len())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            ));
        }
        Ok(match device {
            Some(d) => Some(crate::eval::sine_set::device_recordings(d, tones, fs)?),
            None => None,
        })
    }
}
