//! Neural Amp Modeler `.nam` files: `WaveNet`, `LSTM` and `Linear` architectures.
//!
//! A `.nam` file is JSON with `version`, `architecture`, `config`, a flat `weights` array,
//! optional `sample_rate` and `metadata`. The weight order is that of the `export_weights`
//! methods of the `neural-amp-modeler` Python package (0.5.x file format):
//!
//! - `WaveNet`: per layer array `rechannel.weight`, then per layer `conv.weight, conv.bias,
//!   input_mixer.weight, 1x1.weight, 1x1.bias`, then `head_rechannel.weight[, .bias]`; then the
//!   optional post-head's `conv.weight, conv.bias` per block; then `head_scale`. Each tensor is
//!   flattened row-major in PyTorch's `(out, in, kernel)` shape.
//! - `LSTM`: per layer the `4H × (in + H)` matrix `[W_ih | W_hh]` (row-major, gates i, f, g, o),
//!   the `4H` bias `b_ih + b_hh`, the initial hidden state `H`, the initial cell state `H`;
//!   then the head's `H` weights and its bias.
//! - `Linear`: the `receptive_field` taps (oldest sample first), then the bias when `bias`.
//!
//! `head_scale`: the Python package takes it from `config.head_scale` and ignores the last
//! weight; the C++ plugin reads the last weight. The two normally agree up to f32 rounding.
//! We follow the Python package (it is the reference implementation), and report a
//! disagreement as a notice.
//!
//! Newer files (0.6, 0.7) add per-layer-array settings (`bottleneck`, `gating_mode`,
//! `kernel_sizes`, `head1x1`, `layer1x1`, FiLM, grouped convolutions, ...). They load when every
//! such setting has its 0.5-equivalent value; otherwise the error names the setting.

use serde_json::{Map, Value};

use super::json::{self, boolean, field, number, numbers, object, size, MAX_DILATION, MAX_SIZE};
use crate::models::{
    Activation, Cell, Conv1d, Linear, Network, Rnn, RnnLayer, WaveNet, WaveNetHead, WaveNetLayer,
    WaveNetLayerArray,
};

/// What a `.nam` document describes.
pub(crate) struct Parsed {
    pub network: Network,
    pub sample_rate: Option<f64>,
    pub notices: Vec<String>,
}

/// Largest total convolution history (frames × channels, summed over layers) accepted, so
/// that absurd dilations cannot make the streaming buffers explode.
const MAX_HISTORY: u128 = 1 << 26;

/// Parses a `.nam` document.
pub(crate) fn parse(doc: &Value) -> Result<Parsed, String> {
    let top = object(doc, "the file")?;
    let mut notices = Vec::new();
    if let Some(v) = top.get("version") {
        let v = v
            .as_str()
            .ok_or_else(|| format!("\"version\" must be a string, found {}", json::type_name(v)))?;
        let mut parts = v.split('.').map(|p| p.parse::<u64>().ok());
        match (parts.next().flatten(), parts.next().flatten()) {
            (Some(0), Some(5..=7)) => {}
            (Some(_), Some(_)) => notices.push(format!(
                "file format version {v} is outside the tested 0.5–0.7; loading it anyway"
            )),
            _ => return Err(format!("\"version\" is not a version number: {v:?}")),
        }
    }
    let arch_v = field(top, "architecture", "the file")?;
    let arch = arch_v.as_str().ok_or_else(|| {
        format!(
            "\"architecture\" must be a string, found {}",
            json::type_name(arch_v)
        )
    })?;
    // The architecture is judged before anything else, so that a file of another kind is
    // named as such rather than reported as missing NAM keys.
    if !["WaveNet", "LSTM", "Linear"].contains(&arch) {
        return Err(format!(
            "unsupported architecture \"{arch}\" (supported: WaveNet, LSTM, Linear)"
        ));
    }
    let config = object(field(top, "config", "the file")?, "\"config\"")?;
    let weights = numbers(field(top, "weights", "the file")?, "weights")?;
    let sample_rate = match top.get("sample_rate") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let sr = number(v, "sample_rate")?;
            if !(1.0..=1e7).contains(&sr) {
                return Err(format!("sample_rate {sr} is not a plausible rate"));
            }
            Some(sr)
        }
    };
    let network = match arch {
        "WaveNet" => Network::WaveNet(parse_wavenet(config, &weights, &mut notices)?),
        "LSTM" => Network::Rnn(parse_lstm(config, &weights)?),
        "Linear" => Network::Linear(parse_linear(config, &weights)?),
        _ => unreachable!("checked above"),
    };
    Ok(Parsed {
        network,
        sample_rate,
        notices,
    })
}

