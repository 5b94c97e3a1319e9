//! `dealias inspect MODEL`: what a model file holds.

use std::path::PathBuf;

use serde_json::Value;

/// Arguments of `dealias inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model file (.nam, GuitarML or AIDA-X .json).
    pub model: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `dealias inspect`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let model = crate::load_model(&args.model)?;
    let mut d = crate::formats::describe(&model);
    // AIDA-X files carry input_batch -> output_batch test vectors: how well they reproduce.
    if let Some(e) = crate::formats::test_vector_error(&model)? {
        d["test_vector_error"] = e.into();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(());
    }
    println!("file:            {}", args.model.display());
    println!("format:          {}", d["format"].as_str().unwrap_or(""));
    if let Some(v) = d["version"].as_str() {
        println!("format version:  {v}");
    }
    println!(
        "architecture:    {}",
        d["architecture"].as_str().unwrap_or("")
    );
    println!("parameters:      {}", d["parameters"]);
    match d["sample_rate"].as_f64() {
        Some(sr) => println!("sample rate:     {sr} Hz"),
        None => println!("sample rate:     not stated (runs at the input's rate)"),
    }
    if let Some(rf) = d["receptive_field"].as_u64() {
        println!("receptive field: {rf} samples");
    }
    if let Some(s) = d["state_size"].as_u64() {
        println!("state size:      {s} values");
    }
    if let Some(e) = d["test_vector_error"].as_f64() {
        println!("test vectors:    reproduced to {e:.1e} of their peak (bare network, knobs at 0)");
    }
    println!("settings:");
    print_value(&d["settings"], 2);
    if !d["metadata"].is_null() {
        println!("metadata:");
        print_value(&d["metadata"], 2);
    }
    for n in d["notices"].as_array().into_iter().flatten() {
        super::notice(n.as_str().unwrap_or(""));
    }
    Ok(())
}

fn print_value(v: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                if x.is_object()
                    || (x.is_array()
                        && x.as_array().is_some_and(|a| a.iter().any(Value::is_object)))
                {
                    println!("{pad}{k}:");
                    print_value(x, indent + 2);
                } else {
                    println!("{pad}{k}: {x}");
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                println!("{pad}[{i}]");
                print_value(x, indent + 2);
            }
        }
        other => println!("{pad}{other}"),
    }
}
