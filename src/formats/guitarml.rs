//! GuitarML / Automated-GuitarAmpModelling JSON (`SimpleRNN`): `model_data` with the settings
//! and `state_dict` with PyTorch tensors as nested arrays.
//!
//! The network is `torch.nn.LSTM` or `torch.nn.GRU` (`rec.*`, PyTorch layout and gate order),
//! then `torch.nn.Linear(hidden_size, 1, bias=bias_fl)` (`lin.*`), plus the input sample when
//! `skip` is set. Tensor names are PyTorch's: `rec.weight_ih_l{k}`, `rec.weight_hh_l{k}`,
//! `rec.bias_ih_l{k}`, `rec.bias_hh_l{k}`, `lin.weight`, `lin.bias`.
//!
//! `input_size` 2 or 3 is a knob-conditioned model (Proteus "…Knob" captures, NeuralPi, BYOD):
//! the input vector is `[x, knob_1, knob_2]`, as the plugins feed it, with knobs in 0..1.

use serde_json::{Map, Value};

use super::json::{self, boolean, field, object, size, MAX_SIZE};
use crate::models::{Cell, Network, Rnn, RnnLayer};

/// What a GuitarML document describes.
pub(crate) struct Parsed {
    pub network: Network,
    pub sample_rate: Option<f64>,
}

/// Reads a tensor of `state_dict` and checks its shape.
fn tensor(sd: &Map<String, Value>, key: &str, shape: &[usize]) -> Result<Vec<f64>, String> {
    let v = sd
        .get(key)
        .ok_or_else(|| format!("state_dict has no \"{key}\""))?;
    let (vals, found) = json::tensor(v, key)?;
    if found != shape {
        return Err(format!("{key} has shape {found:?}, expected {shape:?}"));
    }
    Ok(vals)
}