/// Rejects keys of `obj` outside `known`.
fn only_keys(obj: &Map<String, Value>, known: &[&str], what: &str) -> Result<(), String> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!("{what}: unsupported setting \"{k}\"")),
        None => Ok(()),
    }
}

/// Parses an activation given as a name or as `{"type": name, ...}` (newer files).
fn activation(v: &Value, what: &str) -> Result<Activation, String> {
    let (name, obj) = match v {
        Value::String(s) => (s.as_str(), None),
        Value::Object(o) => (
            o.get("type")
                .or_else(|| o.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{what}: activation object without a \"type\""))?,
            Some(o),
        ),
        other => {
            return Err(format!(
                "{what}: activation must be a name, found {}",
                json::type_name(other)
            ))
        }
    };
    let mut act = Activation::from_name(name)
        .ok_or_else(|| format!("{what}: unsupported activation \"{name}\""))?;
    if let (Activation::LeakyReLU { slope }, Some(o)) = (&mut act, obj) {
        if let Some(s) = o.get("negative_slope") {
            *slope = number(s, &format!("{what}: negative_slope"))?;
        }
    }
    Ok(act)
}

/// Checks that a newer-format setting has its 0.5-equivalent value.
fn neutral_setting(
    key: &str,
    v: &Value,
    what: &str,
    channels: usize,
    kernel: &mut Option<usize>,
    gated: &mut Option<bool>,
) -> Result<(), String> {
    let unsupported = |feature: &str| {
        Err(format!(
            "{what}: unsupported feature {feature} (\"{key}\": {v})"
        ))
    };
    let inactive = |v: &Value| match v {
        Value::Null | Value::Bool(false) => true,
        Value::Object(o) => o.get("active").is_some_and(|a| a == &Value::Bool(false)),
        _ => false,
    };
    match key {
        "bottleneck" => {
            if v.as_u64() != Some(channels as u64) {
                return unsupported("bottleneck different from channels");
            }
        }
        "kernel_sizes" => {
            let ks = v
                .as_array()
                .ok_or_else(|| format!("{what}: kernel_sizes must be an array"))?;
            let first = ks.first().and_then(Value::as_u64);
            if first.is_none() || ks.iter().any(|k| k.as_u64() != first) {
                return unsupported("per-layer kernel sizes");
            }
            let k = size(&ks[0], &format!("{what}: kernel_sizes[0]"), 1, MAX_SIZE)?;
            if kernel.is_some_and(|k0| k0 != k) {
                return Err(format!("{what}: kernel_sizes disagree with kernel_size"));
            }
            *kernel = Some(k);
        }
        "gating_mode" | "gating_modes" => {
            let modes: Vec<&Value> = match v {
                Value::Array(a) => a.iter().collect(),
                one => vec![one],
            };
            let mut g = None;
            for m in modes {
                let this = match m.as_str().map(str::to_ascii_lowercase).as_deref() {
                    Some("none") => false,
                    Some("gated") => true,
                    _ => return unsupported("gating mode"),
                };
                if g.is_some_and(|g0| g0 != this) {
                    return unsupported("per-layer gating modes");
                }
                g = Some(this);
            }
            if let Some(g) = g {
                if gated.is_some_and(|g0| g0 != g) {
                    return Err(format!("{what}: gating_mode disagrees with gated"));
                }
                *gated = Some(g);
            }
        }
        "secondary_activation" | "secondary_activations" => {
            let all_sigmoid = match v {
                Value::Null => true,
                Value::Array(a) => a
                    .iter()
                    .all(|x| matches!(activation(x, what), Ok(Activation::Sigmoid)) || x.is_null()),
                x => matches!(activation(x, what), Ok(Activation::Sigmoid)),
            };
            if !all_sigmoid {
                return unsupported("secondary activation other than Sigmoid");
            }
        }
        "groups" | "groups_input" | "groups_input_mixin" => {
            if v.as_u64() != Some(1) {
                return unsupported("grouped convolutions");
            }
        }
        "head_kernel_size" | "head_dilation" => {
            if v.as_u64() != Some(1) {
                return unsupported("head rechannel with kernel size or dilation above 1");
            }
        }
        "head1x1" | "head_1x1" => {
            if !inactive(v) {
                return unsupported("head1x1");
            }
        }
        "layer1x1" | "layer_1x1" => {
            // Active with one group is the 0.5 layout (every layer has its 1×1).
            let standard = match v {
                Value::Null => true,
                Value::Object(o) => {
                    o.get("active").is_none_or(|a| a == &Value::Bool(true))
                        && o.get("groups").is_none_or(|g| g.as_u64() == Some(1))
                }
                _ => false,
            };
            if !standard {
                return unsupported("layer1x1 settings");
            }
        }
        k if k.contains("film") => {
            if !inactive(v) {
                return unsupported("FiLM");
            }
        }
        _ => return Err(format!("{what}: unsupported setting \"{key}\"")),
    }
    Ok(())
}

