//! AIDA-X / RTNeural JSON (`.json`, `.aidax`): the files the AIDA-X plugin loads, written by
//! the AIDA-X trainer (Automated-GuitarAmpModelling `modelToKeras.py` over RTNeural's
//! `save_model_json`).
//!
//! ```text
//! { "in_shape": [null, null, K],          K = 1 + number of knobs (AIDA-X: 1..=3)
//!   "in_skip": 1,                          optional: the input is added to the output
//!   "in_gain": dB, "out_gain": dB,         optional: 10^(dB/20) before / after the network
//!   "layers": [ {"type": "lstm"|"gru", "activation": "", "shape": [null, null, H],
//!                "weights": [kernel, recurrent, bias]}, …,
//!               {"type": "dense", "activation": "", "shape": [null, null, 1],
//!                "weights": [kernel (H × 1), bias (1)]} ],
//!   "input_batch": […], "output_batch": […],   optional test vectors (bare network)
//!   "metadata": {"samplerate": "48000", …} }
//! ```
//!
//! Weight layouts (RTNeural `model_loader.h`, Keras convention): an LSTM's `kernel` is
//! `W_ihᵀ` (`K × 4H`, gate blocks i, f, c, o as in PyTorch), `recurrent` is `W_hhᵀ`, `bias` the
//! single combined bias (`4H`; kept in [`RnnLayer::b_ih`]). A GRU's gate blocks are Keras'
//! (z, r, n), here reordered to PyTorch's (r, z, n); its `bias` is `2 × 3H`: the input-side
//! and the recurrent biases (`b_hn` inside the reset product), as PyTorch's `b_ih`, `b_hh`.
//!
//! The plugin runs `y = G_out (net(G_in x) + skip · G_in x)`. The network value holds that
//! whole chain: `G_in` is folded into layer 0's audio-input weights and `G_out` into the head,
//! and saving divides them out again. With `in_skip` the skip term would need a gain of its
//! own, so `in_skip` with a gain other than 0 dB is refused. The test vectors
//! (`input_batch` → `output_batch`) are of the bare network (skip included, gains excluded,
//! every knob at 0, as the trainer makes them); loading checks them and saving changed
//! weights recomputes `output_batch`.

use serde_json::{Map, Value};

use super::json::{self, field, object, size, MAX_SIZE};
use crate::models::{Cell, Network, Rnn, RnnLayer};

/// What an AIDA-X document describes.
pub(crate) struct Parsed {
    pub network: Network,
    pub sample_rate: Option<f64>,
    pub notices: Vec<String>,
}

/// Largest relative error of the test vectors that passes without a notice. The published
/// files' vectors are float32 outputs of the trainer's network, reproduced to about 1e-6 of
/// their peak; a wrong reading of the weights gives errors of order 1.
const VECTOR_TOLERANCE: f64 = 1e-4;

/// The gains and skip setting of a document.
struct Chain {
    g_in: f64,
    g_out: f64,
    skip: bool,
}

fn chain(top: &Map<String, Value>) -> Result<Chain, String> {
    let skip = match top.get("in_skip") {
        None | Some(Value::Null) => false,
        Some(v) => size(v, "in_skip", 0, 1)? == 1,
    };
    let gain = |k: &str| -> Result<f64, String> {
        match top.get(k) {
            None | Some(Value::Null) => Ok(0.0),
            Some(v) => {
                let db = json::number(v, k)?;
                if db.abs() > 200.0 {
                    return Err(format!("{k} is {db} dB, not a plausible gain"));
                }
                Ok(db)
            }
        }
    };
    let (in_db, out_db) = (gain("in_gain")?, gain("out_gain")?);
    if skip && (in_db != 0.0 || out_db != 0.0) {
        return Err(
            "unsupported feature: in_skip together with in_gain/out_gain other than 0 dB".into(),
        );
    }
    Ok(Chain {
        g_in: 10f64.powf(in_db / 20.0),
        g_out: 10f64.powf(out_db / 20.0),
        skip,
    })
}

