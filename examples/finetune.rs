//! Fine-tuning from Rust: anti-alias a model file and save the student in the same format.
//!
//! `cargo run --release --example finetune -- MODEL OUT [STEPS]`

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use dealias::train::finetune::{FinetuneConfig, Finetuner, Preset};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(output)) = (args.next(), args.next()) else {
        return Err("usage: finetune MODEL OUT [STEPS]".into());
    };
    let steps: u64 = args.next().map_or(Ok(3000), |s| s.parse())?;

    let model = dealias::load_model(&PathBuf::from(input))?;
    // The command line's default settings, with a step budget instead of its 15 minutes.
    let config = FinetuneConfig {
        max_steps: Some(steps),
        max_duration: None,
        ..FinetuneConfig::preset(Preset::Fast, &model.network)
    };
    // The rate comes from the file (or its format's plugins' rate when it states none).
    let mut tuner = Finetuner::for_file(&model, config)?;
    let out = tuner.run(&AtomicBool::new(false), &mut |_event| {})?; // events: steps, validations
    let (fs, _assumed) = model.rate_or_default();
    let summary = dealias::eval::summary::before_after(&model.network, &out.best, fs)?;
    println!("{}", summary.table());
    let mut student = model.with_network(out.best);
    // A NAM file's metadata.loudness / gain (the plugin's Normalize) recomputed for the student.
    dealias::eval::calibration::recalibrate(&mut student)?;
    dealias::formats::save_model_with_note(&student, output.as_ref(), None)?;
    Ok(())
}