/// Reads weights off the flat array in order.
struct Reader<'a> {
    w: &'a [f64],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Vec<f64> {
        let v = self.w[self.at..self.at + n].to_vec();
        self.at += n;
        v
    }
    fn conv(&mut self, i: usize, o: usize, k: usize, d: usize, bias: bool) -> Conv1d {
        Conv1d {
            in_channels: i,
            out_channels: o,
            kernel_size: k,
            dilation: d,
            weight: self.take(i * o * k),
            bias: bias.then(|| self.take(o)),
        }
    }
}

/// Settings of one layer array before its weights are read.
struct ArraySpec {
    input_size: usize,
    condition_size: usize,
    head_size: usize,
    channels: usize,
    kernel_size: usize,
    dilations: Vec<usize>,
    activation: Activation,
    gated: bool,
    head_bias: bool,
}

fn parse_array_spec(v: &Value, ai: usize) -> Result<ArraySpec, String> {
    let what = format!("layer array {ai}");
    let o = object(v, &what)?;
    let get = |k: &str| field(o, k, &what);
    let sz = |k: &str| size(get(k)?, &format!("{what}: {k}"), 1, MAX_SIZE);
    let channels = sz("channels")?;
    let mut kernel = o
        .get("kernel_size")
        .map(|k| size(k, &format!("{what}: kernel_size"), 1, MAX_SIZE))
        .transpose()?;
    let mut gated = o
        .get("gated")
        .map(|g| boolean(g, &format!("{what}: gated")))
        .transpose()?;
    const BASE: [&str; 9] = [
        "input_size",
        "condition_size",
        "head_size",
        "channels",
        "kernel_size",
        "dilations",
        "activation",
        "gated",
        "head_bias",
    ];
    for (k, val) in o {
        if !BASE.contains(&k.as_str()) {
            neutral_setting(k, val, &what, channels, &mut kernel, &mut gated)?;
        }
    }
    let dl = get("dilations")?
        .as_array()
        .ok_or_else(|| format!("{what}: dilations must be an array"))?;
    if dl.is_empty() || dl.len() > MAX_SIZE {
        return Err(format!(
            "{what}: {} dilations (expected 1..={MAX_SIZE})",
            dl.len()
        ));
    }
    let dilations = dl
        .iter()
        .enumerate()
        .map(|(i, d)| size(d, &format!("{what}: dilations[{i}]"), 1, MAX_DILATION))
        .collect::<Result<Vec<_>, _>>()?;
    let activation = match o.get("activation") {
        Some(Value::Array(a)) => {
            // Newer files may give one activation per layer; all must agree here.
            let acts = a
                .iter()
                .map(|x| activation(x, &what))
                .collect::<Result<Vec<_>, _>>()?;
            match acts.first() {
                Some(&f) if acts.iter().all(|&x| x == f) => f,
                _ => return Err(format!("{what}: unsupported feature per-layer activations")),
            }
        }
        Some(a) => activation(a, &what)?,
        None => return Err(format!("{what} has no \"activation\"")),
    };
    Ok(ArraySpec {
        input_size: sz("input_size")?,
        condition_size: sz("condition_size")?,
        head_size: sz("head_size")?,
        channels,
        kernel_size: kernel.ok_or_else(|| format!("{what} has no \"kernel_size\""))?,
        dilations,
        activation,
        gated: gated.ok_or_else(|| format!("{what} has no \"gated\""))?,
        head_bias: o
            .get("head_bias")
            .map(|b| boolean(b, &format!("{what}: head_bias")))
            .transpose()?
            .unwrap_or(true),
    })
}

