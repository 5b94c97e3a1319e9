//! `dealias measure MODEL`: the paper's sine-set aliasing metrics of a model with respect to
//! its own alias-free output (ESR-S, NMR-S; paper sec. 2.6, Table 1), optionally 2x
//! oversampled (sec. 4.4), with a per-tone CSV and the figures of Figs. 2–4.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::eval::plots::{save_nmr_vs_f0, save_spectrum, spectrum_db};
use crate::eval::report::{measure_json, tones_csv};
use crate::eval::sine_set::{
    measure_tones, measure_tones_against, spectrum_tone_output, RunOptions, SPECTRUM_TONE,
};
use crate::eval::table1::{measure_table1, Convention};
use crate::eval::SineSetReport;
use crate::loss::metrics::SineSetAnalyzer;
use crate::ModelFile;

/// Arguments of `dealias measure`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model file (.nam, GuitarML or AIDA-X .json).
    pub model: PathBuf,
    /// Oversampling factor: 2 gives the paper's ESR-S-OS2/NMR-S-OS2 baseline (sec. 4.4).
    #[arg(long, default_value_t = 1, value_name = "M")]
    pub oversample: usize,
    /// Directory for the per-tone CSV, the JSON summary and the figures (PNG and SVG).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
    /// Sample rate for a model file that states none (default: its format's standard rate).
    #[arg(long, value_name = "HZ")]
    pub rate: Option<f64>,
    /// Only the tones at this input level (-36, -18 or -6 dBFS; repeatable). Default: all
    /// three, as in Table 1; `--level -6` gives the tones of Fig. 4.
    #[arg(long, value_name = "DBFS", allow_hyphen_values = true)]
    pub level: Vec<f64>,
    #[command(flatten)]
    pub knobs: super::KnobArgs,
    #[command(flatten)]
    pub slim: super::SlimArgs,
    /// Knob-conditioned models: measure at every setting of a grid of N values per knob,
    /// evenly over 0..1 (one row per setting; with --out, one subdirectory per setting).
    #[arg(long, value_name = "N", conflicts_with = "knobs")]
    pub knob_grid: Option<usize>,
    /// Evaluation convention: `spec` (clean tones, aggregated over all tones) or `paper`
    /// (Table 1 as printed: per-level aggregation, -102 dBFS input noise floor, NMR at half
    /// amplitude; prints ESR-S, NMR-S and the 2x oversampled ESR-S-OS2, NMR-S-OS2).
    #[arg(long, value_enum, default_value_t = ConventionArg::Spec)]
    pub convention: ConventionArg,
    #[command(flatten)]
    pub reference_args: super::ReferenceArgs,
}

/// `--convention` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ConventionArg {
    /// The method specification's sine set and aggregations.
    Spec,
    /// The paper's Table 1 as printed.
    Paper,
}

impl From<ConventionArg> for Convention {
    fn from(c: ConventionArg) -> Self {
        match c {
            ConventionArg::Spec => Convention::Spec,
            ConventionArg::Paper => Convention::Paper,
        }
    }
}

/// The evaluation tones at the chosen levels (all 264 when `levels` is empty).
pub(crate) fn tones_at(levels: &[f64]) -> anyhow::Result<Vec<crate::dsp::tones::EvalTone>> {
    use crate::dsp::tones::{eval_sine_set, EVAL_LEVELS_DBFS};
    for l in levels {
        if !EVAL_LEVELS_DBFS.contains(l) {
            anyhow::bail!("--level {l}: the sine set has levels {EVAL_LEVELS_DBFS:?} dBFS");
        }
    }
    Ok(eval_sine_set()
        .into_iter()
        .filter(|t| levels.is_empty() || levels.contains(&t.dbfs))
        .collect())
}

