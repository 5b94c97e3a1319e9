//! The before/after summary of a fine-tuning run, in the shape of the paper's Table 1: the
//! sine-set metrics (sec. 2.6) of the teacher and of the student, the student's -T metrics
//! against the teacher, each as `10·log10` of the mean of linear values (the paper's "arithmetic
//! mean") and as the mean of per-tone dB values (convention spec), and the same rows under the
//! paper's convention (Table 1 as printed, with its -R columns against the teacher's output;
//! see [`super::table1`]).

use serde_json::{json, Value};

use super::sine_set::{compare_sine_set, no_progress, RunOptions, SineReference, SineSetReport};
use super::table1::{compare_table1, Convention, Table1};
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

/// Teacher and student on the evaluation sine set.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub teacher: SelfMetrics,
    pub student: SelfMetrics,
    pub esr_t: Aggregate,
    pub nmr_t: Aggregate,
    pub hesr_t: Aggregate,
    /// `esr_t.mean_linear_db`.
    pub esr_t_db: f64,
    /// Both rows under the paper's convention (without the oversampled columns).
    pub paper: Table1,
    /// The per-tone results of teacher and student (the student's with the -T metrics).
    pub reports: (SineSetReport, SineSetReport),
}

fn self_metrics(r: &SineSetReport) -> SelfMetrics {
    SelfMetrics {
        esr_s: r.esr_s,
        nmr_s: r.nmr_s,
        nmr_s_db: r.nmr_s.mean_linear_db,
    }
}

/// Measures teacher and student at sample rate `fs` on the whole evaluation sine set.
pub fn before_after(teacher: &Network, student: &Network, fs: f64) -> Result<Summary> {
    let (t, s) = compare_sine_set(
        teacher,
        student,
        fs,
        RunOptions::default(),
        &eval_sine_set(),
        &no_progress,
    )?;
    let (paper, _, _) = compare_table1(
        teacher,
        student,
        fs,
        Convention::Paper,
        &eval_sine_set(),
        SineReference::Teacher,
        false,
        &no_progress,
    )?;
    let missing = || crate::Error::InvalidArgument("teacher metrics missing".into());
    let esr_t = s.esr_t.ok_or_else(missing)?;
    Ok(Summary {
        teacher: self_metrics(&t),
        student: self_metrics(&s),
        esr_t,
        nmr_t: s.nmr_t.ok_or_else(missing)?,
        hesr_t: s.hesr_t.ok_or_else(missing)?,
        esr_t_db: esr_t.mean_linear_db,
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
            "convention": Convention::Spec.name(),
            "conditions": Convention::Spec.description(),
            "paper_convention": self.paper.to_json(),
        })
    }
}