fn parse_wavenet(
    config: &Map<String, Value>,
    weights: &[f64],
    notices: &mut Vec<String>,
) -> Result<WaveNet, String> {
    for (k, v) in config {
        match k.as_str() {
            "layers" | "head" | "head_scale" => {}
            "condition_dsp" if v.is_null() => {}
            "condition_dsp" => {
                return Err("unsupported feature condition_dsp (a conditioning model)".into())
            }
            other => return Err(format!("WaveNet config: unsupported setting \"{other}\"")),
        }
    }
    let layers_v = field(config, "layers", "WaveNet config")?
        .as_array()
        .ok_or("WaveNet config: \"layers\" must be an array")?;
    if layers_v.is_empty() || layers_v.len() > MAX_SIZE {
        return Err(format!("WaveNet config: {} layer arrays", layers_v.len()));
    }
    let specs = layers_v
        .iter()
        .enumerate()
        .map(|(i, v)| parse_array_spec(v, i))
        .collect::<Result<Vec<_>, _>>()?;
    let head_scale = number(field(config, "head_scale", "WaveNet config")?, "head_scale")?;
    let head_spec = match config.get("head") {
        None | Some(Value::Null) => None,
        Some(h) => {
            let o = object(h, "WaveNet head")?;
            only_keys(
                o,
                &["channels", "activation", "num_layers", "out_channels"],
                "WaveNet head",
            )?;
            let sz = |k: &str| {
                size(
                    field(o, k, "WaveNet head")?,
                    &format!("head {k}"),
                    1,
                    MAX_SIZE,
                )
            };
            Some((
                sz("channels")?,
                activation(field(o, "activation", "WaveNet head")?, "WaveNet head")?,
                sz("num_layers")?,
                sz("out_channels")?,
            ))
        }
    };
    // Count the weights (and the streaming history) before allocating anything.
    let mut count: u128 = 0;
    let mut history: u128 = 0;
    for s in &specs {
        let (c, k) = (s.channels as u128, s.kernel_size as u128);
        let mid = if s.gated { 2 * c } else { c };
        count += s.input_size as u128 * c;
        let per_layer = c * mid * k + mid + s.condition_size as u128 * mid + c * c + c;
        count += per_layer * s.dilations.len() as u128;
        count += c * s.head_size as u128 + if s.head_bias { s.head_size as u128 } else { 0 };
        history += s
            .dilations
            .iter()
            .map(|&d| (k - 1) * d as u128 * c)
            .sum::<u128>();
    }
    if let Some((ch, _, n, out)) = head_spec {
        let mut cin = specs.last().map_or(1, |s| s.head_size) as u128;
        for i in 0..n {
            let cout = if i + 1 == n { out } else { ch } as u128;
            count += cin * cout + cout;
            cin = cout;
        }
    }
    count += 1; // head_scale
    if count != weights.len() as u128 {
        return Err(format!(
            "wrong number of weights: the config needs {count}, the file has {}",
            weights.len()
        ));
    }
    if history > MAX_HISTORY {
        return Err(format!(
            "the dilations and channels need {history} history values, more than the supported {MAX_HISTORY}"
        ));
    }
    let last = weights[weights.len() - 1];
    if last != head_scale && last != head_scale as f32 as f64 {
        notices.push(format!(
            "config head_scale is {head_scale} but the last weight is {last}; using {head_scale} as the \
             neural-amp-modeler Python package does (the C++ plugin uses the last weight)"
        ));
    }
    let mut r = Reader { w: weights, at: 0 };
    let layer_arrays = specs
        .iter()
        .map(|s| {
            let c = s.channels;
            let mid = if s.gated { 2 * c } else { c };
            let rechannel = r.conv(s.input_size, c, 1, 1, false);
            let layers = s
                .dilations
                .iter()
                .map(|&d| WaveNetLayer {
                    conv: r.conv(c, mid, s.kernel_size, d, true),
                    input_mixer: r.conv(s.condition_size, mid, 1, 1, false),
                    one_by_one: r.conv(c, c, 1, 1, true),
                })
                .collect();
            WaveNetLayerArray {
                input_size: s.input_size,
                condition_size: s.condition_size,
                head_size: s.head_size,
                channels: c,
                kernel_size: s.kernel_size,
                activation: s.activation,
                gated: s.gated,
                rechannel,
                layers,
                head_rechannel: r.conv(c, s.head_size, 1, 1, s.head_bias),
            }
        })
        .collect();
    let head = head_spec.map(|(ch, act, n, out)| {
        let mut cin = specs.last().map_or(1, |s| s.head_size);
        WaveNetHead {
            activation: act,
            layers: (0..n)
                .map(|i| {
                    let cout = if i + 1 == n { out } else { ch };
                    let conv = r.conv(cin, cout, 1, 1, true);
                    cin = cout;
                    conv
                })
                .collect(),
        }
    });
    let net = WaveNet {
        layer_arrays,
        head,
        head_scale: vec![head_scale],
    };
    net.validate()?;
    Ok(net)
}

