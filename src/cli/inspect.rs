//! `dealias inspect MODEL`: what a model file holds.

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::formats::{Format, ModelFile};
use crate::models::{Cell, Network};

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
    let mut d = describe(&model);
    // AIDA-X files carry input_batch -> output_batch test vectors: how well they reproduce.
    if let Some(e) = crate::formats::test_vector_error(&model)? {
        d["test_vector_error"] = e.into();
    }
    if model.format == Format::Nam {
        d["calibration"] = calibration(&model);
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
    if let Some(cal) = d["calibration"].as_array() {
        println!(
            "calibration (metadata.loudness, metadata.gain; computed as the NAM trainer defines them):"
        );
        for c in cal {
            let stated = |k: &str, unit: &str| {
                c[k].as_f64()
                    .map_or("not stated".to_string(), |v| format!("{v:.3}{unit}"))
            };
            println!(
                "  {}loudness {} (computed {:.3} dB), gain {} (computed {:.3})",
                c["submodel"]
                    .as_u64()
                    .map_or(String::new(), |i| format!("submodel [{i}]: ")),
                stated("stated_loudness", " dB"),
                c["loudness"].as_f64().unwrap_or(f64::NAN),
                stated("stated_gain", ""),
                c["gain"].as_f64().unwrap_or(f64::NAN),
            );
        }
    }
    if let Some(subs) = d["submodels"].as_array() {
        println!("submodels (the plugin's slider picks one; the default is marked *):");
        for sm in subs {
            println!(
                "  [{}]{} max_value {}: slider {} to {}, {} parameters, receptive field {} samples",
                sm["index"],
                if sm["default"] == true { "*" } else { " " },
                sm["max_value"],
                sm["slider_range"][0],
                sm["slider_range"][1],
                sm["parameters"],
                sm["receptive_field"],
            );
        }
        println!("settings of the default submodel:");
    } else {
        println!("settings:");
    }
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

/// A description of a model for `inspect`: format, architecture, settings, parameter count,
/// sample rate, receptive field or state size, metadata and notices.
pub fn describe(model: &ModelFile) -> Value {
    let doc = &model.document;
    let net = &model.network;
    let settings = network_settings(net);
    let (receptive_field, state_size) = extent(net);
    let metadata = match model.format {
        Format::Nam => doc.get("metadata").cloned(),
        Format::GuitarMl => doc.get("dealias").map(|d| json!({ "dealias": d })),
        Format::AidaX => {
            let mut md = doc.get("metadata").cloned().unwrap_or_else(|| json!({}));
            if let (Some(d), Some(o)) = (doc.get("dealias"), md.as_object_mut()) {
                o.insert("dealias".into(), d.clone());
            }
            Some(md)
        }
    };
    let nets = model.submodel_networks();
    let submodels = model.is_container().then(|| {
        let mut low = 0.0;
        model
            .submodels
            .iter()
            .zip(&nets)
            .enumerate()
            .map(|(i, (s, n))| {
                let (rf, _) = extent(n);
                let d = json!({
                    "index": i,
                    "max_value": s.max_value,
                    "slider_range": [low, s.max_value],
                    "default": i == model.active,
                    "architecture": n.kind(),
                    "parameters": n.num_params(),
                    "receptive_field": rf,
                    "settings": network_settings(n),
                });
                low = s.max_value;
                d
            })
            .collect::<Vec<_>>()
    });
    json!({
        "path": model.path.as_ref().map(|p| p.display().to_string()),
        "format": model.format.name(),
        "version": doc.get("version"),
        "architecture": if model.is_container() {
            format!("SlimmableContainer of {} {} submodels", nets.len(), net.kind())
        } else {
            net.kind().to_string()
        },
        "parameters": nets.iter().map(|n| n.num_params()).sum::<usize>(),
        "sample_rate": model.sample_rate,
        "receptive_field": receptive_field,
        "state_size": state_size,
        "settings": settings,
        "submodels": submodels,
        "metadata": metadata,
        "notices": model.notices,
    })
}

/// Each network's NAM calibration, stated (the metadata's, `null` when absent) and computed
/// ([`crate::eval::calibration`]): the file's own for a single model; per submodel (their own
/// metadata) for a container, whose top level states the last one's.
fn calibration(model: &ModelFile) -> Value {
    use crate::eval::calibration::{metadata_pointer, nam_calibration, stated};
    let nets = model.submodel_networks();
    nets.iter()
        .enumerate()
        .map(|(i, n)| {
            let pointer = metadata_pointer(model.is_container().then_some(i));
            let (loudness, gain) = stated(model.document.pointer(&pointer));
            let cal = nam_calibration(n);
            json!({
                "submodel": model.is_container().then_some(i),
                "architecture": n.kind(),
                "stated_loudness": loudness,
                "stated_gain": gain,
                "loudness": cal.loudness_db,
                "gain": cal.gain,
            })
        })
        .collect()
}

/// Receptive field (convolutional networks) or state size (recurrent ones).
fn extent(net: &Network) -> (Option<usize>, Option<usize>) {
    match net {
        Network::Rnn(r) => {
            let per = if r.cell == Cell::Lstm { 2 } else { 1 };
            (
                None,
                Some(r.layers.iter().map(|l| per * l.hidden_size).sum::<usize>()),
            )
        }
        _ => (Some(net.receptive_field()), None),
    }
}

/// The active FiLM slots of a layer (the file's keys).
fn film_keys(layer: &crate::models::WaveNetLayer) -> Vec<&'static str> {
    layer.films.active().map(|(s, _)| s.key()).collect()
}

/// The settings of a network, by architecture.
fn network_settings(net: &Network) -> Value {
    match net {
        Network::WaveNet(w) => json!({
            "layer_arrays": w.layer_arrays.iter().map(|a| {
                let first = &a.layers[0];
                json!({
                    "input_size": a.input_size,
                    "channels": a.channels,
                    "bottleneck": first.bottleneck(),
                    "head_size": a.head_size,
                    "kernel_sizes": a.kernel_sizes(),
                    "dilations": a.dilations(),
                    "activations": a.layers.iter().map(|l| l.activation.name()).collect::<Vec<_>>(),
                    "gating_modes": a.layers.iter().map(|l| l.gating.name()).collect::<Vec<_>>(),
                    "layer1x1": first.one_by_one.is_some(),
                    "head1x1": first.head1x1.as_ref().map(|h| h.out_channels),
                    "groups_input": first.conv.groups,
                    "head_kernel_size": a.head_rechannel.kernel_size,
                    "head_bias": a.head_rechannel.bias.is_some(),
                    "films": film_keys(first),
                })
            }).collect::<Vec<_>>(),
            "post_head": w.head.as_ref().map(|h| json!({
                "activation": h.activation.name(),
                "layers": h.layers.len(),
                "kernel_sizes": h.layers.iter().map(|c| c.kernel_size).collect::<Vec<_>>(),
            })),
            "head_scale": w.head_scale[0],
        }),
        Network::Rnn(r) => json!({
            "cell": net.kind(),
            "layers": r.layers.len(),
            "hidden_size": r.hidden_size(),
            "skip": r.skip,
            "recurrent_bias": r.layers[0].b_ih.is_some(),
            "head_bias": r.head_bias.is_some(),
            "learned_initial_state": r.layers[0].initial_hidden.is_some(),
            "knobs": r.num_knobs(),
        }),
        Network::Linear(l) => json!({
            "taps": l.weights.len(),
            "bias": l.bias.is_some(),
        }),
    }
}
