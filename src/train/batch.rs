//! Batch fine-tuning of a model library: which models a run (or one shard of it) owns, where
//! each one's outputs go, whether an output is already complete, and the summary of the run.
//! The training itself is the single-model fine-tuning of [`super::finetune`]; this module
//! only plans and records, so that a scheduler (a Slurm job array, a Kubernetes Indexed Job)
//! can run the shards anywhere and rerun any of them.
//!
//! - Inputs: model files, folders (searched as [`crate::eval::audit::collect_model_files`]
//!   does) and manifests (text files, one path a line, relative to the manifest). Every input
//!   has a key, the path as written (on the command line, or in the manifest relative to its
//!   folder); the list is sorted by key, so that every process derives the same list.
//! - Sharding: the model at position `k` of the sorted list belongs to shard `k mod N`.
//! - Outputs: `DIR/NAME` where NAME is the input's file name, or `STEM-HASH.EXT` (HASH: 8 hex
//!   digits of the key's FNV-1a) for every input whose name another input shares; beside it
//!   the finetune command's report, HTML report and checkpoint.
//! - Summaries: each shard writes `DIR/summary.shard-I-of-N.json`; the merged
//!   `DIR/summary.json` and `summary.csv` list every model of the list, with the status its
//!   shard's part gives, or `pending` when that part does not exist yet.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// File extensions that make a file argument a manifest rather than a model.
pub const MANIFEST_EXTENSIONS: &[&str] = &["txt", "lst", "list"];

/// Largest manifest read (a million lines of paths is far beyond any library).
const MAX_MANIFEST_BYTES: u64 = 256 << 20;

/// Largest model file whose completeness is checked by reading it (the format readers' bound).
const MAX_MODEL_BYTES: u64 = 1 << 30;

/// One shard of a run: `index` in `0..count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole list as one shard.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// A shard, checked: `count >= 1` and `index < count`.
    pub fn new(index: usize, count: usize) -> Result<Self> {
        if count == 0 {
            return Err(Error::InvalidArgument(
                "the number of shards must be at least 1".into(),
            ));
        }
        if index >= count {
            return Err(Error::InvalidArgument(format!(
                "shard index {index} is out of range: shards are numbered from 0 to {} of {count}",
                count - 1
            )));
        }
        Ok(Shard { index, count })
    }

    /// Whether the model at position `k` of the sorted list belongs to this shard.
    pub fn owns(&self, k: usize) -> bool {
        k % self.count == self.index
    }

    /// The shard a scheduler's environment names (`var` looks a variable up), or `None` when
    /// none is set:
    /// - Slurm job arrays: `SLURM_ARRAY_TASK_ID` (made 0-based with `SLURM_ARRAY_TASK_MIN`
    ///   and `SLURM_ARRAY_TASK_STEP` when set) of `SLURM_ARRAY_TASK_COUNT`;
    /// - Kubernetes Indexed Jobs: `JOB_COMPLETION_INDEX` (0-based) of `shards`, else of
    ///   `DEALIAS_SHARDS` (Kubernetes does not tell a pod the Job's completion count).
    pub fn from_env(
        var: &dyn Fn(&str) -> Option<String>,
        shards: Option<usize>,
    ) -> Result<Option<Self>> {
        let number = |name: &str| -> Result<Option<usize>> {
            match var(name) {
                None => Ok(None),
                Some(v) if v.trim().is_empty() => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    Error::InvalidArgument(format!("{name}={v:?} is not a whole number"))
                }),
            }
        };
        if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
            let count = number("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
                Error::InvalidArgument(
                    "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; give --shard I/N".into(),
                )
            })?;
            let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
            if id < min || (id - min) % step != 0 {
                return Err(Error::InvalidArgument(format!(
                    "SLURM_ARRAY_TASK_ID {id} is not in the array {min}, {}, ... (from SLURM_ARRAY_TASK_MIN/STEP)",
                    min + step
                )));
            }
            if let Some(s) = shards {
                if s != count {
                    return Err(Error::InvalidArgument(format!(
                        "--shards {s} contradicts SLURM_ARRAY_TASK_COUNT={count}"
                    )));
                }
            }
            return Shard::new((id - min) / step, count).map(Some);
        }
        if let Some(index) = number("JOB_COMPLETION_INDEX")? {
            let count = match shards {
                Some(s) => s,
                None => number("DEALIAS_SHARDS")?.ok_or_else(|| {
                    Error::InvalidArgument(
                        "JOB_COMPLETION_INDEX is set but the number of shards is not: give \
                         --shards N or set DEALIAS_SHARDS (the Job's completions)"
                            .into(),
                    )
                })?,
            };
            return Shard::new(index, count).map(Some);
        }
        Ok(None)
    }

    /// The file name of this shard's summary part.
    pub fn part_name(&self) -> String {
        format!("summary.shard-{}-of-{}.json", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = Error;

    /// `I/N`, 0-based: `0/4` .. `3/4`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::InvalidArgument(format!(
                "{s:?}: give the shard as I/N, a 0-based index I below the number of shards N (e.g. 0/4)"
            ))
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let i = i.trim().parse().map_err(|_| bad())?;
        let n = n.trim().parse().map_err(|_| bad())?;
        Shard::new(i, n)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// One model of a batch, with the paths of its outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchItem {
    /// The path as written (command line or manifest); sorts the list and names collisions.
    pub key: String,
    /// The path to read.
    pub input: PathBuf,
    /// Position in the sorted list (its shard is `position mod N`).
    pub position: usize,
    /// Why the input cannot be used (it does not exist, a folder cannot be listed).
    pub problem: Option<String>,
    /// The output model, `DIR/NAME`; the report, HTML report and checkpoint are beside it.
    pub output: PathBuf,
}