/// Loads a model and picks its evaluation rate (the file's, else `fallback`, with a notice).
/// A progress bar over `n` tones on stderr (hidden when stderr is not a terminal).
pub(crate) fn progress_bar(n: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} tones, {elapsed} (eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Prints the two aggregations of one metric.
pub(crate) fn print_row(name: &str, lin: f64, mean: f64) {
    println!("  {name:<8} {lin:>15.1} {mean:>15.1}");
}

/// Runs `dealias measure`.
pub fn run(args: Args) -> anyhow::Result<()> {
    super::check::count("--oversample", args.oversample, None)?;
    super::check::rate("--rate", args.rate)?;
    let convention = Convention::from(args.convention);
    if convention == Convention::Paper && args.oversample != 1 {
        anyhow::bail!(
            "--convention paper measures the 2x oversampled columns itself; drop --oversample"
        );
    }
    if convention == Convention::Paper && args.knob_grid.is_some() {
        anyhow::bail!(
            "--convention paper prints Table 1 for one knob setting; measure each setting with --knobs A,B instead of --knob-grid"
        );
    }
    let device = args.reference_args.check()?;
    let has_reference = args.reference_args.is_given();
    if has_reference && (args.knob_grid.is_some() || args.oversample != 1) {
        anyhow::bail!("the -R metrics (--device, --sine-reference) are measured at the model's own rate and one knob setting; drop --oversample / --knob-grid");
    }
    let tones = tones_at(&args.level)?;
    let opts: RunOptions = convention.run_options().oversampled(args.oversample);
    let _locks = match &args.out {
        Some(dir) => Some(claim_outputs(dir, &[&args.model])?),
        None => None,
    };
    let (model, fs) = super::load_with_rate(&args.model, args.rate)?;
    check_memory(fs, opts, tones.len(), 1 + has_reference as usize)?;
    let recordings = args
        .reference_args
        .sine_recordings(device.as_ref(), &tones, fs)?;
    // A container without a chosen submodel: every submodel in turn.
    let models = super::chosen_submodels(&model, &args.slim, &args.model)?;
    let mut summaries = Vec::new();
    for (label, mut model) in models {
        if let Some(l) = &label {
            if !args.json {
                println!("{l}");
            }
        }
        let out = match (&args.out, &label) {
            (Some(dir), Some(_)) => Some(dir.join(format!("submodel_{}", model.active))),
            (dir, _) => dir.clone(),
        };
        if let Some(points) = args.knob_grid {
            measure_grid(&args, &mut model, fs, opts, &tones, points)?;
            continue;
        }
        let run = Measurement {
            fs,
            opts,
            tones: &tones,
            recordings: recordings.as_deref(),
            convention,
        };
        if let Some(mut v) = measure_one(&args, &mut model, &run, out)? {
            if label.is_some() {
                v["submodel"] = model.active.into();
                v["max_value"] = model.submodels[model.active].max_value.into();
            }
            summaries.push(v);
        }
    }
    match summaries.len() {
        0 => {}
        1 if !model.is_container() || args.slim.is_chosen() => {
            println!("{}", serde_json::to_string_pretty(&summaries[0])?)
        }
        _ => println!("{}", serde_json::to_string_pretty(&summaries)?),
    }
    Ok(())
}

/// What one `measure` run measures on.
struct Measurement<'a> {
    fs: f64,
    opts: RunOptions,
    tones: &'a [crate::dsp::tones::EvalTone],
    /// The sine set through the device (for the -R metrics).
    recordings: Option<&'a [Vec<f64>]>,
    convention: Convention,
}

