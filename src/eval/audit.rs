//! Aliasing audit of a model library: every model file under the given paths measured on the
//! sine set (ESR-S, NMR-S, paper sec. 2.6) and ranked by its NMR-S, worst first — the answer to
//! "which of my captures alias audibly, and where?" that the paper gave for its case studies
//! (sec. 3.1: the worst aliasing among the most downloaded packages).
//!
//! Files that cannot be read or measured are kept in the result with their reason; nothing is
//! dropped silently. Models run in parallel (rayon; each measurement parallelises over its
//! tones as well).
//!
//! A library takes hours (a standard WaveNet costs about 23 s of two cores), so each model's
//! result can be kept in a cache folder as soon as it is measured: a killed audit, rerun with
//! the same folder, measures only what is missing. A cached result is keyed by the file's
//! content, the rate option and [`CACHE_VERSION`], so a changed file is measured again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::report::num;
use super::sine_set::{measure_sine_set, RunOptions, SineSetReport};
use super::AUDIBILITY_DB;
use crate::dsp::tones::EVAL_LEVELS_DBFS;
use crate::Result;

/// Bumped whenever the measurement changes, so that older cached results are not reused.
pub const CACHE_VERSION: u32 = 1;

/// The sine-set aliasing of one model file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditEntry {
    pub path: PathBuf,
    /// Format name (e.g. "Neural Amp Modeler (.nam)").
    pub format: String,
    /// Architecture ("LSTM", "GRU", "WaveNet", ...).
    pub architecture: String,
    pub parameters: usize,
    /// The rate the model was measured at, and whether it was assumed (the file states none).
    pub sample_rate: f64,
    pub rate_assumed: bool,
    /// ESR-S and NMR-S, `10 log10` of the mean of linear values over all tones (dB).
    pub esr_s_db: f64,
    pub nmr_s_db: f64,
    /// The same as the mean of per-tone dB values.
    pub esr_s_mean_db: f64,
    pub nmr_s_mean_db: f64,
    /// Per input level (dBFS): ESR-S and NMR-S, `10 log10` of the mean of linear values.
    pub per_level: Vec<(f64, f64, f64)>,
    /// Tones whose NMR-S is above the audibility line ([`AUDIBILITY_DB`]).
    pub audible_tones: usize,
    /// The lowest MIDI note at which some level's NMR-S is above the audibility line: the
    /// notes from there up alias audibly.
    pub audible_from_midi: Option<u8>,
    /// The worst tone: (MIDI note, level in dBFS, f0 in Hz, NMR-S in dB).
    pub worst: (u8, f64, f64, f64),
    /// NMR-S in dB against f0, per level (Fig. 4's curves).
    pub curves: Vec<(f64, Vec<(f64, f64)>)>,
}

/// One file of the audit: measured, or the reason it could not be.
#[derive(Clone, Debug)]
pub enum AuditItem {
    Measured(Box<AuditEntry>),
    Failed { path: PathBuf, reason: String },
}

impl AuditItem {
    pub fn path(&self) -> &Path {
        match self {
            AuditItem::Measured(e) => &e.path,
            AuditItem::Failed { path, .. } => path,
        }
    }
}

/// Model files under `paths`: files as given (any name), folders searched recursively for
/// `.nam` and `.json` files, sorted. Paths that do not exist or cannot be listed are returned
/// as failures.
pub fn collect_model_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<AuditItem>) {
    let mut files = Vec::new();
    let mut failed = Vec::new();
    fn walk(dir: &Path, files: &mut Vec<PathBuf>, failed: &mut Vec<AuditItem>) {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                failed.push(AuditItem::Failed {
                    path: dir.to_path_buf(),
                    reason: format!("cannot list the folder: {e}"),
                });
                return;
            }
        };
        let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        children.sort();
        for p in children {
            // Symbolic links to folders are not followed (no cycles).
            let is_dir = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir());
            if is_dir {
                walk(&p, files, failed);
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| e.eq_ignore_ascii_case("nam") || e.eq_ignore_ascii_case("json"))
            {
                files.push(p);
            }
        }
    }
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => walk(p, &mut files, &mut failed),
            Ok(_) => files.push(p.clone()),
            Err(e) => failed.push(AuditItem::Failed {
                path: p.clone(),
                reason: e.to_string(),
            }),
        }
    }
    files.dedup();
    (files, failed)
}

fn entry(path: &Path, rate: Option<f64>) -> Result<AuditEntry> {
    let model = crate::load_model(path)?;
    let (fs, assumed) = match (model.sample_rate, rate) {
        (Some(r), _) => (r, false),
        (None, Some(r)) => (r, true),
        (None, None) => model.rate_or_default(),
    };
    let report = measure_sine_set(&model.network, fs, RunOptions::default(), None, &|_| {})?;
    Ok(summarise(path, &model, fs, assumed, &report))
}