fn parse_lstm(config: &Map<String, Value>, weights: &[f64]) -> Result<Rnn, String> {
    only_keys(
        config,
        &[
            "input_size",
            "hidden_size",
            "num_layers",
            "train_burn_in",
            "train_truncate",
        ],
        "LSTM config",
    )?;
    let input = match config.get("input_size") {
        None => 1,
        Some(v) => size(v, "LSTM config: input_size", 1, 1)?,
    };
    let h = size(
        field(config, "hidden_size", "LSTM config")?,
        "LSTM config: hidden_size",
        1,
        MAX_SIZE,
    )?;
    let n = match config.get("num_layers") {
        None => 1,
        Some(v) => size(v, "LSTM config: num_layers", 1, 1024)?,
    };
    let (h128, n128) = (h as u128, n as u128);
    let count = (4 * h128 * (input as u128 + h128) + 6 * h128)
        + (n128 - 1) * (4 * h128 * (2 * h128) + 6 * h128)
        + h128
        + 1;
    if count != weights.len() as u128 {
        return Err(format!(
            "wrong number of weights: the config needs {count}, the file has {}",
            weights.len()
        ));
    }
    let mut r = Reader { w: weights, at: 0 };
    let layers = (0..n)
        .map(|li| {
            let i = if li == 0 { input } else { h };
            let m = r.take(4 * h * (i + h));
            let (mut w_ih, mut w_hh) =
                (Vec::with_capacity(4 * h * i), Vec::with_capacity(4 * h * h));
            for row in m.chunks(i + h) {
                w_ih.extend_from_slice(&row[..i]);
                w_hh.extend_from_slice(&row[i..]);
            }
            RnnLayer {
                input_size: i,
                hidden_size: h,
                w_ih,
                w_hh,
                b_ih: Some(r.take(4 * h)),
                b_hh: None,
                initial_hidden: Some(r.take(h)),
                initial_cell: Some(r.take(h)),
            }
        })
        .collect();
    let rnn = Rnn {
        cell: Cell::Lstm,
        layers,
        head_weight: r.take(h),
        head_bias: Some(r.take(1)),
        skip: false,
        knobs: vec![],
    };
    rnn.validate()?;
    Ok(rnn)
}

