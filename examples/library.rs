//! The library in a few lines: load a model file, run it (whole signal or streaming), change
//! its weights and save it in the format it came from.
//!
//! `cargo run --release --example library -- MODEL OUT`

use std::path::PathBuf;

use dealias::formats::save_model_with_note;
use dealias::load_model;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(input), Some(output)) = (args.next(), args.next()) else {
        return Err("usage: library MODEL OUT".into());
    };
    let mut model = load_model(&PathBuf::from(input))?;
    let (fs, _assumed) = model.rate_or_default();
    let x: Vec<f64> = (0..fs as usize)
        .map(|n| 0.5 * (2.0 * std::f64::consts::PI * 440.0 * n as f64 / fs).sin())
        .collect();

    let y: Vec<f64> = model.process::<f64>(&x); // or f32; output length = input length
    let mut proc = model.network.processor::<f64>(); // streaming: block by block
    let mut block_out = vec![0.0; 512];
    proc.process(&x[..512], &mut block_out);
    assert_eq!(block_out[..], y[..512]);

    let mut p = model.network.params(); // all weights as one flat vector
    p[0] *= 0.5;
    model.network.set_params(&p)?;
    save_model_with_note(&model, output.as_ref(), Some("weight 0 halved".into()))?;
    println!("{} parameters, {} at {fs} Hz", p.len(), model.format.name());
    Ok(())
}