/// The Keras gate column of PyTorch gate row `p` (and back: the map is its own inverse).
/// LSTM blocks are in the same order; GRU swaps the first two blocks, (r, z) ↔ (z, r).
fn keras_col(cell: Cell, h: usize, p: usize) -> usize {
    match cell {
        Cell::Lstm => p,
        Cell::Gru if p < h => p + h,
        Cell::Gru if p < 2 * h => p - h,
        Cell::Gru => p,
    }
}

/// A layer's `weights[i]` with its shape checked.
fn weight(w: &[Value], i: usize, what: &str, shape: &[usize]) -> Result<Vec<f64>, String> {
    let name = format!("{what}.weights[{i}]");
    let v = w
        .get(i)
        .ok_or_else(|| format!("{what} has no weights[{i}]"))?;
    let (vals, found) = json::tensor(v, &name)?;
    if found != shape {
        return Err(format!("{name} has shape {found:?}, expected {shape:?}"));
    }
    Ok(vals)
}

/// The last entry of a `shape` array (the layer width / number of inputs).
fn last_dim(v: &Value, what: &str) -> Result<usize, String> {
    let a = v
        .as_array()
        .ok_or_else(|| format!("{what} must be an array, found {}", json::type_name(v)))?;
    let d = a.last().ok_or_else(|| format!("{what} is empty"))?;
    size(d, &format!("{what}[{}]", a.len() - 1), 1, MAX_SIZE)
}

/// `activation` must be empty: the recurrent layers' are fixed, the head is linear.
fn no_activation(l: &Map<String, Value>, what: &str) -> Result<(), String> {
    match l.get("activation") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s.is_empty() || s == "linear" => Ok(()),
        Some(v) => Err(format!(
            "unsupported feature {what} activation {v} (the AIDA-X architecture has none)"
        )),
    }
}

