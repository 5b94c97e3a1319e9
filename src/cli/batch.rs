//! `dealias batch MANIFEST|PATH... --out DIR`: fine-tunes every model of a library (or of one
//! shard of it) with the same settings, one model at a time through `finetune`'s own run
//! ([`super::finetune::finetune_one`]); the planning, sharding and summaries are the library's
//! [`crate::train::batch`].
//!
//! Each model is locked while it is worked on, so two processes given the same shard share
//! the work: a model another process holds is left for the end, then waited for (and found
//! done, or resumed if that process died).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{bail, Context};

use super::finetune::{finetune_one, Checked, Interrupt, RunFiles, TrainArgs};
use super::notice;
use crate::train::batch::{self, BatchItem, Shard, Status, SummaryRow};

/// How often a held model or summary is tried again.
const POLL: Duration = Duration::from_millis(500);

/// Arguments of `dealias batch`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model files, folders (searched recursively for .nam and .json files) and manifests
    /// (.txt, .lst or .list: one model file or folder a line, relative to the manifest's
    /// folder; blank lines and lines starting with # are skipped).
    #[arg(required = true, value_name = "MANIFEST|PATH")]
    pub inputs: Vec<PathBuf>,
    /// Folder of the outputs (created if missing): per model NAME, its report
    /// (NAME.report.json, NAME.report.html) and checkpoint, and the summaries summary.json,
    /// summary.csv and summary.shard-I-of-N.json.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Run shard I of N only (0-based, 0/N .. N-1/N): the models at positions k of the
    /// sorted list with k mod N = I. Default: the shard of a Slurm array task
    /// (SLURM_ARRAY_TASK_ID of SLURM_ARRAY_TASK_COUNT) or of a Kubernetes Indexed Job
    /// (JOB_COMPLETION_INDEX of --shards or DEALIAS_SHARDS), else every model.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// The number of shards for JOB_COMPLETION_INDEX (a Kubernetes Indexed Job's completions).
    #[arg(long, value_name = "N", conflicts_with = "shard")]
    pub shards: Option<usize>,
    #[command(flatten)]
    pub train: TrainArgs,
}

