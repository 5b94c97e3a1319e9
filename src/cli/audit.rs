//! `dealias audit PATH...`: rank every model of a library by its sine-set aliasing.

use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::eval::audit::{audit, audit_csv, audit_html, audit_json, note_name, AuditItem};

/// Arguments of `dealias audit`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model files and folders (searched recursively for .nam and .json files).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Folder for audit.csv, audit.json and audit.html (a sortable table with each model's
    /// NMR-S-vs-f0 curves). Each model's result is kept in DIR/measured/ as soon as it is
    /// measured, so an interrupted audit rerun with the same folder measures only the rest.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Sample rate for model files that state none (default: their format's standard rate).
    #[arg(long, value_name = "HZ")]
    pub rate: Option<f64>,
}

/// Runs `dealias audit`; fails (after writing everything) when some file could not be
/// measured, so that a script notices.
pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(r) = args.rate {
        if !(r.is_finite() && (8000.0..=384_000.0).contains(&r)) {
            anyhow::bail!("--rate {r}: give a sample rate between 8000 and 384000 Hz");
        }
    }
    let pb = ProgressBar::new(0);
    pb.set_style(
        ProgressStyle::with_template("audit [{bar:40}] {pos}/{len} models, {elapsed} (eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let cache = args.out.as_ref().map(|d| d.join("measured"));
    let items = audit(&args.paths, args.rate, cache.as_deref(), &|done, total| {
        pb.set_length(total as u64);
        pb.set_position(done as u64);
    })?;
    pb.finish_and_clear();
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        crate::io::write_atomic(&dir.join("audit.csv"), audit_csv(&items).as_bytes())?;
        crate::io::write_atomic(
            &dir.join("audit.json"),
            serde_json::to_string_pretty(&audit_json(&items))?.as_bytes(),
        )?;
        crate::io::write_atomic(&dir.join("audit.html"), audit_html(&items).as_bytes())?;
    }
    let failed = items
        .iter()
        .filter(|i| matches!(i, AuditItem::Failed { .. }))
        .count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&audit_json(&items))?);
    } else {
        println!(
            "{:>4}  {:>7} {:>7}  {:>7} {:>7} {:>7}  {:>8}  {:<22} model",
            "rank", "NMR-S", "ESR-S", "-36", "-18", "-6", "audible", "worst tone"
        );
        for (rank, item) in items.iter().enumerate() {
            match item {
                AuditItem::Measured(e) => {
                    let lv = |i: usize| e.per_level.get(i).map_or(f64::NAN, |x| x.2);
                    let from = e
                        .audible_from_midi
                        .map_or(String::new(), |m| format!(" from {}", note_name(m)));
                    println!(
                        "{:>4}  {:>7.1} {:>7.1}  {:>7.1} {:>7.1} {:>7.1}  {:>8}  {:<22} {}",
                        rank + 1,
                        e.nmr_s_db,
                        e.esr_s_db,
                        lv(0),
                        lv(1),
                        lv(2),
                        format!("{}{from}", e.audible_tones),
                        format!(
                            "{} {} dBFS {:.1} dB",
                            note_name(e.worst.0),
                            e.worst.1,
                            e.worst.3
                        ),
                        e.path.display()
                    );
                }
                AuditItem::Failed { path, reason } => {
                    println!("   -  not measured: {}: {reason}", path.display())
                }
            }
        }
        println!(
            "NMR-S/ESR-S in dB (10 log10 of the mean of linear values; -36/-18/-6: NMR-S per \
             input level in dBFS); audible: tones with NMR-S above -10 dB"
        );
        if let Some(dir) = &args.out {
            println!(
                "wrote audit.csv, audit.json and audit.html to {}",
                dir.display()
            );
        }
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} files could not be measured (listed above)",
            items.len()
        );
    }
    Ok(())
}