fn parse_linear(config: &Map<String, Value>, weights: &[f64]) -> Result<Linear, String> {
    only_keys(config, &["receptive_field", "bias"], "Linear config")?;
    let n = size(
        field(config, "receptive_field", "Linear config")?,
        "Linear config: receptive_field",
        1,
        json::MAX_WEIGHTS,
    )?;
    let bias = match config.get("bias") {
        None => false,
        Some(b) => boolean(b, "Linear config: bias")?,
    };
    let count = n as u128 + bias as u128;
    if count != weights.len() as u128 {
        return Err(format!(
            "wrong number of weights: the config needs {count}, the file has {}",
            weights.len()
        ));
    }
    Ok(Linear {
        weights: weights[..n].to_vec(),
        bias: bias.then(|| weights[n..].to_vec()),
    })
}

/// The flat `weights` array for `net` in NAM's order (`head_scale` last for WaveNet).
pub(crate) fn flat_weights(net: &Network) -> Vec<f64> {
    match net {
        Network::WaveNet(_) | Network::Linear(_) => net.params(),
        Network::Rnn(r) => {
            let mut out = Vec::with_capacity(net.num_params());
            for l in &r.layers {
                let (i, h) = (l.input_size, l.hidden_size);
                for row in 0..4 * h {
                    out.extend_from_slice(&l.w_ih[row * i..(row + 1) * i]);
                    out.extend_from_slice(&l.w_hh[row * h..(row + 1) * h]);
                }
                let zeros = vec![0.0; 4 * h];
                let bi = l.b_ih.as_ref().unwrap_or(&zeros);
                let bh = l.b_hh.as_ref().unwrap_or(&zeros);
                out.extend(bi.iter().zip(bh).map(|(a, b)| a + b));
                out.extend_from_slice(l.initial_hidden.as_ref().unwrap_or(&vec![0.0; h]));
                out.extend_from_slice(l.initial_cell.as_ref().unwrap_or(&vec![0.0; h]));
            }
            out.extend_from_slice(&r.head_weight);
            out.push(r.head_bias.as_ref().map_or(0.0, |b| b[0]));
            out
        }
    }
}

/// Writes `net`'s weights into `doc` (a `.nam` document that `original` was parsed from),
/// changing only the weights that differ. Returns how many values changed.
pub(crate) fn write(net: &Network, original: &Network, doc: &mut Value) -> Result<usize, String> {
    let shape_ok = match (net, original) {
        (Network::WaveNet(a), Network::WaveNet(b)) => {
            a.num_params() == b.num_params() && a.layer_arrays.len() == b.layer_arrays.len()
        }
        (Network::Rnn(a), Network::Rnn(b)) => {
            a.cell == Cell::Lstm
                && !a.skip
                && a.layers.len() == b.layers.len()
                && a.hidden_size() == b.hidden_size()
                && a.head_bias.is_some()
        }
        (Network::Linear(a), Network::Linear(b)) => {
            a.weights.len() == b.weights.len() && a.bias.is_some() == b.bias.is_some()
        }
        _ => false,
    };
    if !shape_ok {
        return Err(
            "the network's architecture differs from the file's; only weights can change".into(),
        );
    }
    let new = flat_weights(net);
    let old = flat_weights(original);
    let top = doc.as_object_mut().ok_or("the document is not an object")?;
    let mut changed = 0;
    if let Network::WaveNet(w) = net {
        let hs = w.head_scale[0];
        if hs.to_bits() != old[old.len() - 1].to_bits() {
            changed += 1;
            if let Some(cfg) = top.get_mut("config").and_then(Value::as_object_mut) {
                cfg.insert(
                    "head_scale".into(),
                    serde_json::Number::from_f64(hs).map_or(Value::Null, Value::Number),
                );
            }
        }
    }
    let arr = top
        .get_mut("weights")
        .and_then(Value::as_array_mut)
        .ok_or("the document has no weights array")?;
    if arr.len() != new.len() {
        return Err("the document's weights array has another length".into());
    }
    let is_wavenet = matches!(net, Network::WaveNet(_));
    for (i, slot) in arr.iter_mut().enumerate() {
        if new[i].to_bits() != old[i].to_bits() {
            *slot = json::weight_value(new[i]);
            if !(is_wavenet && i + 1 == new.len()) {
                changed += 1;
            }
        }
    }
    Ok(changed)
}