/// `measure` of one network; with `--json` the summary is returned instead of printed.
fn measure_one(
    args: &Args,
    model: &mut ModelFile,
    run: &Measurement,
    out: Option<PathBuf>,
) -> anyhow::Result<Option<serde_json::Value>> {
    let Measurement {
        fs,
        opts,
        tones,
        recordings,
        convention,
    } = *run;
    super::apply_knobs(model, &args.knobs.knobs, &args.model)?;
    let paper = convention == Convention::Paper;
    let pb = progress_bar(tones.len() * if paper { 2 } else { 1 }, "sine set");
    let t0 = Instant::now();
    let progress = |k: usize| pb.set_position(k as u64);
    let (report, table) = if paper {
        let (t, r) = measure_table1(
            &model.network,
            fs,
            convention,
            tones,
            recordings,
            true,
            &progress,
        )?;
        (r, Some(t))
    } else {
        let r =
            measure_tones_against(&model.network, fs, opts, None, tones, recordings, &progress)?;
        (r, None)
    };
    pb.finish_and_clear();
    let elapsed = t0.elapsed().as_secs_f64();
    let name = args.model.display().to_string();
    let summary = measure_json(&report, &name, convention, table.as_ref());
    if let Some(dir) = &out {
        write_outputs(dir, model, fs, opts, &report, &summary)
            .with_context(|| format!("writing to {}", dir.display()))?;
    }
    if args.json {
        return Ok(Some(summary));
    }
    println!(
        "{name}: {} at {fs} Hz{}, {} tones (MIDI 21-108, zero phase, 1.2 s), {elapsed:.1} s",
        model.network.kind(),
        if args.oversample > 1 {
            format!(", {}x oversampled", args.oversample)
        } else {
            String::new()
        },
        report.tones.len()
    );
    if let Some(t) = &table {
        print!("{}", t.text());
        return Ok(None);
    }
    println!("  convention {}", convention.description());
    println!("  metric   mean of linear      mean of dB   (dB, w.r.t. the alias-free output)");
    print_row("ESR-S", report.esr_s.mean_linear_db, report.esr_s.mean_db);
    print_row("NMR-S", report.nmr_s.mean_linear_db, report.nmr_s.mean_db);
    for (n, a) in [
        ("ESR-R", report.esr_r),
        ("NMR-R", report.nmr_r),
        ("HESR-R", report.hesr_r),
    ] {
        if let Some(a) = a {
            print_row(n, a.mean_linear_db, a.mean_db);
        }
    }
    if report.esr_r.is_some() {
        println!(
            "  (-R: against {})",
            match &args.reference_args.device {
                Some(d) => format!("the {d} device"),
                None => "the sine-set recording".into(),
            }
        );
    }
    let audible: Vec<_> = report
        .tones
        .iter()
        .filter(|t| 10.0 * t.metrics.nmr_s.log10() > crate::eval::plots::AUDIBILITY_DB)
        .collect();
    println!(
        "  {} of {} tones have NMR-S above -10 dB (aliasing likely audible)",
        audible.len(),
        report.tones.len()
    );
    if let Some(dir) = &out {
        println!(
            "  wrote tones.csv, summary.json and figures to {}",
            dir.display()
        );
    }
    Ok(None)
}

/// `measure --knob-grid N`: the sine-set metrics at every knob setting of the grid.
fn measure_grid(
    args: &Args,
    model: &mut ModelFile,
    fs: f64,
    opts: RunOptions,
    tones: &[crate::dsp::tones::EvalTone],
    points: usize,
) -> anyhow::Result<()> {
    if model.network.num_knobs() == 0 {
        anyhow::bail!("--knob-grid: {} has no knob inputs", args.model.display());
    }
    if points == 0 {
        anyhow::bail!("--knob-grid must be at least 1");
    }
    let grid = model.network.knob_grid(points);
    let name = args.model.display().to_string();
    let mut rows = Vec::new();
    if !args.json {
        println!(
            "{name}: {} at {fs} Hz, {} tones per knob setting, {} settings",
            model.network.kind(),
            tones.len(),
            grid.len()
        );
        println!(
            "  knobs          ESR-S lin  ESR-S dB   NMR-S lin  NMR-S dB   tones NMR-S > -10 dB"
        );
    }
    for knobs in &grid {
        model.network.set_knobs(knobs)?;
        let pb = progress_bar(tones.len(), &format!("knobs {knobs:?}"));
        let report = measure_tones(&model.network, fs, opts, None, tones, &|k| {
            pb.set_position(k as u64)
        })?;
        pb.finish_and_clear();
        let mut summary = measure_json(&report, &name, Convention::from(args.convention), None);
        summary["knobs"] = serde_json::json!(knobs);
        if let Some(dir) = &args.out {
            let sub = dir.join(format!(
                "knobs_{}",
                knobs
                    .iter()
                    .map(|k| format!("{k:.3}"))
                    .collect::<Vec<_>>()
                    .join("_")
            ));
            write_outputs(&sub, model, fs, opts, &report, &summary)
                .with_context(|| format!("writing to {}", sub.display()))?;
        }
        if !args.json {
            let audible = report
                .tones
                .iter()
                .filter(|t| 10.0 * t.metrics.nmr_s.log10() > crate::eval::plots::AUDIBILITY_DB)
                .count();
            println!(
                "  {:<14} {:>9.1} {:>9.1} {:>11.1} {:>9.1}   {audible}/{}",
                format!("{knobs:?}"),
                report.esr_s.mean_linear_db,
                report.esr_s.mean_db,
                report.nmr_s.mean_linear_db,
                report.nmr_s.mean_db,
                report.tones.len()
            );
        }
        rows.push(summary);
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "knob_grid": rows }))?
        );
    }
    Ok(())
}

