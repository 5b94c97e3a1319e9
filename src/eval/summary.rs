//! The before/after summary of a fine-tuning run, in the shape of the paper's Table 1: the
//! sine-set metrics (sec. 2.6) of the teacher and of the student, the student's -T metrics
//! against the teacher, each as `10·log10` of the mean of linear values (the paper's "arithmetic
//! mean") and as the mean of per-tone dB values (convention spec), and the same rows under the
//! paper's convention (Table 1 as printed, with its -R columns against the teacher's output;
//! see [`super::table1`]).

use serde_json::{json, Value};

use super::report::{db, fmt_db, num, reference_json};

use super::audio_metrics::{builtin_clips, compare_on_clips, reference_label, AudioMetrics};
use super::sine_set::{
    compare_sine_set_with, device_recordings, no_progress, RunOptions, SineReference, SineSetReport,
};
use super::table1::{compare_table1, Convention, Table1};
use crate::device::Device;
use crate::dsp::tones::eval_sine_set;
use crate::loss::metrics::Aggregate;
use crate::models::Network;
use crate::Result;

/// ESR-S and NMR-S of one model, both aggregations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelfMetrics {
    pub esr_s: Aggregate,
    pub nmr_s: Aggregate,
    /// `nmr_s.mean_linear_db`, the headline number.
    pub nmr_s_db: f64,
}

/// The G+B metrics of teacher and student on audio clips.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipMetrics {
    pub teacher: AudioMetrics,
    pub student: AudioMetrics,
    /// The clips, in words (e.g. "the built-in guitar and bass clips").
    pub clips: String,
    /// What the metrics are against: "the teacher's output" or "the device".
    pub against: String,
}

/// Teacher and student on the evaluation sine set and on the G+B clips.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub teacher: SelfMetrics,
    pub student: SelfMetrics,
    pub esr_t: Aggregate,
    pub nmr_t: Aggregate,
    pub hesr_t: Aggregate,
    /// `esr_t.mean_linear_db`.
    pub esr_t_db: f64,
    /// G+B ESR and MRSL on the built-in clips (`None` below the A-weighting's lowest rate,
    /// [`crate::dsp::a_weighting::MIN_RATE`]).
    pub audio: Option<ClipMetrics>,
    /// The device the -R metrics are against, when known.
    pub device: Option<String>,
    /// Both rows under the paper's convention (without the oversampled columns), with the G+B
    /// columns, and the -R columns against the device (without one, against the teacher).
    pub paper: Table1,
    /// The per-tone results of teacher and student (the student's with the -T metrics, both
    /// with the -R metrics when a device is known).
    pub reports: (SineSetReport, SineSetReport),
}

fn self_metrics(r: &SineSetReport) -> SelfMetrics {
    SelfMetrics {
        esr_s: r.esr_s,
        nmr_s: r.nmr_s,
        nmr_s_db: r.nmr_s.mean_linear_db,
    }
}

/// Measures teacher and student at sample rate `fs` on the whole evaluation sine set and on
/// the built-in guitar and bass clips, against the teacher ([`before_after_with`] adds a
/// reference device).
pub fn before_after(teacher: &Network, student: &Network, fs: f64) -> Result<Summary> {
    before_after_with(teacher, student, fs, None)
}

/// [`before_after`] with the device the teacher models: the sine set and the clips rendered
/// through it are the reference of the -R metrics and of the G+B metrics (Table 1's full row).
pub fn before_after_with(
    teacher: &Network,
    student: &Network,
    fs: f64,
    device: Option<&Device>,
) -> Result<Summary> {
    let tones = eval_sine_set();
    let recordings = device
        .map(|d| device_recordings(d, &tones, fs))
        .transpose()?;
    let reference = match &recordings {
        Some(r) => SineReference::Recordings(r),
        None => SineReference::None,
    };
    let (t, s) = compare_sine_set_with(
        teacher,
        student,
        fs,
        RunOptions::default(),
        &tones,
        reference,
        &no_progress,
    )?;
    // The paper's convention plays its tones with an input noise floor: the device's
    // recordings of clean tones stand for the device there (its own noise is not modelled).
    let paper_reference = match &recordings {
        Some(r) => SineReference::Recordings(r),
        None => SineReference::Teacher,
    };
    let (mut paper, _, _) = compare_table1(
        teacher,
        student,
        fs,
        Convention::Paper,
        &tones,
        paper_reference,
        false,
        &no_progress,
    )?;
    let audio = if fs >= crate::dsp::a_weighting::MIN_RATE {
        let (clips, names) = builtin_clips(fs, device)?;
        let cmp = compare_on_clips(teacher, student, fs, RunOptions::default(), &clips)?;
        paper.add_audio(&cmp.teacher, &cmp.student);
        Some(ClipMetrics {
            teacher: cmp.teacher,
            student: cmp.student,
            clips: format!(
                "the built-in {} clips ({} s each)",
                names.join(" and "),
                crate::dsp::training_signal::TEST_CLIP_SECONDS
            ),
            against: reference_label(device),
        })
    } else {
        None
    };
    let missing = || crate::Error::InvalidArgument("teacher metrics missing".into());
    let esr_t = s.esr_t.ok_or_else(missing)?;
    Ok(Summary {
        teacher: self_metrics(&t),
        student: self_metrics(&s),
        esr_t,
        nmr_t: s.nmr_t.ok_or_else(missing)?,
        hesr_t: s.hesr_t.ok_or_else(missing)?,
        esr_t_db: esr_t.mean_linear_db,
        audio,
        device: device.map(|d| d.name.to_string()),
        paper,
        reports: (t, s),
    })
}