fn summarise(
    path: &Path,
    model: &crate::ModelFile,
    fs: f64,
    rate_assumed: bool,
    r: &SineSetReport,
) -> AuditEntry {
    let nmr_db = |t: &super::ToneResult| 10.0 * t.metrics.nmr_s.log10();
    let per_level = EVAL_LEVELS_DBFS
        .iter()
        .map(|&l| {
            let ts: Vec<_> = r.tones.iter().filter(|t| t.tone.dbfs == l).collect();
            let mean = |f: &dyn Fn(&super::ToneResult) -> f64| {
                10.0 * (ts.iter().map(|t| f(t)).sum::<f64>() / ts.len().max(1) as f64).log10()
            };
            (l, mean(&|t| t.metrics.esr_s), mean(&|t| t.metrics.nmr_s))
        })
        .collect();
    let audible: Vec<_> = r
        .tones
        .iter()
        .filter(|t| nmr_db(t) > AUDIBILITY_DB)
        .collect();
    let worst = r
        .tones
        .iter()
        .max_by(|a, b| nmr_db(a).total_cmp(&nmr_db(b)))
        .map_or((0, 0.0, 0.0, f64::NAN), |t| {
            (t.tone.midi, t.tone.dbfs, t.tone.tone.f0, nmr_db(t))
        });
    let curves = EVAL_LEVELS_DBFS
        .iter()
        .map(|&l| {
            let pts = r
                .tones
                .iter()
                .filter(|t| t.tone.dbfs == l)
                .map(|t| (t.tone.tone.f0, nmr_db(t)))
                .collect();
            (l, pts)
        })
        .collect();
    AuditEntry {
        path: path.to_path_buf(),
        format: model.format.name().to_string(),
        architecture: model.network.kind().to_string(),
        parameters: model.network.num_params(),
        sample_rate: fs,
        rate_assumed,
        esr_s_db: r.esr_s.mean_linear_db,
        nmr_s_db: r.nmr_s.mean_linear_db,
        esr_s_mean_db: r.esr_s.mean_db,
        nmr_s_mean_db: r.nmr_s.mean_db,
        per_level,
        audible_tones: audible.len(),
        audible_from_midi: audible.iter().map(|t| t.tone.midi).min(),
        worst,
        curves,
    }
}

/// Measures every model file under `paths` (see [`collect_model_files`]) at its own rate (a
/// file that states none at `rate`, else at its format's plugins' rate) and ranks them by
/// NMR-S, worst first; failures follow, in path order. With a `cache` folder, results already
/// kept there are reused and every new one is kept as soon as it is measured (failures are
/// tried again next time). `progress` is called with the number of files done.
pub fn audit(
    paths: &[PathBuf],
    rate: Option<f64>,
    cache: Option<&Path>,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Vec<AuditItem>> {
    if let Some(dir) = cache {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    }
    let (files, mut failed) = collect_model_files(paths);
    let done = AtomicUsize::new(0);
    let total = files.len();
    let results: Vec<AuditItem> = files
        .par_iter()
        .map(|p| {
            let item = match cached_entry(p, rate, cache) {
                Ok(e) => AuditItem::Measured(Box::new(e)),
                Err(e) => {
                    // Model-file errors name the file; the audit lists it already.
                    let text = e.to_string();
                    let prefix = format!("{}: ", p.display());
                    AuditItem::Failed {
                        path: p.clone(),
                        reason: text.strip_prefix(&prefix).unwrap_or(&text).to_string(),
                    }
                }
            };
            progress(done.fetch_add(1, Ordering::SeqCst) + 1, total);
            item
        })
        .collect();
    let (mut measured, f): (Vec<_>, Vec<_>) = results
        .into_iter()
        .partition(|i| matches!(i, AuditItem::Measured(_)));
    measured.sort_by(|a, b| match (a, b) {
        (AuditItem::Measured(x), AuditItem::Measured(y)) => y.nmr_s_db.total_cmp(&x.nmr_s_db),
        _ => std::cmp::Ordering::Equal,
    });
    failed.extend(f);
    failed.sort_by(|a, b| a.path().cmp(b.path()));
    measured.extend(failed);
    Ok(measured)
}

/// [`entry`] through the cache: the kept result when one matches the file's content and the
/// options, else a new measurement, kept. A cache file that cannot be read or parsed is
/// measured again (and replaced), never trusted.
fn cached_entry(path: &Path, rate: Option<f64>, cache: Option<&Path>) -> Result<AuditEntry> {
    let Some(dir) = cache else {
        return entry(path, rate);
    };
    let bytes = std::fs::read(path).map_err(|e| crate::Error::io(path, e))?;
    let key = format!(
        "dealias {} audit v{CACHE_VERSION} rate {rate:?} content {}",
        env!("CARGO_PKG_VERSION"),
        crate::io::checksum(&bytes)
    );
    let file = dir.join(format!(
        "{}.json",
        crate::io::checksum(key.as_bytes()).trim_start_matches("fnv1a64:")
    ));
    #[derive(Serialize, Deserialize)]
    struct Kept {
        key: String,
        entry: AuditEntry,
    }
    if let Some(kept) = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice::<Kept>(&b).ok())
        .filter(|k| k.key == key)
    {
        return Ok(AuditEntry {
            path: path.to_path_buf(),
            ..kept.entry
        });
    }
    let e = entry(path, rate)?;
    let kept = Kept { key, entry: e };
    // A result that does not survive JSON (a non-finite value) is simply not kept.
    if let Ok(text) = serde_json::to_vec(&kept) {
        if serde_json::from_slice::<Kept>(&text).is_ok() {
            crate::io::write_atomic(&file, &text)?;
        }
    }
    Ok(kept.entry)
}