impl BatchItem {
    /// The output's file name (what the summary records: the folder is shared and may be
    /// mounted elsewhere on another machine).
    pub fn output_name(&self) -> String {
        self.output
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }
}

/// The models of a batch over `inputs`, sorted, with their outputs under `dir`.
#[derive(Clone, Debug)]
pub struct BatchPlan {
    pub items: Vec<BatchItem>,
    /// Model files found inside `dir` while searching folders, left out (they are this or an
    /// earlier batch's outputs).
    pub excluded: usize,
}

/// Whether `path` names a manifest (by its extension, see [`MANIFEST_EXTENSIONS`]).
pub fn is_manifest(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        MANIFEST_EXTENSIONS
            .iter()
            .any(|m| e.eq_ignore_ascii_case(m))
    })
}

/// The paths of a manifest's text: one a line, blank lines and lines starting with `#`
/// skipped, surrounding white space trimmed.
pub fn manifest_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// `p` without `.` components (a leading `./` included) and trailing separators, so that
/// `./a.json` and `a.json` are one key.
fn normal_key(p: &Path) -> String {
    let parts: PathBuf = p
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    parts.to_string_lossy().into_owned()
}

/// Plans a batch: reads manifests, searches folders, sorts and names the outputs under `dir`.
/// Fails only for a manifest that cannot be read; a model path that cannot be used becomes an
/// item with its [`BatchItem::problem`] (its shard reports it as failed).
pub fn plan(inputs: &[PathBuf], dir: &Path) -> Result<BatchPlan> {
    // (key, path, problem)
    let mut found: Vec<(String, PathBuf, Option<String>)> = Vec::new();
    let out_dir = dir.canonicalize().ok();
    let mut excluded = 0;
    let add = |key_base: &Path, path: &Path, found: &mut Vec<_>, excluded: &mut usize| {
        let is_dir = std::fs::metadata(path).is_ok_and(|m| m.is_dir());
        // The key keeps the written form: key_base, then the part found below `path`.
        let key_of = |f: &Path| {
            let rel = f.strip_prefix(path).unwrap_or(Path::new(""));
            normal_key(&if rel.as_os_str().is_empty() {
                key_base.to_path_buf()
            } else {
                key_base.join(rel)
            })
        };
        let (files, failed) =
            crate::eval::audit::collect_model_files(std::slice::from_ref(&path.to_path_buf()));
        for f in files {
            if is_dir {
                let inside_out = out_dir.as_ref().is_some_and(|o| {
                    f.parent()
                        .and_then(|p| p.canonicalize().ok())
                        .is_some_and(|p| p.starts_with(o))
                });
                if inside_out {
                    *excluded += 1;
                    continue;
                }
            }
            found.push((key_of(&f), f, None));
        }
        for item in failed {
            let reason = match &item {
                crate::eval::audit::AuditItem::Failed { reason, .. } => reason.clone(),
                crate::eval::audit::AuditItem::Measured(_) => unreachable!("only failures"),
            };
            let p = item.path().to_path_buf();
            found.push((key_of(&p), p, Some(reason)));
        }
    };
    for arg in inputs {
        if is_manifest(arg) && std::fs::metadata(arg).is_ok_and(|m| m.is_file()) {
            let bytes = crate::io::read_regular_file(arg, MAX_MANIFEST_BYTES, "manifest")?;
            let text = String::from_utf8(bytes).map_err(|_| Error::File {
                path: arg.clone(),
                message: "the manifest is not UTF-8 text".into(),
            })?;
            let base = arg.parent().unwrap_or(Path::new(""));
            for line in manifest_lines(&text) {
                let written = Path::new(line);
                add(written, &base.join(written), &mut found, &mut excluded);
            }
        } else if is_manifest(arg) && !arg.exists() {
            return Err(Error::File {
                path: arg.clone(),
                message: "the manifest does not exist".into(),
            });
        } else {
            add(arg, arg, &mut found, &mut excluded);
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found.dedup_by(|a, b| a.0 == b.0);
    let names = output_names(&found.iter().map(|f| f.0.as_str()).collect::<Vec<_>>())?;
    let items = found
        .into_iter()
        .zip(names)
        .enumerate()
        .map(|(position, ((key, input, problem), name))| BatchItem {
            key,
            input,
            position,
            problem,
            output: dir.join(name),
        })
        .collect();
    Ok(BatchPlan { items, excluded })
}

/// 8 hex digits of the FNV-1a checksum of `key`: short, and the same on every machine.
pub fn key_hash(key: &str) -> String {
    let sum = crate::io::checksum(key.as_bytes());
    sum.rsplit(':').next().unwrap_or(&sum)[..8].to_string()
}

/// The output file name of each key: its file name, or `STEM-HASH.EXT` when another key has
/// the same file name (compared without case, for case-insensitive file systems).
pub fn output_names(keys: &[&str]) -> Result<Vec<String>> {
    let name_of = |k: &str| {
        Path::new(k)
            .file_name()
            .map_or_else(|| "model".to_string(), |n| n.to_string_lossy().into_owned())
    };
    let mut count: HashMap<String, usize> = HashMap::new();
    for k in keys {
        *count.entry(name_of(k).to_lowercase()).or_default() += 1;
    }
    let names: Vec<String> = keys
        .iter()
        .map(|k| {
            let name = name_of(k);
            if count[&name.to_lowercase()] == 1 {
                return name;
            }
            let p = Path::new(&name);
            let stem = p
                .file_stem()
                .map_or(name.clone(), |s| s.to_string_lossy().into_owned());
            let ext = p
                .extension()
                .map(|e| format!(".{}", e.to_string_lossy()))
                .unwrap_or_default();
            format!("{stem}-{}{ext}", key_hash(k))
        })
        .collect();
    // A disambiguated name could, in principle, be another input's plain name.
    let mut seen: HashMap<String, &str> = HashMap::new();
    for (n, k) in names.iter().zip(keys) {
        if let Some(other) = seen.insert(n.to_lowercase(), k) {
            return Err(Error::InvalidArgument(format!(
                "{other} and {k} would both be written as {n}; rename one of them"
            )));
        }
    }
    Ok(names)
}

/// `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The report beside an output model (what `finetune` writes, before the model).
pub fn report_path(output: &Path) -> PathBuf {
    with_suffix(output, ".report.json")
}

/// The HTML report beside an output model.
pub fn html_path(output: &Path) -> PathBuf {
    with_suffix(output, ".report.html")
}

/// The checkpoint beside an output model.
pub fn checkpoint_path(output: &Path) -> PathBuf {
    with_suffix(output, ".checkpoint.json")
}

/// The before/after numbers of a fine-tuned model (dB).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// NMR-S of the teacher and of the student.
    pub nmr_s_before_db: Option<f64>,
    pub nmr_s_after_db: Option<f64>,
    /// ESR-T: the student against the teacher.
    pub esr_t_db: Option<f64>,
}

impl Scores {
    /// The numbers of a `finetune` report.
    pub fn from_report(report: &Value) -> Self {
        let f = |p: &str| report.pointer(p).and_then(Value::as_f64);
        Scores {
            nmr_s_before_db: f("/teacher/nmr_s_db"),
            nmr_s_after_db: f("/student/nmr_s_db"),
            esr_t_db: f("/esr_t_db"),
        }
    }
}

/// A finished fine-tuning found at an output.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    /// The report's numbers.
    pub scores: Scores,
    /// The settings the run was made with, as its report records them (`None`: a report of
    /// an earlier version, which did not record them).
    pub settings: Option<String>,
}

