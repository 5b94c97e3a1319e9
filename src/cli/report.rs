//! `dealias report TEACHER STUDENT [-o REPORT.html]`: the self-contained HTML report of
//! [`crate::eval::html`] for any teacher–student pair. The training curves come from the
//! student's fine-tuning report (`STUDENT.report.json`) when it is there.

use std::path::{Path, PathBuf};

use crate::train::batch::{html_path, report_path};

use anyhow::{bail, Context};

use super::measure::progress_bar;
use crate::eval::html::{html_report, ReportInputs};
use crate::eval::plots::TrainingCurve;
use crate::eval::sine_set::{compare_sine_set_with, RunOptions, SineReference};

/// Arguments of `dealias report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The teacher (original) model file.
    pub teacher: PathBuf,
    /// The student (fine-tuned) model file.
    pub student: PathBuf,
    /// The HTML file to write (default: STUDENT.report.html).
    #[arg(short, long, value_name = "REPORT.html")]
    pub output: Option<PathBuf>,
    /// The reference device the teacher models (see `dealias device list`): its spectrum,
    /// sweep and clips, and the -R columns and G+B metrics against it.
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
    /// Sample rate for model files that state none (default: their format's standard rate).
    #[arg(long, value_name = "HZ")]
    pub rate: Option<f64>,
    /// Only the tones at this input level (-36, -18 or -6 dBFS; repeatable). Default: all.
    #[arg(long, value_name = "DBFS", allow_hyphen_values = true)]
    pub level: Vec<f64>,
}

/// The validation history of a fine-tuning report JSON, labelled as the student's.
pub(crate) fn curves_from_report(json: &serde_json::Value) -> TrainingCurve {
    TrainingCurve::from_report("student", json)
}

/// Runs `dealias report`.
pub fn run(args: Args) -> anyhow::Result<()> {
    super::check::rate("--rate", args.rate)?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| html_path(&args.student));
    let device = args
        .device
        .as_deref()
        .map(crate::device::Device::by_name)
        .transpose()?;
    let _locks = crate::io::Outputs::new()
        .input(&args.teacher, "TEACHER")
        .input(&args.student, "STUDENT")
        .output(&output, "the report")
        .claim()?;
    let (teacher, fs) = super::load_with_rate(&args.teacher, args.rate)?;
    let (student, fs_s) = super::load_with_rate(&args.student, args.rate)?;
    if fs != fs_s {
        bail!("the teacher runs at {fs} Hz but the student at {fs_s} Hz");
    }
    let curves = {
        let p = report_path(&args.student);
        match std::fs::read(&p) {
            Ok(b) => {
                let v: serde_json::Value = serde_json::from_slice(&b)
                    .with_context(|| format!("{}: not a fine-tuning report", p.display()))?;
                curves_from_report(&v)
            }
            Err(_) => curves_from_report(&serde_json::Value::Null),
        }
    };
    let tones = super::measure::tones_at(&args.level)?;
    let opts = RunOptions::default();
    super::measure::check_memory(fs, opts, tones.len(), 2 + device.is_some() as usize)?;
    let pb = progress_bar(tones.len(), "sine set");
    let progress = |k: usize| pb.set_position(k as u64);
    let recordings = device
        .as_ref()
        .map(|d| crate::eval::sine_set::device_recordings(d, &tones, fs))
        .transpose()?;
    let reference = match &recordings {
        Some(r) => SineReference::Recordings(r),
        None => SineReference::None,
    };
    let (rt, rs) = compare_sine_set_with(
        &teacher.network,
        &student.network,
        fs,
        opts,
        &tones,
        reference,
        &progress,
    )?;
    pb.finish_and_clear();
    let title = format!(
        "dealias: {} → {}",
        args.teacher.display(),
        args.student.display()
    );
    let html = html_report(&ReportInputs {
        title: &title,
        fs,
        teacher: &teacher.network,
        student: &student.network,
        sine_set: (&rt, &rs),
        device: device.as_ref(),
        curves: &curves,
    })?;
    crate::io::write_atomic(&output, html.as_bytes())?;
    eprintln!("wrote {}", output.display());
    Ok(())
}

/// The HTML report of a `finetune` run (written beside its output model, before it).
pub(crate) fn finetune_html(
    model: &Path,
    (teacher, student): (&crate::Network, &crate::Network),
    fs: f64,
    device: Option<&crate::device::Device>,
    summary: &crate::eval::summary::Summary,
    report_json: &serde_json::Value,
    output: &Path,
) -> crate::Result<String> {
    let title = format!("dealias: {} → {}", model.display(), output.display());
    html_report(&ReportInputs {
        title: &title,
        fs,
        teacher,
        student,
        sine_set: (&summary.reports.0, &summary.reports.1),
        device,
        curves: &curves_from_report(report_json),
    })
}
