//! Machine-readable reports of the evaluation: the per-tone CSV and the JSON summaries of
//! `measure`, `compare` and `analyze`. Values are in dB (`10 log10` of the linear ratio);
//! JSON has no infinity, so a ratio of exactly zero (e.g. HESR-T of a teacher against itself,
//! printed `-inf` in the paper's Table 1) is written as `null`, and a value that could not be
//! computed as the string `"nan"` (see [`num`]).

use serde_json::{json, Map, Value};

use super::sine_set::{SineSetReport, ToneResult};
use super::table1::{Convention, Table1};
use crate::loss::metrics::Aggregate;

/// `10 log10(v)`.
pub fn db(v: f64) -> f64 {
    10.0 * v.log10()
}

/// How the JSON summaries write their dB values (the `aggregation` legend).
pub const AGGREGATION_LEGEND: &str = "*_db: 10*log10(mean over the tones of the linear ratio); mean_of_db: mean of per-tone dB; null = -inf (a ratio of exactly 0); \"nan\" = not computable";

/// A finite number; `null` for -inf (a ratio of exactly zero, as the legend says); the string
/// `"nan"` for NaN and `"inf"` for +inf, so that a value that could not be computed is never
/// read as a perfect one.
pub fn num(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else if v == f64::NEG_INFINITY {
        Value::Null
    } else if v.is_nan() {
        Value::from("nan")
    } else {
        Value::from("inf")
    }
}

/// Rounds to 4 decimals for display in JSON/CSV (the metrics are not meaningful beyond).
fn r4(v: f64) -> f64 {
    (v * 1e4).round() / 1e4
}

pub(crate) fn numr(v: f64) -> Value {
    num(r4(v))
}

/// The per-tone CSV: `midi, f0_hz, amplitude_db, esr_s_db, nmr_s_db` (plus `esr_t_db,
/// nmr_t_db, hesr_t_db` when a teacher was given), then `harmonics_db`: the peak amplitudes
/// `20 log10(2 |C_m|)` of harmonics 1..M in dBFS, separated by `;`.
pub fn tones_csv(report: &SineSetReport) -> String {
    let teacher = report
        .tones
        .first()
        .is_some_and(|t| t.metrics.esr_t.is_some());
    let mut s = String::from("midi,f0_hz,amplitude_db,esr_s_db,nmr_s_db");
    if teacher {
        s.push_str(",esr_t_db,nmr_t_db,hesr_t_db");
    }
    s.push_str(",harmonics_db\n");
    let f = |v: f64| {
        if v.is_finite() {
            format!("{:.4}", v)
        } else if v < 0.0 {
            "-inf".into()
        } else {
            "nan".into()
        }
    };
    for t in &report.tones {
        let m = &t.metrics;
        s.push_str(&format!(
            "{},{:.4},{},{},{}",
            t.tone.midi,
            t.tone.tone.f0,
            t.tone.dbfs,
            f(db(m.esr_s)),
            f(db(m.nmr_s))
        ));
        if teacher {
            for v in [m.esr_t, m.nmr_t, m.hesr_t] {
                s.push(',');
                s.push_str(&f(db(v.unwrap_or(f64::NAN))));
            }
        }
        s.push(',');
        let h: Vec<String> = t
            .harmonic_amplitudes
            .iter()
            .map(|a| f(20.0 * a.log10()))
            .collect();
        s.push_str(&h.join(";"));
        s.push('\n');
    }
    s
}

/// One tone as JSON: `midi, f0_hz, amplitude_db, esr_s_db, nmr_s_db` (and the -T values when
/// present).
pub fn tone_json(t: &ToneResult) -> Value {
    let m = &t.metrics;
    let mut o = Map::new();
    o.insert("midi".into(), json!(t.tone.midi));
    o.insert("f0_hz".into(), numr(t.tone.tone.f0));
    o.insert("amplitude_db".into(), json!(t.tone.dbfs));
    o.insert("esr_s_db".into(), numr(db(m.esr_s)));
    o.insert("nmr_s_db".into(), numr(db(m.nmr_s)));
    if let (Some(e), Some(n), Some(h)) = (m.esr_t, m.nmr_t, m.hesr_t) {
        o.insert("esr_t_db".into(), numr(db(e)));
        o.insert("nmr_t_db".into(), numr(db(n)));
        o.insert("hesr_t_db".into(), numr(db(h)));
    }
    if let (Some(e), Some(n), Some(h)) = (m.esr_r, m.nmr_r, m.hesr_r) {
        o.insert("esr_r_db".into(), numr(db(e)));
        o.insert("nmr_r_db".into(), numr(db(n)));
        o.insert("hesr_r_db".into(), numr(db(h)));
    }
    Value::Object(o)
}