/// Whether `output` holds a finished fine-tuning: its report says the run was complete and
/// records the model's checksum, and the model's bytes have that checksum (the report is
/// written before the model, so a report with an older or missing model does not count).
/// Returns the report's numbers and settings when it does; `None` for a missing, partial
/// (interrupted) or mismatched output. The caller should hold the output's lock.
pub fn completed(output: &Path) -> Option<Finished> {
    let report =
        crate::io::read_regular_file(&report_path(output), MAX_MODEL_BYTES, "report").ok()?;
    let report: Value = serde_json::from_slice(&report).ok()?;
    if report.get("complete") != Some(&Value::Bool(true)) {
        return None;
    }
    let want = report.pointer("/model/checksum")?.as_str()?;
    let model = crate::io::read_regular_file(output, MAX_MODEL_BYTES, "model").ok()?;
    (crate::io::checksum(&model) == want).then(|| Finished {
        scores: Scores::from_report(&report),
        settings: report
            .get("settings")
            .and_then(Value::as_str)
            .map(String::from),
    })
}

/// What became of a model in a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine-tuned by this run.
    Done,
    /// Not fine-tuned by this run because a complete output was already there.
    Skipped,
    /// Could not be fine-tuned (the reason says why).
    Failed,
    /// Not finished: its shard has not run yet, or was interrupted (it resumes on the next run).
    Pending,
}