/// Parses a GuitarML document.
pub(crate) fn parse(doc: &Value) -> Result<Parsed, String> {
    let top = object(doc, "the file")?;
    let md = object(field(top, "model_data", "the file")?, "model_data")?;
    let sd = object(field(top, "state_dict", "the file")?, "state_dict")?;
    if let Some(m) = md.get("model") {
        if m.as_str() != Some("SimpleRNN") {
            return Err(format!("unsupported model {m} (supported: \"SimpleRNN\")"));
        }
    }
    let unit = field(md, "unit_type", "model_data")?;
    let cell = match unit.as_str() {
        Some("LSTM") => Cell::Lstm,
        Some("GRU") => Cell::Gru,
        _ => {
            return Err(format!(
                "unsupported unit_type {unit} (supported: \"LSTM\", \"GRU\")"
            ))
        }
    };
    let get = |k: &str| field(md, k, "model_data");
    let input = match md.get("input_size") {
        None => 1,
        // Audio plus up to two knobs, as the GuitarML plugins feed them.
        Some(v) => size(v, "model_data.input_size", 1, 3)?,
    };
    if let Some(v) = md.get("output_size") {
        size(v, "model_data.output_size", 1, 1)?;
    }
    if md
        .get("bidirectional")
        .is_some_and(|b| b != &Value::Bool(false))
    {
        return Err("unsupported feature bidirectional RNN".into());
    }
    let h = size(get("hidden_size")?, "model_data.hidden_size", 1, MAX_SIZE)?;
    let n = match md.get("num_layers") {
        None => 1,
        Some(v) => size(v, "model_data.num_layers", 1, 1024)?,
    };
    let skip = match md.get("skip") {
        None => false,
        Some(v) => {
            let s = size(v, "model_data.skip", 0, 1)?;
            s == 1
        }
    };
    let bias_fl = match md.get("bias_fl") {
        None => sd.contains_key("lin.bias"),
        Some(v) => boolean(v, "model_data.bias_fl")?,
    };
    let g = cell.gates() * h;
    let layers = (0..n)
        .map(|li| {
            let i = if li == 0 { input } else { h };
            let b = |name: &str| -> Result<Option<Vec<f64>>, String> {
                let key = format!("rec.{name}_l{li}");
                if sd.contains_key(&key) {
                    tensor(sd, &key, &[g]).map(Some)
                } else {
                    Ok(None)
                }
            };
            Ok(RnnLayer {
                input_size: i,
                hidden_size: h,
                w_ih: tensor(sd, &format!("rec.weight_ih_l{li}"), &[g, i])?,
                w_hh: tensor(sd, &format!("rec.weight_hh_l{li}"), &[g, h])?,
                b_ih: b("bias_ih")?,
                b_hh: b("bias_hh")?,
                initial_hidden: None,
                initial_cell: None,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    for l in &layers {
        if l.b_ih.is_some() != l.b_hh.is_some() {
            return Err("state_dict has only one of bias_ih and bias_hh for a layer".into());
        }
    }
    let head_bias = if bias_fl {
        Some(tensor(sd, "lin.bias", &[1])?)
    } else {
        if sd.contains_key("lin.bias") {
            return Err("model_data.bias_fl is false but state_dict has \"lin.bias\"".into());
        }
        None
    };
    let expected_keys = 2 * n
        + layers.iter().filter(|l| l.b_ih.is_some()).count() * 2
        + 1
        + head_bias.is_some() as usize;
    // Read before counting keys, so that a missing head is reported as missing.
    let head_weight = tensor(sd, "lin.weight", &[1, h])?;
    if sd.len() != expected_keys {
        return Err(match sd.keys().find(|k| !is_known_key(k, n, bias_fl)) {
            Some(extra) => {
                format!("state_dict has an unexpected tensor \"{extra}\" for {n} layer(s)")
            }
            None => format!(
                "state_dict has {} tensors where {n} layer(s) need {expected_keys}",
                sd.len()
            ),
        });
    }
    let rnn = Rnn {
        cell,
        layers,
        head_weight,
        head_bias,
        skip,
        knobs: vec![0.0; input - 1],
    };
    rnn.validate()?;
    let sample_rate = ["sample_rate", "samplerate"]
        .iter()
        .find_map(|k| md.get(*k))
        .map(|v| json::number(v, "model_data.sample_rate"))
        .transpose()?;
    Ok(Parsed {
        network: Network::Rnn(rnn),
        sample_rate,
    })
}

fn is_known_key(k: &str, layers: usize, bias_fl: bool) -> bool {
    if k == "lin.weight" || (bias_fl && k == "lin.bias") {
        return true;
    }
    (0..layers).any(|l| {
        ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
            .iter()
            .any(|n| k == format!("rec.{n}_l{l}"))
    })
}

/// Writes `net`'s weights into `doc` (the GuitarML document `original` was parsed from),
/// changing only the values that differ. Returns how many values changed.
pub(crate) fn write(net: &Network, original: &Network, doc: &mut Value) -> Result<usize, String> {
    let (Network::Rnn(a), Network::Rnn(b)) = (net, original) else {
        return Err(
            "the network's architecture differs from the file's; only weights can change".into(),
        );
    };
    let same_shape = a.cell == b.cell
        && a.skip == b.skip
        && a.layers.len() == b.layers.len()
        && a.num_params() == b.num_params()
        && a.layers.iter().zip(&b.layers).all(|(x, y)| {
            x.hidden_size == y.hidden_size
                && x.b_ih.is_some() == y.b_ih.is_some()
                && x.b_hh.is_some() == y.b_hh.is_some()
                && x.initial_hidden.is_none()
                && x.initial_cell.is_none()
        })
        && a.head_bias.is_some() == b.head_bias.is_some();
    if !same_shape {
        return Err(
            "the network's architecture differs from the file's; only weights can change".into(),
        );
    }
    let sd = doc
        .get_mut("state_dict")
        .and_then(Value::as_object_mut)
        .ok_or("the document has no state_dict")?;
    let mut changed = 0;
    let mut put = |key: String, new: &[f64], old: &[f64]| -> Result<(), String> {
        changed += new
            .iter()
            .zip(old)
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count();
        let slot = sd
            .get_mut(&key)
            .ok_or_else(|| format!("the document has no \"{key}\""))?;
        let mut at = 0;
        json::replace_leaves(slot, new, old, &mut at);
        Ok(())
    };
    for (li, (x, y)) in a.layers.iter().zip(&b.layers).enumerate() {
        put(format!("rec.weight_ih_l{li}"), &x.w_ih, &y.w_ih)?;
        put(format!("rec.weight_hh_l{li}"), &x.w_hh, &y.w_hh)?;
        if let (Some(n), Some(o)) = (&x.b_ih, &y.b_ih) {
            put(format!("rec.bias_ih_l{li}"), n, o)?;
        }
        if let (Some(n), Some(o)) = (&x.b_hh, &y.b_hh) {
            put(format!("rec.bias_hh_l{li}"), n, o)?;
        }
    }
    put("lin.weight".into(), &a.head_weight, &b.head_weight)?;
    if let (Some(n), Some(o)) = (&a.head_bias, &b.head_bias) {
        put("lin.bias".into(), n, o)?;
    }
    Ok(changed)
}

/// A GuitarML document for `rnn` with every weight zero (write the weights with
/// [`write`]): `model_data` as Automated-GuitarAmpModelling writes it, plus the sample rate
/// the model was trained at (the plugins ignore keys they do not know). Only the layout that
/// `dealias train` creates: one input, one output.
pub(crate) fn template(rnn: &Rnn, sample_rate: f64) -> Result<Value, String> {
    if rnn.num_knobs() > 0 || rnn.layers.iter().any(|l| l.initial_hidden.is_some()) {
        return Err("GuitarML files of knob-conditioned networks or learned initial states are not written from scratch".into());
    }
    let zeros = |rows: usize, cols: usize| -> Value {
        Value::Array(vec![Value::Array(vec![Value::from(0.0); cols]); rows])
    };
    let h = rnn.hidden_size();
    let mut sd = Map::new();
    for (k, l) in rnn.layers.iter().enumerate() {
        let gh = rnn.cell.gates() * l.hidden_size;
        sd.insert(format!("rec.weight_ih_l{k}"), zeros(gh, l.input_size));
        sd.insert(format!("rec.weight_hh_l{k}"), zeros(gh, l.hidden_size));
        if l.b_ih.is_some() {
            sd.insert(
                format!("rec.bias_ih_l{k}"),
                Value::Array(vec![Value::from(0.0); gh]),
            );
        }
        if l.b_hh.is_some() {
            sd.insert(
                format!("rec.bias_hh_l{k}"),
                Value::Array(vec![Value::from(0.0); gh]),
            );
        }
    }
    sd.insert("lin.weight".into(), zeros(1, h));
    if rnn.head_bias.is_some() {
        sd.insert("lin.bias".into(), Value::Array(vec![Value::from(0.0)]));
    }
    let rate = json::rate_value(sample_rate)?;
    Ok(serde_json::json!({
        "model_data": {
            "model": "SimpleRNN",
            "input_size": 1,
            "skip": u8::from(rnn.skip),
            "output_size": 1,
            "unit_type": match rnn.cell { Cell::Lstm => "LSTM", Cell::Gru => "GRU" },
            "num_layers": rnn.layers.len(),
            "hidden_size": h,
            "bias_fl": rnn.head_bias.is_some(),
            "sample_rate": rate,
        },
        "state_dict": sd,
    }))
}