/// Parses an AIDA-X document into the network the plugin runs (gains folded in).
pub(crate) fn parse(doc: &Value) -> Result<Parsed, String> {
    let top = object(doc, "the file")?;
    let inputs = last_dim(field(top, "in_shape", "the file")?, "in_shape")?;
    if !(1..=3).contains(&inputs) {
        return Err(format!(
            "in_shape has {inputs} inputs; AIDA-X models have 1 (audio) to 3 (audio and two knobs)"
        ));
    }
    let ch = chain(top)?;
    let layers_v = field(top, "layers", "the file")?
        .as_array()
        .ok_or("\"layers\" must be an array")?;
    let types = layers_v
        .iter()
        .map(|l| {
            l.get("type")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string()
        })
        .collect::<Vec<_>>();
    let cell = match types.first().map(String::as_str) {
        Some("lstm") => Cell::Lstm,
        Some("gru") => Cell::Gru,
        _ => Cell::Lstm,
    };
    let rec_name = if cell == Cell::Lstm { "lstm" } else { "gru" };
    let n_rec = types.len().saturating_sub(1);
    let plain = n_rec >= 1
        && types[..n_rec].iter().all(|t| t == rec_name)
        && types.last().map(String::as_str) == Some("dense");
    if !plain {
        return Err(format!(
            "unsupported RTNeural network: layers {types:?}; dealias reads one or more lstm or gru \
             layers followed by one dense layer (the AIDA-X architecture)"
        ));
    }
    if n_rec > 1024 {
        return Err(format!("{n_rec} recurrent layers is more than supported"));
    }
    let g = cell.gates();
    let mut input = inputs;
    let mut layers = Vec::with_capacity(n_rec);
    for (li, lv) in layers_v[..n_rec].iter().enumerate() {
        let what = format!("layers[{li}]");
        let l = object(lv, &what)?;
        no_activation(l, &what)?;
        let h = last_dim(field(l, "shape", &what)?, &format!("{what}.shape"))?;
        let w = field(l, "weights", &what)?
            .as_array()
            .ok_or_else(|| format!("{what}.weights must be an array"))?;
        if !(2..=3).contains(&w.len()) {
            return Err(format!(
                "{what}.weights has {} tensors, expected 3 (kernel, recurrent, bias)",
                w.len()
            ));
        }
        let gh = g * h;
        let kernel = weight(w, 0, &what, &[input, gh])?;
        let rec = weight(w, 1, &what, &[h, gh])?;
        let mut w_ih = vec![0.0; gh * input];
        let mut w_hh = vec![0.0; gh * h];
        for p in 0..gh {
            let kc = keras_col(cell, h, p);
            for c in 0..input {
                w_ih[p * input + c] = kernel[c * gh + kc];
            }
            for c in 0..h {
                w_hh[p * h + c] = rec[c * gh + kc];
            }
        }
        let (b_ih, b_hh) = if w.len() == 3 {
            let reorder =
                |b: &[f64]| -> Vec<f64> { (0..gh).map(|p| b[keras_col(cell, h, p)]).collect() };
            match cell {
                Cell::Lstm => (Some(reorder(&weight(w, 2, &what, &[gh])?)), None),
                Cell::Gru => {
                    let b = weight(w, 2, &what, &[2, gh])?;
                    (Some(reorder(&b[..gh])), Some(reorder(&b[gh..])))
                }
            }
        } else {
            (None, None)
        };
        if li == 0 {
            // The input gain scales what layer 0 sees of the audio (column 0).
            for p in 0..gh {
                w_ih[p * input] *= ch.g_in;
            }
        }
        layers.push(RnnLayer {
            input_size: input,
            hidden_size: h,
            w_ih,
            w_hh,
            b_ih,
            b_hh,
            initial_hidden: None,
            initial_cell: None,
        });
        input = h;
    }
    let what = format!("layers[{n_rec}]");
    let dense = object(&layers_v[n_rec], &what)?;
    no_activation(dense, &what)?;
    let out = last_dim(field(dense, "shape", &what)?, &format!("{what}.shape"))?;
    if out != 1 {
        return Err(format!(
            "{what} has {out} outputs; only single-output (mono) models are supported"
        ));
    }
    let dw = field(dense, "weights", &what)?
        .as_array()
        .ok_or_else(|| format!("{what}.weights must be an array"))?;
    if !(1..=2).contains(&dw.len()) {
        return Err(format!(
            "{what}.weights has {} tensors, expected 2 (kernel, bias)",
            dw.len()
        ));
    }
    let head_weight: Vec<f64> = weight(dw, 0, &what, &[input, 1])?
        .iter()
        .map(|w| w * ch.g_out)
        .collect();
    let head_bias = if dw.len() == 2 {
        Some(vec![weight(dw, 1, &what, &[1])?[0] * ch.g_out])
    } else {
        None
    };
    let rnn = Rnn {
        cell,
        layers,
        head_weight,
        head_bias,
        skip: ch.skip,
        knobs: vec![0.0; inputs - 1],
    };
    rnn.validate()?;
    let sample_rate = sample_rate(top)?;
    let mut notices = Vec::new();
    if let Some(e) = vector_error_of(&rnn, top, &ch)? {
        if e > VECTOR_TOLERANCE {
            notices.push(format!(
                "the file's test vectors (input_batch -> output_batch) are not reproduced: largest \
                 error {e:.2e} of their peak{}",
                if inputs > 1 {
                    " (for a conditioned model the trainer may have made them at knob values other than 0)"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(Parsed {
        network: Network::Rnn(rnn),
        sample_rate,
        notices,
    })
}

fn sample_rate(top: &Map<String, Value>) -> Result<Option<f64>, String> {
    let Some(md) = top.get("metadata").and_then(Value::as_object) else {
        return Ok(None);
    };
    let Some((key, v)) = ["samplerate", "sample_rate"]
        .iter()
        .find_map(|k| md.get(*k).map(|v| (*k, v)))
    else {
        return Ok(None);
    };
    let what = format!("metadata.{key}");
    let sr = match v {
        Value::Null => return Ok(None),
        // The trainer writes it as a string ("48000").
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| format!("{what} {s:?} is not a number"))?,
        v => json::number(v, &what)?,
    };
    if !(1.0..=1e7).contains(&sr) {
        return Err(format!("{what} {sr} is not a plausible rate"));
    }
    Ok(Some(sr))
}

/// The bare network's output (skip included, gains and knobs excluded) for `x`: what the
/// trainer's `output_batch` holds, `net(x / G_in) / G_out` of the folded network.
fn bare_output(rnn: &Rnn, ch: &Chain, x: &[f64]) -> Vec<f64> {
    let net = Network::Rnn(Rnn {
        knobs: vec![0.0; rnn.knobs.len()],
        ..rnn.clone()
    });
    let xs: Vec<f64> = x.iter().map(|v| v / ch.g_in).collect();
    net.process::<f64>(&xs)
        .into_iter()
        .map(|v| v / ch.g_out)
        .collect()
}

/// A file's test vectors: `input_batch` and `output_batch`.
type Vectors = (Vec<f64>, Vec<f64>);

/// The test vectors of a document, when it has both and they have equal lengths.
fn vectors(top: &Map<String, Value>) -> Result<Option<Vectors>, String> {
    match (top.get("input_batch"), top.get("output_batch")) {
        (Some(i), Some(o)) if !i.is_null() && !o.is_null() => {
            let x = json::numbers(i, "input_batch")?;
            let y = json::numbers(o, "output_batch")?;
            if x.len() != y.len() {
                return Err(format!(
                    "input_batch has {} values but output_batch {}",
                    x.len(),
                    y.len()
                ));
            }
            Ok(Some((x, y)))
        }
        _ => Ok(None),
    }
}

fn vector_error_of(rnn: &Rnn, top: &Map<String, Value>, ch: &Chain) -> Result<Option<f64>, String> {
    let Some((x, want)) = vectors(top)? else {
        return Ok(None);
    };
    let got = bare_output(rnn, ch, &x);
    let peak = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    let err = got
        .iter()
        .zip(&want)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    Ok(Some(err / peak))
}

/// The largest error of `net` on the document's `input_batch` → `output_batch` test vectors,
/// relative to their peak (`None` when the document has none).
pub(crate) fn vector_error(net: &Network, doc: &Value) -> Result<Option<f64>, String> {
    let (Network::Rnn(rnn), Some(top)) = (net, doc.as_object()) else {
        return Ok(None);
    };
    vector_error_of(rnn, top, &chain(top)?)
}

/// The file-order values of every weight tensor of `rnn`, gains divided out:
/// per recurrent layer `[kernel, recurrent, bias]`, then `[dense kernel, dense bias]`.
fn file_tensors(rnn: &Rnn, ch: &Chain) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    let cell = rnn.cell;
    for (li, l) in rnn.layers.iter().enumerate() {
        let (h, input) = (l.hidden_size, l.input_size);
        let gh = cell.gates() * h;
        let mut kernel = vec![0.0; input * gh];
        let mut rec = vec![0.0; h * gh];
        for kc in 0..gh {
            let p = keras_col(cell, h, kc);
            for c in 0..input {
                let v = l.w_ih[p * input + c];
                kernel[c * gh + kc] = if li == 0 && c == 0 { v / ch.g_in } else { v };
            }
            for c in 0..h {
                rec[c * gh + kc] = l.w_hh[p * h + c];
            }
        }
        out.push(kernel);
        out.push(rec);
        let reorder =
            |b: &[f64]| -> Vec<f64> { (0..gh).map(|kc| b[keras_col(cell, h, kc)]).collect() };
        match (&l.b_ih, &l.b_hh) {
            (Some(bi), None) => out.push(reorder(bi)),
            (Some(bi), Some(bh)) => {
                let mut b = reorder(bi);
                b.extend(reorder(bh));
                out.push(b);
            }
            _ => out.push(vec![]),
        }
    }
    out.push(rnn.head_weight.iter().map(|w| w / ch.g_out).collect());
    out.push(
        rnn.head_bias
            .as_ref()
            .map_or(vec![], |b| b.iter().map(|w| w / ch.g_out).collect()),
    );
    out
}

/// Writes `net`'s weights into `doc` (the AIDA-X document `original` was parsed from),
/// changing only the values that differ, and recomputes `output_batch` when any did.
/// Returns how many weight values changed.
pub(crate) fn write(net: &Network, original: &Network, doc: &mut Value) -> Result<usize, String> {
    let differs = || {
        "the network's architecture differs from the file's; only weights can change".to_string()
    };
    let (Network::Rnn(a), Network::Rnn(b)) = (net, original) else {
        return Err(differs());
    };
    let same_shape = a.cell == b.cell
        && a.skip == b.skip
        && a.layers.len() == b.layers.len()
        && a.num_params() == b.num_params()
        && a.knobs.len() == b.knobs.len()
        && a.layers.iter().zip(&b.layers).all(|(x, y)| {
            x.hidden_size == y.hidden_size
                && x.input_size == y.input_size
                && x.b_ih.is_some() == y.b_ih.is_some()
                && x.b_hh.is_some() == y.b_hh.is_some()
                && x.initial_hidden.is_none()
                && x.initial_cell.is_none()
        })
        && a.head_bias.is_some() == b.head_bias.is_some();
    if !same_shape {
        return Err(differs());
    }
    let top = doc.as_object_mut().ok_or("the document is not an object")?;
    let ch = chain(top)?;
    let (new, old) = (file_tensors(a, &ch), file_tensors(b, &ch));
    let n_rec = a.layers.len();
    let layers = top
        .get_mut("layers")
        .and_then(Value::as_array_mut)
        .ok_or("the document has no layers")?;
    let mut changed = 0;
    for (ti, (n, o)) in new.iter().zip(&old).enumerate() {
        let (li, wi) = if ti < 3 * n_rec {
            (ti / 3, ti % 3)
        } else {
            (n_rec, ti - 3 * n_rec)
        };
        if n.is_empty() {
            continue;
        }
        changed += n
            .iter()
            .zip(o)
            .filter(|(x, y)| x.to_bits() != y.to_bits())
            .count();
        let slot = layers
            .get_mut(li)
            .and_then(|l| l.get_mut("weights"))
            .and_then(|w| w.get_mut(wi))
            .ok_or_else(|| format!("the document has no layers[{li}].weights[{wi}]"))?;
        let mut at = 0;
        json::replace_leaves(slot, n, o, &mut at);
    }
    if changed > 0 {
        if let Some((x, _)) = vectors(top)? {
            // The vectors describe the file: the network as written (weights rounded to f32,
            // gains divided out), read back.
            let Network::Rnn(written) = parse(doc)?.network else {
                unreachable!("AIDA-X files hold recurrent networks")
            };
            let y = bare_output(&written, &ch, &x);
            let top = doc.as_object_mut().ok_or("the document is not an object")?;
            top.insert(
                "output_batch".into(),
                Value::Array(y.into_iter().map(json::weight_value).collect()),
            );
        }
    }
    Ok(changed)
}

/// Writes a changed sample rate into `metadata.samplerate` (a string, as the trainer writes
/// it, unless the file had a number there).
pub(crate) fn write_rate(doc: &mut Value, rate: Value) {
    let top = doc.as_object_mut().expect("parsed documents are objects");
    let md = top
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    if !md.is_object() {
        *md = Value::Object(Default::default());
    }
    let md = md.as_object_mut().expect("just made an object");
    let as_string = !md.get("samplerate").is_some_and(Value::is_number);
    let v = match (&rate, as_string) {
        (Value::Number(n), true) => Value::String(n.to_string()),
        _ => rate,
    };
    md.insert("samplerate".into(), v);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gru_gate_map_is_an_involution_swapping_r_and_z() {
        let h = 3;
        for p in 0..9 {
            assert_eq!(keras_col(Cell::Gru, h, keras_col(Cell::Gru, h, p)), p);
        }
        assert_eq!(keras_col(Cell::Gru, h, 0), 3); // r -> second Keras block
        assert_eq!(keras_col(Cell::Gru, h, 4), 1); // z -> first
        assert_eq!(keras_col(Cell::Gru, h, 7), 7); // n stays
        assert_eq!(keras_col(Cell::Lstm, h, 5), 5);
    }
}