/// A dB value for tables: one decimal, `-inf` for a ratio of zero (the teacher against
/// itself), `–` when not measured.
pub fn fmt_db(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.1}"),
        Some(v) if v < 0.0 => "-inf".into(),
        _ => "–".into(),
    }
}

/// The -R aggregates of a report as JSON: `esr_r_db`, `nmr_r_db`, `hesr_r_db` (10 log10 of the
/// mean of linear values) and their `*_mean_db` (mean of dB); `null` without a reference.
pub fn reference_json(r: &SineSetReport) -> Value {
    match (r.esr_r, r.nmr_r, r.hesr_r) {
        (Some(e), Some(n), Some(h)) => json!({
            "esr_r_db": numr(e.mean_linear_db), "esr_r_mean_db": numr(e.mean_db),
            "nmr_r_db": numr(n.mean_linear_db), "nmr_r_mean_db": numr(n.mean_db),
            "hesr_r_db": numr(h.mean_linear_db), "hesr_r_mean_db": numr(h.mean_db),
        }),
        _ => Value::Null,
    }
}

/// The `measure --json` summary: `convention`, `esr_s_db`, `nmr_s_db` (10 log10 of the mean
/// of linear values over all tones), `esr_s_mean_db`, `nmr_s_mean_db` (mean of per-tone dB),
/// `tones`, plus context; with a reference `esr_r_db`, `nmr_r_db`, `hesr_r_db` (and `*_mean_db`);
/// under the paper convention also `table1` ([`Table1::to_json`]).
pub fn measure_json(
    report: &SineSetReport,
    model: &str,
    convention: Convention,
    table: Option<&Table1>,
) -> Value {
    let mut v = json!({
        "model": model,
        "convention": convention.name(),
        "conditions": convention.description(),
        "sample_rate": report.fs,
        "oversample": report.oversample,
        "num_tones": report.tones.len(),
        "esr_s_db": numr(report.esr_s.mean_linear_db),
        "nmr_s_db": numr(report.nmr_s.mean_linear_db),
        "esr_s_mean_db": numr(report.esr_s.mean_db),
        "nmr_s_mean_db": numr(report.nmr_s.mean_db),
        "aggregation": "*_db: 10*log10(mean over tones of the linear ratio); *_mean_db: mean over tones of 10*log10(ratio)",
        "tones": report.tones.iter().map(tone_json).collect::<Vec<_>>(),
    });
    if let Value::Object(r) = reference_json(report) {
        v.as_object_mut().expect("an object").extend(r);
    }
    if let Some(t) = table {
        v["table1"] = t.to_json();
    }
    v
}

/// An aggregate as `{mean_linear_db, mean_db}`.
pub fn aggregate_json(a: &Aggregate) -> Value {
    json!({ "mean_linear_db": numr(a.mean_linear_db), "mean_db": numr(a.mean_db) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `null` means -inf (a perfect match) in the legend, so a value that could not be
    /// computed must not be written as `null` (before: `--reference-gain-db NaN` gave a G+B
    /// ESR of null).
    #[test]
    fn only_minus_infinity_is_null() {
        assert_eq!(num(-3.5), json!(-3.5));
        assert_eq!(num(f64::NEG_INFINITY), Value::Null);
        assert_eq!(num(f64::NAN), json!("nan"));
        assert_eq!(num(f64::INFINITY), json!("inf"));
        assert!(
            AGGREGATION_LEGEND.contains("null = -inf") && AGGREGATION_LEGEND.contains("\"nan\"")
        );
    }
}