impl Status {
    pub fn name(&self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
            Status::Pending => "pending",
        }
    }
}

/// One line of a summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// The input's key (its path as written).
    pub model: String,
    /// The path that was read.
    pub input: String,
    /// The output's file name in DIR.
    pub output: String,
    pub shard: usize,
    pub status: Status,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(flatten)]
    pub scores: Scores,
}

impl SummaryRow {
    /// A row for `item` of a run of `shards` shards.
    pub fn new(item: &BatchItem, shards: usize, status: Status, reason: Option<String>) -> Self {
        SummaryRow {
            model: item.key.clone(),
            input: item.input.to_string_lossy().into_owned(),
            output: item.output_name(),
            shard: item.position % shards,
            status,
            reason,
            scores: Scores::default(),
        }
    }
}

/// Tag of a summary file (its `format` field).
const SUMMARY_FORMAT: &str = "dealias batch summary";

/// A summary (a shard's part, or the merged one) as JSON: the rows and the count per status.
pub fn summary_json(rows: &[SummaryRow], shard: Option<Shard>) -> Value {
    let count = |s: Status| rows.iter().filter(|r| r.status == s).count();
    serde_json::json!({
        "format": SUMMARY_FORMAT,
        "shard": shard.map(|s| s.to_string()),
        "counts": {
            "done": count(Status::Done),
            "skipped": count(Status::Skipped),
            "failed": count(Status::Failed),
            "pending": count(Status::Pending),
        },
        "models": rows,
    })
}

/// The rows of a summary file written by [`summary_json`].
pub fn read_summary(path: &Path) -> Result<Vec<SummaryRow>> {
    let bytes = crate::io::read_regular_file(path, MAX_MANIFEST_BYTES, "summary")?;
    let bad = |m: String| Error::File {
        path: path.to_path_buf(),
        message: m,
    };
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if v.get("format").and_then(Value::as_str) != Some(SUMMARY_FORMAT) {
        return Err(bad("not a dealias batch summary".into()));
    }
    serde_json::from_value(v["models"].clone()).map_err(|e| bad(e.to_string()))
}