impl Summary {
    /// A text table, one row per model as in Table 1 (dB; mean of linear values, with the
    /// mean of per-tone dB values in brackets).
    pub fn table(&self) -> String {
        let c = |a: &Aggregate| format!("{:>7.1} ({:>6.1})", a.mean_linear_db, a.mean_db);
        let dash = format!("{:>16}", "-");
        let mut s = String::new();
        s.push_str(
            "sine set, convention spec, dB: 10·log10(mean of linear) (mean of per-tone dB)\n",
        );
        s.push_str(&format!(
            "{:<8} {:>16} {:>16} {:>16} {:>16} {:>16}\n",
            "role", "ESR-S", "NMR-S", "ESR-T", "NMR-T", "HESR-T"
        ));
        s.push_str(&format!(
            "{:<8} {} {} {dash} {dash} {dash}\n",
            "teacher",
            c(&self.teacher.esr_s),
            c(&self.teacher.nmr_s)
        ));
        s.push_str(&format!(
            "{:<8} {} {} {} {} {}",
            "student",
            c(&self.student.esr_s),
            c(&self.student.nmr_s),
            c(&self.esr_t),
            c(&self.nmr_t),
            c(&self.hesr_t)
        ));
        s.push('\n');
        if let Some(d) = &self.device {
            s.push_str(&format!(
                "against the {d} device (-R), convention spec, dB: 10·log10(mean of linear) (mean of per-tone dB)\n"
            ));
            s.push_str(&format!(
                "{:<8} {:>16} {:>16} {:>16}\n",
                "role", "ESR-R", "NMR-R", "HESR-R"
            ));
            for (role, r) in [("teacher", &self.reports.0), ("student", &self.reports.1)] {
                let cell = |a: Option<Aggregate>| a.map_or(dash.clone(), |a| c(&a));
                s.push_str(&format!(
                    "{role:<8} {} {} {}\n",
                    cell(r.esr_r),
                    cell(r.nmr_r),
                    cell(r.hesr_r)
                ));
            }
        }
        if let Some(audio) = &self.audio {
            s.push_str(&format!(
                "G+B on {}, against {}, dB\n{:<8} {:>16} {:>16}\n",
                audio.clips, audio.against, "role", "ESR (A-weighted)", "MRSL"
            ));
            for (role, a) in [("teacher", &audio.teacher), ("student", &audio.student)] {
                s.push_str(&format!(
                    "{role:<8} {:>16} {:>16}\n",
                    fmt_db(Some(db(a.esr))),
                    fmt_db(Some(db(a.mrsl)))
                ));
            }
        }
        s.push_str(&self.paper.text());
        s
    }

    /// The summary as JSON (convention spec: `*_db` mean of linear values in dB, `*_mean_db`
    /// mean of dB; `paper_convention`: [`Table1::to_json`]).
    pub fn to_json(&self) -> Value {
        let pair = |a: &Aggregate| (a.mean_linear_db, a.mean_db);
        let side = |m: &SelfMetrics| {
            json!({
                "esr_s_db": pair(&m.esr_s).0, "esr_s_mean_db": pair(&m.esr_s).1,
                "nmr_s_db": pair(&m.nmr_s).0, "nmr_s_mean_db": pair(&m.nmr_s).1,
            })
        };
        json!({
            "teacher": side(&self.teacher),
            "student": side(&self.student),
            "esr_t_db": self.esr_t.mean_linear_db, "esr_t_mean_db": self.esr_t.mean_db,
            "nmr_t_db": self.nmr_t.mean_linear_db, "nmr_t_mean_db": self.nmr_t.mean_db,
            "hesr_t_db": self.hesr_t.mean_linear_db, "hesr_t_mean_db": self.hesr_t.mean_db,
            "gb": self.audio.as_ref().map(|a| json!({
                "clips": a.clips, "against": a.against,
                "teacher": {"esr_db": num(db(a.teacher.esr)), "mrsl_db": num(db(a.teacher.mrsl))},
                "student": {"esr_db": num(db(a.student.esr)), "mrsl_db": num(db(a.student.mrsl))},
            })),
            "reference_device": self.device,
            "reference": {
                "teacher": reference_json(&self.reports.0),
                "student": reference_json(&self.reports.1),
            },
            "convention": Convention::Spec.name(),
            "conditions": Convention::Spec.description(),
            "paper_convention": self.paper.to_json(),
        })
    }
}
