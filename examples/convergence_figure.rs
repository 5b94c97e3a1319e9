//! Draws fine-tuning convergence curves (validation NMR-S and ESR-T against training minutes)
//! from the `.report.json` files that `dealias finetune` writes.
//!
//! `cargo run --release --example convergence_figure -- OUT_STEM "TITLE" LABEL=REPORT.json...`
//! (optionally `--targets NMR_DB,ESR_DB` first for dashed target lines); writes OUT_STEM.svg
//! and OUT_STEM.png. `tools/convergence.sh` runs the fine-tuning and then this.

use dealias::eval::plots::{save_training_curves, TrainingCurve};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut targets = None;
    if args.first().map(String::as_str) == Some("--targets") && args.len() > 1 {
        let t: Vec<f64> = args[1]
            .split(',')
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        if let [nmr, esr] = t[..] {
            targets = Some((nmr, esr));
        }
        args.drain(..2);
    }
    let [stem, title, runs @ ..] = &args[..] else {
        return Err(
            "usage: convergence_figure [--targets NMR,ESR] OUT_STEM TITLE LABEL=REPORT.json..."
                .into(),
        );
    };
    let mut curves = Vec::new();
    for run in runs {
        let (label, path) = run.split_once('=').ok_or("a run is LABEL=REPORT.json")?;
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
        curves.push(TrainingCurve::from_report(label, &report));
    }
    let files = save_training_curves(stem.as_ref(), &curves, targets, title)?;
    println!("wrote {} and {}", files[0].display(), files[1].display());
    Ok(())
}