/// MIDI note name (e.g. 69 -> "A4").
pub fn note_name(midi: u8) -> String {
    const NAMES: [&str; 12] = [
        "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
    ];
    format!("{}{}", NAMES[midi as usize % 12], midi as i32 / 12 - 1)
}

/// The audit as JSON: `models` (ranked) and `failed` (path and reason).
pub fn audit_json(items: &[AuditItem]) -> Value {
    let mut models = Vec::new();
    let mut failed = Vec::new();
    for (rank, item) in items.iter().enumerate() {
        match item {
            AuditItem::Measured(e) => models.push(json!({
                "rank": rank + 1,
                "path": e.path.display().to_string(),
                "format": e.format,
                "architecture": e.architecture,
                "parameters": e.parameters,
                "sample_rate": e.sample_rate,
                "sample_rate_assumed": e.rate_assumed,
                "nmr_s_db": num(e.nmr_s_db),
                "esr_s_db": num(e.esr_s_db),
                "nmr_s_mean_db": num(e.nmr_s_mean_db),
                "esr_s_mean_db": num(e.esr_s_mean_db),
                "per_level": e.per_level.iter().map(|(l, esr, nmr)| json!({
                    "dbfs": l, "esr_s_db": num(*esr), "nmr_s_db": num(*nmr),
                })).collect::<Vec<_>>(),
                "audible_tones": e.audible_tones,
                "audible_from_midi": e.audible_from_midi,
                "worst_tone": {
                    "midi": e.worst.0, "dbfs": e.worst.1, "f0_hz": e.worst.2,
                    "nmr_s_db": num(e.worst.3),
                },
            })),
            AuditItem::Failed { path, reason } => failed.push(json!({
                "path": path.display().to_string(),
                "reason": reason,
            })),
        }
    }
    json!({
        "aggregation": "10 log10 of the mean of linear per-tone values (mean of per-tone dB under *_mean_db)",
        "audibility_line_db": AUDIBILITY_DB,
        "models": models,
        "failed": failed,
    })
}

pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The audit as CSV, one row per file (failed files with their reason and empty metrics).
pub fn audit_csv(items: &[AuditItem]) -> String {
    let mut out = String::from(
        "rank,path,architecture,parameters,sample_rate,nmr_s_db,esr_s_db,nmr_s_mean_db,esr_s_mean_db,\
         nmr_s_db_-36,nmr_s_db_-18,nmr_s_db_-6,audible_tones,audible_from_midi,worst_midi,worst_dbfs,worst_nmr_s_db,error\n",
    );
    for (rank, item) in items.iter().enumerate() {
        match item {
            AuditItem::Measured(e) => {
                let lv: Vec<String> = e.per_level.iter().map(|x| format!("{:.2}", x.2)).collect();
                // The error field (last) is empty for measured rows.
                out.push_str(&format!(
                    "{},{},{},{},{},{:.2},{:.2},{:.2},{:.2},{},{},{},{},{},{:.2},\n",
                    rank + 1,
                    csv_field(&e.path.display().to_string()),
                    e.architecture,
                    e.parameters,
                    e.sample_rate,
                    e.nmr_s_db,
                    e.esr_s_db,
                    e.nmr_s_mean_db,
                    e.esr_s_mean_db,
                    lv.join(","),
                    e.audible_tones,
                    e.audible_from_midi.map_or(String::new(), |m| m.to_string()),
                    e.worst.0,
                    e.worst.1,
                    e.worst.3,
                ));
            }
            AuditItem::Failed { path, reason } => out.push_str(&format!(
                ",{},,,,,,,,,,,,,,,,{}\n",
                csv_field(&path.display().to_string()),
                csv_field(reason)
            )),
        }
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An inline SVG of NMR-S against f0 (log axis) for the three levels, with the audibility line.
fn curves_svg(e: &AuditEntry) -> String {
    let (w, h) = (260.0, 90.0);
    let (fmin, fmax) = (25.0f64.ln(), 4500.0f64.ln());
    let (lo, hi) = (-80.0, 30.0);
    let x = |f: f64| (f.ln() - fmin) / (fmax - fmin) * w;
    let y = |v: f64| (1.0 - (v.clamp(lo, hi) - lo) / (hi - lo)) * h;
    let colours = ["#1f77b4", "#2ca02c", "#d62728"];
    let mut s = format!(
        "<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\"><line x1=\"0\" x2=\"{w}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"3,3\"/>",
        y(AUDIBILITY_DB),
        y(AUDIBILITY_DB)
    );
    for ((_, pts), c) in e.curves.iter().zip(colours) {
        let p: Vec<String> = pts
            .iter()
            .filter(|(_, v)| v.is_finite())
            .map(|&(f, v)| format!("{:.1},{:.1}", x(f), y(v)))
            .collect();
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"1.2\" points=\"{}\"/>",
            p.join(" ")
        ));
    }
    s.push_str("</svg>");
    s
}