/// Checks that the sine-set evaluation of `tones` tones at `fs` with `opts` and `models`
/// models fits in memory, naming the options that size it.
pub(crate) fn check_memory(
    fs: f64,
    opts: RunOptions,
    tones: usize,
    models: usize,
) -> anyhow::Result<()> {
    crate::eval::sine_set::check_memory(fs, opts, tones, models).with_context(|| {
        format!(
            "--oversample {} at {fs} Hz (the model's rate, or --rate)",
            opts.oversample
        )
    })
}

/// The files `measure --out DIR` writes.
const OUT_FILES: [&str; 6] = [
    "tones.csv",
    "summary.json",
    "nmr_s_vs_f0.svg",
    "nmr_s_vs_f0.png",
    "spectrum_2394Hz_-6dBFS.svg",
    "spectrum_2394Hz_-6dBFS.png",
];

/// Creates `dir` and claims the files written into it (see [`crate::io::Outputs`]).
fn claim_outputs(dir: &Path, inputs: &[&Path]) -> anyhow::Result<crate::io::OutputLocks> {
    std::fs::create_dir_all(dir).with_context(|| format!("--out {}", dir.display()))?;
    let mut set = crate::io::Outputs::new();
    for i in inputs {
        set = set.input(i, "MODEL");
    }
    for f in OUT_FILES {
        set = set.output(&dir.join(f), "--out");
    }
    Ok(set.claim()?)
}

fn write_outputs(
    dir: &Path,
    model: &ModelFile,
    fs: f64,
    opts: RunOptions,
    report: &SineSetReport,
    summary: &serde_json::Value,
) -> anyhow::Result<()> {
    // One subdirectory per submodel of a container.
    std::fs::create_dir_all(dir)?;
    crate::io::write_atomic(&dir.join("tones.csv"), tones_csv(report).as_bytes())?;
    crate::io::write_atomic(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(summary)?.as_bytes(),
    )?;
    let os = if opts.oversample > 1 {
        format!(", {}x oversampled", opts.oversample)
    } else {
        String::new()
    };
    save_nmr_vs_f0(
        &dir.join("nmr_s_vs_f0"),
        report,
        &format!("NMR-S vs f0{os}"),
    )?;
    // Figs. 2–3: the spectrum of the 2394.3 Hz tone at -6 dBFS with its harmonics.
    let y = spectrum_tone_output(&model.network, fs, opts)?;
    let an = SineSetAnalyzer::new(fs)?;
    let spec = spectrum_db(an.analyzer(), &y)?;
    let h = an.analyzer().analyze(&y, SPECTRUM_TONE.f0)?;
    let marks: Vec<(f64, f64)> = h
        .magnitudes()
        .iter()
        .enumerate()
        .map(|(i, m)| ((i + 1) as f64 * SPECTRUM_TONE.f0, 2.0 * m))
        .collect();
    save_spectrum(
        &dir.join("spectrum_2394Hz_-6dBFS"),
        fs,
        &spec,
        &marks,
        -160.0,
        &format!("Output spectrum, 2394.3 Hz at -6 dBFS{os}"),
    )?;
    Ok(())
}