/// Runs `dealias batch`. Exit status: 0 when every model of the shard is done (now or
/// before); 1 when some failed (listed on stderr and in the summary); 130 / 143 when
/// interrupted by SIGINT / SIGTERM (the interrupted model resumes on the next run).
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let checked = args.train.check()?;
    let shard = match args.shard {
        Some(s) => s,
        None => match Shard::from_env(&|k| std::env::var(k).ok(), args.shards)? {
            Some(s) => s,
            None if args.shards.is_some() => bail!(
                "--shards N is the number of shards of JOB_COMPLETION_INDEX, which is not set; \
                 give --shard I/N"
            ),
            None => Shard::ALL,
        },
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let plan = batch::plan(&args.inputs, &args.out)?;
    if plan.items.is_empty() {
        bail!("no model files (.nam, .json) were found in the given paths");
    }
    if plan.excluded > 0 {
        notice(&format!(
            "{} model file(s) inside {} were left out (outputs of a batch)",
            plan.excluded,
            args.out.display()
        ));
    }
    let mine: Vec<&BatchItem> = plan
        .items
        .iter()
        .filter(|i| shard.owns(i.position))
        .collect();
    notice(&format!(
        "shard {shard}: {} of {} models, into {}",
        mine.len(),
        plan.items.len(),
        args.out.display()
    ));
    let interrupt = Interrupt::install()?;
    let job = Job {
        train: &args.train,
        checked: &checked,
        interrupt: &interrupt,
        shards: shard.count,
        total: mine.len(),
    };
    // First the models no other process holds, then the others, waiting for each.
    let mut rows: Vec<Option<SummaryRow>> = vec![None; mine.len()];
    let mut deferred = Vec::new();
    for (j, item) in mine.iter().enumerate() {
        if interrupt.stopped() {
            break;
        }
        match job.model(j, item, false) {
            Some(r) => rows[j] = Some(r),
            None => deferred.push(j),
        }
    }
    for j in deferred {
        if interrupt.stopped() {
            break;
        }
        rows[j] = job.model(j, mine[j], true);
    }
    let rows: Vec<SummaryRow> = rows
        .into_iter()
        .zip(&mine)
        .map(|(r, item)| {
            r.unwrap_or_else(|| {
                SummaryRow::new(
                    item,
                    shard.count,
                    Status::Pending,
                    Some(format!("not started: {}", interrupt.name())),
                )
            })
        })
        .collect();
    write_summaries(&args.out, shard, &rows, &plan.items)?;

    let count = |s: Status| rows.iter().filter(|r| r.status == s).count();
    let failed = count(Status::Failed);
    println!(
        "shard {shard}: {} done, {} skipped (already done), {failed} failed, {} pending; summary in {}",
        count(Status::Done),
        count(Status::Skipped),
        count(Status::Pending),
        args.out.join("summary.json").display()
    );
    for r in rows.iter().filter(|r| r.status == Status::Failed) {
        eprintln!(
            "failed: {}: {}",
            r.model,
            r.reason.as_deref().unwrap_or("unknown")
        );
    }
    if interrupt.signal() != 0 {
        return Ok(interrupt.exit_code());
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What every model of the run shares.
struct Job<'a> {
    train: &'a TrainArgs,
    checked: &'a Checked,
    interrupt: &'a Interrupt,
    shards: usize,
    total: usize,
}

impl Job<'_> {
    /// Fine-tunes `item` (the `j`-th of the shard) unless its complete output is there, and
    /// returns its summary row; `None` when another process holds it and `wait` is false,
    /// or when the run was stopped while waiting.
    fn model(&self, j: usize, item: &BatchItem, wait: bool) -> Option<SummaryRow> {
        let row =
            |status, reason: Option<String>| SummaryRow::new(item, self.shards, status, reason);
        let tag = format!("[{}/{}] {}", j + 1, self.total, item.key);
        let failed = |e: &dyn std::fmt::Display| {
            eprintln!("{tag}: error: {e}");
            Some(row(Status::Failed, Some(e.to_string())))
        };
        if let Some(p) = &item.problem {
            return failed(p);
        }
        let files = RunFiles::new(&item.input, &item.output, None);
        let outputs = files.outputs();
        let claimed = if wait {
            outputs.claim_waiting(POLL, &self.interrupt.stop)
        } else {
            outputs.try_claim()
        };
        let _locks = match claimed {
            Ok(Some(l)) => l,
            Ok(None) => {
                if !wait {
                    eprintln!(
                        "{tag}: another process is working on it; coming back to it at the end"
                    );
                }
                return None;
            }
            Err(e) => return failed(&e),
        };
        if let Some(done) = batch::completed(&item.output) {
            let settings = self.train.settings();
            if done.settings.as_ref().is_some_and(|s| *s != settings) {
                // Neither skipped as if it answered this run nor overwritten.
                return failed(&format!(
                    "{} was fine-tuned with other settings (its report records {}; this run: \
                     {settings}); remove it and its report to redo it, or give another --out",
                    item.output.display(),
                    done.settings.unwrap_or_default()
                ));
            }
            eprintln!("{tag}: already done ({})", item.output.display());
            let why = match done.settings {
                Some(_) => "already done with these settings",
                None => "already done (its report does not record the settings)",
            };
            return Some(SummaryRow {
                scores: done.scores,
                ..row(Status::Skipped, Some(why.into()))
            });
        }
        // A checkpoint beside the output is this model's interrupted run.
        let resume = files.checkpoint.exists();
        eprintln!(
            "{tag}: fine-tuning {} -> {}{}",
            item.input.display(),
            item.output.display(),
            if resume { " (resuming)" } else { "" }
        );
        match finetune_one(self.train, self.checked, &files, resume, self.interrupt) {
            Ok(end) if end.interrupted => Some(row(
                Status::Pending,
                Some(format!(
                    "{}; the next run resumes it from its checkpoint",
                    self.interrupt.name()
                )),
            )),
            Ok(end) => Some(SummaryRow {
                scores: end.scores.unwrap_or_default(),
                ..row(Status::Done, None)
            }),
            Err(e) => failed(&format!("{e:#}")),
        }
    }
}

/// Writes this shard's summary part, then the merged summary of every part there is. Both
/// under one lock: whoever merges last has seen every part written before it.
fn write_summaries(
    dir: &Path,
    shard: Shard,
    rows: &[SummaryRow],
    items: &[BatchItem],
) -> anyhow::Result<()> {
    let part = dir.join(shard.part_name());
    let json = dir.join("summary.json");
    let csv = dir.join("summary.csv");
    let never = AtomicBool::new(false);
    let _locks = crate::io::Outputs::new()
        .output(&part, "the shard's summary")
        .output(&json, "the summary")
        .output(&csv, "the CSV summary")
        .claim_waiting(POLL, &never)?;
    let text = |v: serde_json::Value| serde_json::to_string_pretty(&v).map(String::into_bytes);
    crate::io::write_atomic(&part, &text(batch::summary_json(rows, Some(shard)))?)?;
    let merged = batch::merge(items, shard.count, dir);
    crate::io::write_atomic(&json, &text(batch::summary_json(&merged, None))?)?;
    crate::io::write_atomic(&csv, batch::summary_csv(&merged).as_bytes())?;
    Ok(())
}