/// A self-contained HTML page: the ranked table (click a header to sort) with each model's
/// NMR-S-vs-f0 curves (-36 / -18 / -6 dBFS in blue / green / red, the -10 dB line dashed),
/// and the files that could not be measured with their reasons.
pub fn audit_html(items: &[AuditItem]) -> String {
    let mut rows = String::new();
    let mut failed = String::new();
    for (rank, item) in items.iter().enumerate() {
        match item {
            AuditItem::Measured(e) => {
                let lv = |i: usize| e.per_level.get(i).map_or(f64::NAN, |x| x.2);
                let worst = format!(
                    "{} @ {} dBFS: {:.1} dB",
                    note_name(e.worst.0),
                    e.worst.1,
                    e.worst.3
                );
                rows.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                    rank + 1,
                    html_escape(&e.path.display().to_string()),
                    e.architecture,
                    e.parameters,
                    e.nmr_s_db,
                    e.esr_s_db,
                    lv(0),
                    lv(1),
                    lv(2),
                    e.audible_tones,
                    e.audible_from_midi.map_or("-".into(), note_name),
                    worst,
                    curves_svg(e),
                ));
            }
            AuditItem::Failed { path, reason } => failed.push_str(&format!(
                "<li><code>{}</code>: {}</li>\n",
                html_escape(&path.display().to_string()),
                html_escape(reason)
            )),
        }
    }
    let failed = if failed.is_empty() {
        String::new()
    } else {
        format!("<h2>Not measured</h2><ul>{failed}</ul>")
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>dealias audit</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 3px 8px; text-align: right; }}
td:nth-child(2) {{ text-align: left; }}
th {{ cursor: pointer; background: #f4f4f4; }}
</style></head><body>
<h1>Aliasing audit</h1>
<p>Sine-set aliasing (paper sec. 2.6): MIDI 21–108 at -36/-18/-6 dBFS, 10 log10 of the mean of
linear per-tone values, ranked by NMR-S (worst first). NMR-S above {aud} dB (dashed line) is
likely audible. Curves: NMR-S against f0 at -36 (blue), -18 (green), -6 dBFS (red).
Click a column header to sort.</p>
<table id="audit"><thead><tr><th>rank</th><th>model</th><th>arch.</th><th>params</th>
<th>NMR-S dB</th><th>ESR-S dB</th><th>NMR-S -36</th><th>NMR-S -18</th><th>NMR-S -6</th>
<th>audible tones</th><th>audible from</th><th>worst tone</th><th>NMR-S vs f0</th></tr></thead>
<tbody>
{rows}</tbody></table>
{failed}
<script>
document.querySelectorAll('#audit th').forEach((th, col) => th.addEventListener('click', () => {{
  const body = document.querySelector('#audit tbody');
  const rows = Array.from(body.rows);
  const asc = th.dataset.asc !== '1';
  th.dataset.asc = asc ? '1' : '0';
  const key = r => {{ const t = r.cells[col].textContent; const v = parseFloat(t); return isNaN(v) ? t : v; }};
  rows.sort((a, b) => {{ const x = key(a), y = key(b); return (x > y ? 1 : x < y ? -1 : 0) * (asc ? 1 : -1); }});
  rows.forEach(r => body.appendChild(r));
}}));
</script>
</body></html>
"#,
        aud = AUDIBILITY_DB,
    )
}