/// The merged summary of a run of `shards` shards over `items`: each model's row from its
/// shard's part in `dir`, or `pending` when the part is missing, unreadable or lacks it.
pub fn merge(items: &[BatchItem], shards: usize, dir: &Path) -> Vec<SummaryRow> {
    let parts: Vec<Option<Vec<SummaryRow>>> = (0..shards)
        .map(|i| {
            read_summary(
                &dir.join(
                    Shard {
                        index: i,
                        count: shards,
                    }
                    .part_name(),
                ),
            )
            .ok()
        })
        .collect();
    items
        .iter()
        .map(|item| {
            let shard = item.position % shards;
            parts[shard]
                .as_ref()
                .and_then(|rows| {
                    rows.iter()
                        .find(|r| r.model == item.key && r.output == item.output_name())
                })
                .cloned()
                .unwrap_or_else(|| {
                    SummaryRow::new(
                        item,
                        shards,
                        Status::Pending,
                        Some(format!(
                            "shard {shard}/{shards} has not written its summary yet"
                        )),
                    )
                })
        })
        .collect()
}

/// A summary as CSV, one row per model.
pub fn summary_csv(rows: &[SummaryRow]) -> String {
    let num = |v: Option<f64>| {
        v.filter(|x| x.is_finite())
            .map_or(String::new(), |x| format!("{x:.2}"))
    };
    let mut out = String::from(
        "model,input,output,shard,status,reason,nmr_s_before_db,nmr_s_after_db,esr_t_db\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{}\n",
            crate::eval::audit::csv_field(&r.model),
            crate::eval::audit::csv_field(&r.input),
            crate::eval::audit::csv_field(&r.output),
            r.shard,
            r.status.name(),
            crate::eval::audit::csv_field(r.reason.as_deref().unwrap_or("")),
            num(r.scores.nmr_s_before_db),
            num(r.scores.nmr_s_after_db),
            num(r.scores.esr_t_db),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn shards_parse_and_validate() {
        assert_eq!(
            "2/4".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 4 }
        );
        for bad in ["4/4", "1/0", "x/2", "3", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let s = Shard::new(1, 3).unwrap();
        assert_eq!(
            (0..7).filter(|&k| s.owns(k)).collect::<Vec<_>>(),
            vec![1, 4]
        );
    }

    #[test]
    fn shard_from_the_schedulers_environment() {
        assert_eq!(Shard::from_env(&env(&[]), None).unwrap(), None);
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "3"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ]);
        assert_eq!(
            Shard::from_env(&slurm, None).unwrap(),
            Some(Shard { index: 3, count: 4 })
        );
        // --array=1-4 is numbered from 1; --array=0-6:2 in steps of 2.
        let from1 = env(&[
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
        ]);
        assert_eq!(
            Shard::from_env(&from1, None).unwrap(),
            Some(Shard { index: 3, count: 4 })
        );
        let stepped = env(&[
            ("SLURM_ARRAY_TASK_ID", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ]);
        assert_eq!(
            Shard::from_env(&stepped, None).unwrap(),
            Some(Shard { index: 2, count: 4 })
        );
        assert!(Shard::from_env(&env(&[("SLURM_ARRAY_TASK_ID", "1")]), None).is_err());
        assert!(Shard::from_env(&slurm, Some(5)).is_err());
        let k8s = env(&[("JOB_COMPLETION_INDEX", "2")]);
        assert!(Shard::from_env(&k8s, None).is_err());
        assert_eq!(
            Shard::from_env(&k8s, Some(3)).unwrap(),
            Some(Shard { index: 2, count: 3 })
        );
        let k8s_env = env(&[("JOB_COMPLETION_INDEX", "2"), ("DEALIAS_SHARDS", "3")]);
        assert_eq!(
            Shard::from_env(&k8s_env, None).unwrap(),
            Some(Shard { index: 2, count: 3 })
        );
        assert!(Shard::from_env(&k8s, Some(2)).is_err(), "index 2 of 2");
        assert!(Shard::from_env(&env(&[("JOB_COMPLETION_INDEX", "a")]), Some(2)).is_err());
    }

    #[test]
    fn names_are_the_file_names_unless_shared() {
        let names = output_names(&["a/amp.nam", "b/amp.nam", "c/pedal.json", "d/AMP.nam"]).unwrap();
        assert_eq!(names[2], "pedal.json");
        for n in [&names[0], &names[1], &names[3]] {
            assert!(n.starts_with("amp-") || n.starts_with("AMP-"), "{n}");
            assert!(
                n.ends_with(".nam") && n.len() == "amp-12345678.nam".len(),
                "{n}"
            );
        }
        assert_ne!(names[0], names[1]);
        // Stable: the same keys give the same names.
        assert_eq!(
            names,
            output_names(&["a/amp.nam", "b/amp.nam", "c/pedal.json", "d/AMP.nam"]).unwrap()
        );
        assert_eq!(
            normal_key(Path::new("./x/./y.json")),
            normal_key(Path::new("x/y.json"))
        );
    }

    #[test]
    fn manifests_skip_comments_and_blank_lines() {
        let t = "# models\n\n  a.json  \nsub/b.nam\n# c.nam\n";
        assert_eq!(manifest_lines(t), vec!["a.json", "sub/b.nam"]);
        assert!(is_manifest(Path::new("m.txt")) && is_manifest(Path::new("M.LST")));
        assert!(!is_manifest(Path::new("m.json")));
    }

    #[test]
    fn plan_sorts_resolves_relative_to_the_manifest_and_keeps_problems() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib");
        std::fs::create_dir_all(lib.join("x")).unwrap();
        std::fs::create_dir_all(lib.join("y")).unwrap();
        std::fs::write(lib.join("x/m.json"), "{}").unwrap();
        std::fs::write(lib.join("y/m.json"), "{}").unwrap();
        std::fs::write(lib.join("z.nam"), "{}").unwrap();
        let manifest = lib.join("models.txt");
        std::fs::write(
            &manifest,
            "z.nam\n# comment\ny\nx/m.json\nmissing.nam\n./z.nam\n",
        )
        .unwrap();
        let out = dir.path().join("out");
        let p = plan(&[manifest], &out).unwrap();
        let keys: Vec<&str> = p.items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, vec!["missing.nam", "x/m.json", "y/m.json", "z.nam"]);
        assert!(p.items[0].problem.is_some());
        assert_eq!(p.items[1].input, lib.join("x/m.json"));
        assert_eq!(p.items[3].output, out.join("z.nam"));
        assert_ne!(p.items[1].output, p.items[2].output);
        assert_eq!(
            p.items.iter().map(|i| i.position).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
    }

    #[test]
    fn merge_fills_missing_parts_with_pending() {
        let dir = tempfile::tempdir().unwrap();
        let items: Vec<BatchItem> = (0..3)
            .map(|k| BatchItem {
                key: format!("m{k}.json"),
                input: PathBuf::from(format!("m{k}.json")),
                position: k,
                problem: None,
                output: dir.path().join(format!("m{k}.json")),
            })
            .collect();
        let s1 = Shard::new(1, 2).unwrap();
        let row = SummaryRow {
            scores: Scores {
                nmr_s_before_db: Some(-3.0),
                nmr_s_after_db: Some(-20.0),
                esr_t_db: Some(-30.0),
            },
            ..SummaryRow::new(&items[1], 2, Status::Done, None)
        };
        let json = summary_json(std::slice::from_ref(&row), Some(s1));
        crate::io::write_atomic(
            &dir.path().join(s1.part_name()),
            json.to_string().as_bytes(),
        )
        .unwrap();
        let merged = merge(&items, 2, dir.path());
        assert_eq!(merged[1], row);
        assert_eq!(merged[0].status, Status::Pending);
        assert_eq!(merged[2].status, Status::Pending);
        let csv = summary_csv(&merged);
        assert_eq!(csv.lines().count(), 4);
        assert!(
            csv.lines()
                .nth(2)
                .unwrap()
                .ends_with(",1,done,,-3.00,-20.00,-30.00"),
            "{csv}"
        );
    }
}
