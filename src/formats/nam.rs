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
//! Newer files (0.6, 0.7, neural-amp-modeler 0.13) add per-layer settings: `kernel_sizes`,
//! per-layer activations (names or `{"type", parameters}` objects), `gating_mode` (none /
//! gated / blended) with `secondary_activation`, a layer `head` {out_channels, kernel_size,
//! bias}, `bottleneck`, `layer1x1` and `head1x1` {active, groups, out_channels},
//! `groups_input` / `groups_input_mixin`, and a post-head with `kernel_sizes`. Their weights
//! follow the same order, with `layer1x1` and `head1x1` (when active) after the input mixer.
//! Active FiLM slots and `condition_dsp` are refused by name.

use serde_json::{Map, Value};

use super::json::{self, boolean, field, number, numbers, object, size, MAX_DILATION, MAX_SIZE};
use crate::models::{
    Activation, Cell, Conv1d, Film, FilmSlot, Gating, LayerFilms, Linear, Network, Rnn, RnnLayer,
    WaveNet, WaveNetHead, WaveNetLayer, WaveNetLayerArray,
};

/// What a `.nam` document describes.
pub(crate) struct Parsed {
    pub network: Network,
    pub sample_rate: Option<f64>,
    pub notices: Vec<String>,
    /// A `SlimmableContainer`'s submodels (`max_value`, network), in the file's order;
    /// `network` is then the last one (the full-size model, the plugin's default).
    pub submodels: Vec<(f64, Network)>,
}

/// Most submodels accepted in a container.
const MAX_SUBMODELS: usize = 64;

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
    if arch == "SlimmableContainer" {
        return parse_container(top, notices);
    }
    if !["WaveNet", "LSTM", "Linear"].contains(&arch) {
        return Err(format!(
            "unsupported architecture \"{arch}\" (supported: WaveNet, LSTM, Linear, SlimmableContainer)"
        ));
    }
    let config = object(field(top, "config", "the file")?, "\"config\"")?;
    let weights = numbers(field(top, "weights", "the file")?, "weights")?;
    let sample_rate = sample_rate_of(top)?;
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
        submodels: Vec::new(),
    })
}

/// A file's `sample_rate` (absent or null: none).
fn sample_rate_of(top: &Map<String, Value>) -> Result<Option<f64>, String> {
    match top.get("sample_rate") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let sr = number(v, "sample_rate")?;
            if !(1.0..=1e7).contains(&sr) {
                return Err(format!("sample_rate {sr} is not a plausible rate"));
            }
            Ok(Some(sr))
        }
    }
}

/// A NAM `SlimmableContainer` (neural-amp-modeler 0.13's A2 export): `config.submodels` is a
/// list of `{max_value, model}` with `model` a complete `.nam` document; the top-level
/// `weights` is empty. NeuralAmpModelerCore requires ascending `max_value`s with the last at
/// least 1, and equal sample rates.
fn parse_container(top: &Map<String, Value>, mut notices: Vec<String>) -> Result<Parsed, String> {
    let what = "SlimmableContainer";
    let config = object(field(top, "config", what)?, "SlimmableContainer config")?;
    only_keys(config, &["submodels"], "SlimmableContainer config")?;
    if let Some(w) = top.get("weights") {
        if w.as_array().is_none_or(|a| !a.is_empty()) {
            return Err("SlimmableContainer: the top-level weights must be empty".into());
        }
    }
    let entries = field(config, "submodels", what)?
        .as_array()
        .ok_or("SlimmableContainer: \"submodels\" must be an array")?;
    if entries.is_empty() || entries.len() > MAX_SUBMODELS {
        return Err(format!(
            "SlimmableContainer: {} submodels (expected 1..={MAX_SUBMODELS})",
            entries.len()
        ));
    }
    let sample_rate = sample_rate_of(top)?;
    let mut submodels = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let sw = format!("submodel {i}");
        let o = object(e, &sw)?;
        only_keys(o, &["max_value", "model"], &sw)?;
        let max_value = number(field(o, "max_value", &sw)?, &format!("{sw} max_value"))?;
        if let Some((prev, _)) = submodels.last() {
            if max_value <= *prev {
                return Err(format!(
                    "{sw}: max_value {max_value} not above the previous {prev} (submodels must be sorted by ascending max_value)"
                ));
            }
        }
        let model = field(o, "model", &sw)?;
        if model.get("architecture").and_then(Value::as_str) == Some("SlimmableContainer") {
            return Err(format!("{sw}: nested containers are not supported"));
        }
        let p = parse(model).map_err(|e| format!("{sw}: {e}"))?;
        if let (Some(a), Some(b)) = (sample_rate, p.sample_rate) {
            if a != b {
                return Err(format!(
                    "{sw}: sample rate {b} differs from the container's {a}"
                ));
            }
        }
        notices.extend(p.notices.into_iter().map(|n| format!("{sw}: {n}")));
        submodels.push((max_value, p.network));
    }
    let last = submodels.last().map_or(0.0, |s| s.0);
    if last < 1.0 {
        return Err(format!(
            "SlimmableContainer: the last submodel's max_value is {last}, below 1"
        ));
    }
    let rates: Vec<f64> = entries
        .iter()
        .filter_map(|e| e.get("model").and_then(Value::as_object))
        .filter_map(|m| sample_rate_of(m).ok().flatten())
        .collect();
    if rates.windows(2).any(|w| w[0] != w[1]) {
        return Err("SlimmableContainer: the submodels' sample rates differ".into());
    }
    Ok(Parsed {
        network: submodels.last().expect("at least one").1.clone(),
        sample_rate: sample_rate.or(rates.first().copied()),
        notices,
        submodels,
    })
}

/// Writes the networks of a container's submodels into `doc` (a `SlimmableContainer`
/// document that `original` was parsed from), replacing only weights: each submodel's `config`
/// stays byte-identical (hosts pick engines by its exact shape), so a changed `head_scale` is
/// folded into the last head rechannel (the output is linear in it) and the config's
/// `head_scale` and trailing weight keep their values. Returns how many values changed.
pub(crate) fn write_container(
    nets: &[&Network],
    original: &[(f64, Network)],
    doc: &mut Value,
) -> Result<usize, String> {
    if nets.len() != original.len() {
        return Err("the container's submodels differ in number".into());
    }
    let entries = doc
        .pointer_mut("/config/submodels")
        .and_then(Value::as_array_mut)
        .ok_or("the document has no submodels")?;
    let mut changed = 0;
    for (i, ((net, (_, orig)), entry)) in nets.iter().zip(original).zip(entries).enumerate() {
        let mut net = (*net).clone();
        if let (Network::WaveNet(w), Network::WaveNet(o)) = (&mut net, orig) {
            let (new, old) = (w.head_scale[0], o.head_scale[0]);
            if new.to_bits() != old.to_bits() {
                if w.head.is_some() || old == 0.0 {
                    return Err(format!(
                        "submodel {i}: head_scale changed and cannot be folded into the weights (post-head or zero scale); the config would change"
                    ));
                }
                let r = new / old;
                let hr = &mut w.layer_arrays.last_mut().expect("validated").head_rechannel;
                hr.weight.iter_mut().for_each(|v| *v *= r);
                hr.bias.iter_mut().flatten().for_each(|v| *v *= r);
                w.head_scale[0] = old;
            }
        }
        let model = entry
            .get_mut("model")
            .ok_or_else(|| format!("submodel {i} has no model"))?;
        changed += write(&net, orig, model).map_err(|e| format!("submodel {i}: {e}"))?;
    }
    Ok(changed)
}

/// Rejects keys of `obj` outside `known`.
fn only_keys(obj: &Map<String, Value>, known: &[&str], what: &str) -> Result<(), String> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(format!("{what}: unsupported setting \"{k}\"")),
        None => Ok(()),
    }
}

/// Parses an activation given as a name or as `{"type": name, ...parameters}` (0.6/0.7
/// files; `{"name": ...}` is the Python package's own spelling).
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
    let unsupported = || format!("{what}: unsupported activation \"{name}\"");
    // torch's PReLU with one slope is a LeakyReLU.
    let mut act = match name {
        "PReLU" => Activation::LeakyReLU { slope: 0.25 },
        _ => Activation::from_name(name).ok_or_else(unsupported)?,
    };
    let Some(o) = obj else { return Ok(act) };
    let param = |k: &str| {
        o.get(k)
            .map(|x| number(x, &format!("{what}: {name} {k}")))
            .transpose()
    };
    let known: &[&str] = match &mut act {
        Activation::LeakyReLU { slope } => {
            if let Some(s) = param("negative_slope")? {
                *slope = s;
            }
            if let Some(v) = o.get("negative_slopes") {
                let slopes = numbers(v, &format!("{what}: {name} negative_slopes"))?;
                match slopes.first() {
                    Some(&f) if slopes.iter().all(|&x| x == f) => *slope = f,
                    _ => {
                        return Err(format!(
                            "{what}: unsupported feature PReLU with per-channel slopes"
                        ))
                    }
                }
            }
            &["negative_slope", "negative_slopes", "num_parameters"]
        }
        Activation::Hardtanh | Activation::LeakyHardtanh { .. } => {
            let is_leaky = matches!(act, Activation::LeakyHardtanh { .. });
            let (mut lo, mut hi, mut sl, mut sh) = match act {
                Activation::LeakyHardtanh {
                    min_val,
                    max_val,
                    min_slope,
                    max_slope,
                } => (min_val, max_val, min_slope, max_slope),
                _ => (-1.0, 1.0, 0.0, 0.0),
            };
            lo = param("min_val")?.unwrap_or(lo);
            hi = param("max_val")?.unwrap_or(hi);
            if is_leaky {
                sl = param("min_slope")?.unwrap_or(sl);
                sh = param("max_slope")?.unwrap_or(sh);
            }
            if lo.is_nan() || hi.is_nan() || lo > hi {
                return Err(format!("{what}: {name} min_val {lo} above max_val {hi}"));
            }
            act = if !is_leaky && lo == -1.0 && hi == 1.0 {
                Activation::Hardtanh
            } else {
                Activation::LeakyHardtanh {
                    min_val: lo,
                    max_val: hi,
                    min_slope: sl,
                    max_slope: sh,
                }
            };
            &["min_val", "max_val", "min_slope", "max_slope"]
        }
        _ => &[],
    };
    match o
        .keys()
        .find(|k| !["type", "name"].contains(&k.as_str()) && !known.contains(&k.as_str()))
    {
        Some(k) => Err(format!(
            "{what}: unsupported parameter \"{k}\" of activation \"{name}\""
        )),
        None => Ok(act),
    }
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
    fn conv(&mut self, s: &ConvSpec) -> Conv1d {
        Conv1d {
            in_channels: s.i,
            out_channels: s.o,
            kernel_size: s.k,
            dilation: s.d,
            weight: self.take(s.i / s.groups * s.o * s.k),
            bias: s.bias.then(|| self.take(s.o)),
            groups: s.groups,
        }
    }
}

/// The shape of a convolution before its weights are read.
#[derive(Clone, Copy)]
struct ConvSpec {
    i: usize,
    o: usize,
    k: usize,
    d: usize,
    bias: bool,
    groups: usize,
}

impl ConvSpec {
    fn new(i: usize, o: usize, k: usize, d: usize, bias: bool) -> Self {
        ConvSpec {
            i,
            o,
            k,
            d,
            bias,
            groups: 1,
        }
    }
    fn grouped(self, groups: usize, what: &str) -> Result<Self, String> {
        if groups == 0 || !self.i.is_multiple_of(groups) || !self.o.is_multiple_of(groups) {
            return Err(format!(
                "{what}: {groups} groups do not divide {} inputs and {} outputs",
                self.i, self.o
            ));
        }
        Ok(ConvSpec { groups, ..self })
    }
    fn count(&self) -> u128 {
        (self.i / self.groups) as u128 * self.o as u128 * self.k as u128
            + if self.bias { self.o as u128 } else { 0 }
    }
    fn history(&self) -> u128 {
        (self.k as u128 - 1) * self.d as u128 * self.i as u128
    }
}

/// One layer before its weights are read.
struct LayerSpec {
    conv: ConvSpec,
    mixer: ConvSpec,
    activation: Activation,
    gating: Gating,
    layer1x1: Option<ConvSpec>,
    head1x1: Option<ConvSpec>,
    /// Active FiLM slots and their convolutions (condition → (1 + shift) · dim).
    films: Vec<(FilmSlot, bool, ConvSpec)>,
}

/// A layer array before its weights are read.
struct ArraySpec {
    input_size: usize,
    condition_size: usize,
    channels: usize,
    rechannel: ConvSpec,
    layers: Vec<LayerSpec>,
    head_rechannel: ConvSpec,
}

/// `o[key]` as a flag, `default` when absent.
fn flag_or(o: &Map<String, Value>, key: &str, what: &str, default: bool) -> Result<bool, String> {
    o.get(key)
        .map_or(Ok(default), |v| boolean(v, &format!("{what}: {key}")))
}

/// `o[key]` as a size, `None` when absent or null.
fn size_opt(o: &Map<String, Value>, key: &str, what: &str) -> Result<Option<usize>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => size(v, &format!("{what}: {key}"), 1, MAX_SIZE).map(Some),
    }
}

/// A FiLM slot's settings (`{active, shift, groups}`); `None` when inactive. As the
/// neural-amp-modeler package reads them: `active` defaults to false, `shift` to true.
fn film_settings(v: &Value, what: &str) -> Result<Option<(bool, usize)>, String> {
    match v {
        Value::Null | Value::Bool(false) => return Ok(None),
        Value::Object(_) => {}
        _ => return Err(format!("{what} must be an object")),
    }
    let o = object(v, what)?;
    only_keys(o, &["active", "shift", "groups"], what)?;
    if !flag_or(o, "active", what, false)? {
        return Ok(None);
    }
    let shift = flag_or(o, "shift", what, true)?;
    Ok(Some((shift, size_opt(o, "groups", what)?.unwrap_or(1))))
}

/// A per-layer setting: one value for every layer, or an array of one per layer.
fn per_layer<'a>(v: &'a Value, n: usize, what: &str, key: &str) -> Result<Vec<&'a Value>, String> {
    match v {
        Value::Array(a) if a.len() == n => Ok(a.iter().collect()),
        Value::Array(a) => Err(format!(
            "{what}: {key} has {} entries for {n} layers",
            a.len()
        )),
        one => Ok(vec![one; n]),
    }
}

/// `{active, groups, out_channels}` of `layer1x1` / `head1x1`.
fn one_by_one_settings(
    v: &Value,
    what: &str,
    default_active: bool,
) -> Result<(bool, usize, Option<usize>), String> {
    if v.is_null() {
        return Ok((default_active, 1, None));
    }
    let o = object(v, what)?;
    only_keys(o, &["active", "groups", "out_channels"], what)?;
    Ok((
        flag_or(o, "active", what, default_active)?,
        size_opt(o, "groups", what)?.unwrap_or(1),
        size_opt(o, "out_channels", what)?,
    ))
}

fn parse_array_spec(v: &Value, ai: usize) -> Result<ArraySpec, String> {
    let what = format!("layer array {ai}");
    let o = object(v, &what)?;
    let get = |k: &str| field(o, k, &what);
    let sz = |k: &str| size(get(k)?, &format!("{what}: {k}"), 1, MAX_SIZE);
    let unsupported = |feature: String| Err(format!("{what}: unsupported feature {feature}"));
    const KNOWN: [&str; 26] = [
        "input_size",
        "condition_size",
        "head_size",
        "channels",
        "kernel_size",
        "kernel_sizes",
        "dilations",
        "activation",
        "gated",
        "gating_mode",
        "secondary_activation",
        "head_bias",
        "head",
        "bottleneck",
        "head1x1",
        "head_1x1",
        "layer1x1",
        "layer_1x1",
        "groups",
        "groups_input",
        "groups_input_mixin",
        "head_kernel_size",
        "head_dilation",
        "slimmable",
        "film_params",
        "condition_dsp",
    ];
    for k in o.keys() {
        if !KNOWN.contains(&k.as_str()) && !FilmSlot::ALL.iter().any(|s| s.key() == k) {
            return Err(format!("{what}: unsupported setting \"{k}\""));
        }
    }
    if o.get("film_params").is_some_and(|f| !f.is_null()) {
        // The package's init format; its exporter writes the flat slot keys.
        return unsupported(
            "FiLM as \"film_params\" (a .nam file states each slot by its key)".into(),
        );
    }
    let films: Vec<(FilmSlot, bool, usize)> = FilmSlot::ALL
        .into_iter()
        .filter_map(|slot| {
            let v = o.get(slot.key())?;
            film_settings(v, &format!("{what}: {}", slot.key()))
                .map(|f| f.map(|(shift, groups)| (slot, shift, groups)))
                .transpose()
        })
        .collect::<Result<_, _>>()?;
    if o.get("condition_dsp").is_some_and(|f| !f.is_null()) {
        return unsupported("condition_dsp".into());
    }
    for k in ["head_kernel_size", "head_dilation"] {
        if o.get(k).is_some_and(|v| v.as_u64() != Some(1)) {
            return unsupported(format!("\"{k}\" above 1"));
        }
    }
    let input_size = sz("input_size")?;
    let condition_size = sz("condition_size")?;
    let channels = sz("channels")?;
    let bottleneck = size_opt(o, "bottleneck", &what)?.unwrap_or(channels);
    let dl = get("dilations")?
        .as_array()
        .ok_or_else(|| format!("{what}: dilations must be an array"))?;
    if dl.is_empty() || dl.len() > MAX_SIZE {
        return Err(format!(
            "{what}: {} dilations (expected 1..={MAX_SIZE})",
            dl.len()
        ));
    }
    let n = dl.len();
    let dilations = dl
        .iter()
        .enumerate()
        .map(|(i, d)| size(d, &format!("{what}: dilations[{i}]"), 1, MAX_DILATION))
        .collect::<Result<Vec<_>, _>>()?;
    let kernel_list = |v: &Value| {
        per_layer(v, n, &what, "kernel_sizes")?
            .into_iter()
            .enumerate()
            .map(|(i, k)| size(k, &format!("{what}: kernel_sizes[{i}]"), 1, MAX_SIZE))
            .collect::<Result<Vec<_>, _>>()
    };
    let kernels = match (o.get("kernel_sizes"), o.get("kernel_size")) {
        (Some(ks), k) => {
            let kernels = kernel_list(ks)?;
            if k.is_some_and(|k| kernel_list(k).ok().as_ref() != Some(&kernels)) {
                return Err(format!("{what}: kernel_sizes and kernel_size disagree"));
            }
            kernels
        }
        (None, Some(k)) => kernel_list(k)?,
        (None, None) => return Err(format!("{what} has no \"kernel_size\"")),
    };
    let acts = per_layer(
        o.get("activation")
            .ok_or_else(|| format!("{what} has no \"activation\""))?,
        n,
        &what,
        "activation",
    )?
    .into_iter()
    .map(|a| activation(a, &what))
    .collect::<Result<Vec<_>, _>>()?;
    // Gating: 0.5 `gated` (Sigmoid secondary) or 0.7 `gating_mode` + `secondary_activation`.
    let gated_05 = o
        .get("gated")
        .map(|g| boolean(g, &format!("{what}: gated")))
        .transpose()?;
    let modes: Vec<String> = match o.get("gating_mode").filter(|v| !v.is_null()) {
        Some(m) => per_layer(m, n, &what, "gating_mode")?
            .into_iter()
            .map(|m| {
                m.as_str()
                    .map(str::to_ascii_lowercase)
                    .ok_or_else(|| format!("{what}: gating_mode must be a name"))
            })
            .collect::<Result<_, _>>()?,
        None => vec![
            if gated_05 == Some(true) {
                "gated"
            } else {
                "none"
            }
            .to_string();
            n
        ],
    };
    if let Some(g) = gated_05 {
        // 0.5 `gated` means a Sigmoid-gated product; a 0.7 mode must agree with it.
        if modes.iter().any(|m| m != if g { "gated" } else { "none" }) {
            return Err(format!("{what}: gating_mode disagrees with gated"));
        }
    }
    let null = Value::Null;
    let secondaries = per_layer(
        o.get("secondary_activation").unwrap_or(&null),
        n,
        &what,
        "secondary_activation",
    )?;
    let (l1_active, l1_groups, l1_out) = one_by_one_settings(
        o.get("layer1x1")
            .or_else(|| o.get("layer_1x1"))
            .unwrap_or(&null),
        &format!("{what}: layer1x1"),
        true,
    )?;
    if l1_out.is_some_and(|c| c != channels) {
        return Err(format!(
            "{what}: layer1x1 out_channels differ from channels"
        ));
    }
    let (h1_active, h1_groups, h1_out) = one_by_one_settings(
        o.get("head1x1")
            .or_else(|| o.get("head_1x1"))
            .unwrap_or(&null),
        &format!("{what}: head1x1"),
        false,
    )?;
    let groups_of = |k: &str| size_opt(o, k, &what).map(|g| g.unwrap_or(1));
    let groups_input = match (o.get("groups_input"), o.get("groups")) {
        (Some(_), _) => groups_of("groups_input")?,
        (None, _) => groups_of("groups")?,
    };
    let groups_mixin = groups_of("groups_input_mixin")?;
    // The layer head: 0.7 `head` {out_channels, kernel_size, bias}, or 0.5 `head_size` and
    // `head_bias` (kernel 1).
    let (head_out, head_kernel, head_bias) = match o.get("head") {
        Some(h) => {
            let ho = object(h, &format!("{what}: head"))?;
            only_keys(
                ho,
                &["out_channels", "kernel_size", "bias"],
                &format!("{what}: head"),
            )?;
            let hw = format!("{what}: head");
            let out = size(
                field(ho, "out_channels", &hw)?,
                &format!("{hw} out_channels"),
                1,
                MAX_SIZE,
            )?;
            let k = match ho.get("kernel_size") {
                None => 1,
                Some(k) => size(k, &format!("{hw} kernel_size"), 1, MAX_SIZE)?,
            };
            let bias = match ho.get("bias") {
                None => true,
                Some(b) => boolean(b, &format!("{hw} bias"))?,
            };
            if o.get("head_size")
                .is_some_and(|s| s.as_u64() != Some(out as u64))
            {
                return Err(format!(
                    "{what}: head_size disagrees with head out_channels"
                ));
            }
            (out, k, bias)
        }
        None => (
            sz("head_size")?,
            1,
            o.get("head_bias")
                .map(|b| boolean(b, &format!("{what}: head_bias")))
                .transpose()?
                .unwrap_or(true),
        ),
    };
    let head_width = if h1_active {
        h1_out.unwrap_or(1)
    } else {
        bottleneck
    };
    if !l1_active && bottleneck != channels {
        return Err(format!(
            "{what}: without layer1x1 the bottleneck ({bottleneck}) must equal the channels ({channels})"
        ));
    }
    let mut layers = Vec::with_capacity(n);
    for li in 0..n {
        let lw = format!("{what} layer {li}");
        let secondary = match secondaries[li] {
            Value::Null => Activation::Sigmoid,
            s => activation(s, &lw)?,
        };
        let gating = match modes[li].as_str() {
            "none" => Gating::None,
            "gated" => Gating::Gated(secondary),
            "blended" => Gating::Blended(secondary),
            other => return unsupported(format!("gating mode \"{other}\"")),
        };
        let mid = if gating.paired() {
            2 * bottleneck
        } else {
            bottleneck
        };
        layers.push(LayerSpec {
            conv: ConvSpec::new(channels, mid, kernels[li], dilations[li], true)
                .grouped(groups_input, &format!("{lw} conv (groups_input)"))?,
            mixer: ConvSpec::new(condition_size, mid, 1, 1, false).grouped(
                groups_mixin,
                &format!("{lw} input mixer (groups_input_mixin)"),
            )?,
            activation: acts[li],
            gating,
            layer1x1: l1_active
                .then(|| {
                    ConvSpec::new(bottleneck, channels, 1, 1, true)
                        .grouped(l1_groups, &format!("{lw} layer1x1"))
                })
                .transpose()?,
            head1x1: h1_active
                .then(|| {
                    ConvSpec::new(bottleneck, head_width, 1, 1, true)
                        .grouped(h1_groups, &format!("{lw} head1x1"))
                })
                .transpose()?,
            films: films
                .iter()
                .map(|&(slot, shift, groups)| {
                    let dim = slot.width(channels, mid, bottleneck, condition_size, head_width);
                    let fw = format!("{lw} {}", slot.key());
                    match slot {
                        FilmSlot::Layer1x1Post if !l1_active => {
                            return Err(format!("{fw}: active while layer1x1 is not"))
                        }
                        FilmSlot::Head1x1Post if !h1_active => {
                            return Err(format!("{fw}: active while head1x1 is not"))
                        }
                        _ => {}
                    }
                    let out = if shift { 2 * dim } else { dim };
                    let conv =
                        ConvSpec::new(condition_size, out, 1, 1, true).grouped(groups, &fw)?;
                    Ok((slot, shift, conv))
                })
                .collect::<Result<_, String>>()?,
        });
    }
    Ok(ArraySpec {
        input_size,
        condition_size,
        channels,
        rechannel: ConvSpec::new(input_size, channels, 1, 1, false),
        layers,
        head_rechannel: ConvSpec::new(head_width, head_out, head_kernel, 1, head_bias),
    })
}

/// The post-head's convolutions: 0.7 `kernel_sizes` or 0.5 `num_layers` (kernel 1).
fn parse_post_head(h: &Value, head_in: usize) -> Result<(Activation, Vec<ConvSpec>), String> {
    let what = "WaveNet head";
    let o = object(h, what)?;
    only_keys(
        o,
        &[
            "channels",
            "activation",
            "num_layers",
            "out_channels",
            "kernel_sizes",
            "in_channels",
        ],
        what,
    )?;
    let sz = |k: &str| size(field(o, k, what)?, &format!("head {k}"), 1, MAX_SIZE);
    let kernels = match (o.get("kernel_sizes"), o.get("num_layers")) {
        (Some(ks), nl) => {
            let a = ks
                .as_array()
                .ok_or("WaveNet head: kernel_sizes must be an array")?;
            if a.is_empty() || a.len() > MAX_SIZE {
                return Err(format!("WaveNet head: {} kernel sizes", a.len()));
            }
            if nl.is_some_and(|nl| nl.as_u64() != Some(a.len() as u64)) {
                return Err("WaveNet head: num_layers disagrees with kernel_sizes".into());
            }
            a.iter()
                .map(|k| size(k, "head kernel_sizes", 1, MAX_SIZE))
                .collect::<Result<Vec<_>, _>>()?
        }
        (None, _) => vec![1; sz("num_layers")?],
    };
    if o.get("in_channels")
        .is_some_and(|c| c.as_u64() != Some(head_in as u64))
    {
        return Err("WaveNet head: in_channels disagrees with the last layer array".into());
    }
    let (ch, out) = (sz("channels")?, sz("out_channels")?);
    let act = activation(field(o, "activation", what)?, what)?;
    let mut cin = head_in;
    let n = kernels.len();
    let convs = kernels
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            let cout = if i + 1 == n { out } else { ch };
            let c = ConvSpec::new(cin, cout, k, 1, true);
            cin = cout;
            c
        })
        .collect();
    Ok((act, convs))
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
    let head_in = specs.last().map_or(1, |s| s.head_rechannel.o);
    let head_spec = match config.get("head") {
        None | Some(Value::Null) => None,
        Some(h) => Some(parse_post_head(h, head_in)?),
    };
    // Count the weights (and the streaming history) before allocating anything.
    let mut count: u128 = 0;
    let mut history: u128 = 0;
    for s in &specs {
        count += s.rechannel.count() + s.head_rechannel.count();
        history += s.head_rechannel.history();
        for l in &s.layers {
            count += l.conv.count() + l.mixer.count();
            count += l
                .layer1x1
                .iter()
                .chain(&l.head1x1)
                .chain(l.films.iter().map(|(_, _, c)| c))
                .map(ConvSpec::count)
                .sum::<u128>();
            history += l.conv.history();
        }
    }
    for c in head_spec.iter().flat_map(|(_, c)| c) {
        count += c.count();
        history += c.history();
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
            let rechannel = r.conv(&s.rechannel);
            let layers = s
                .layers
                .iter()
                .map(|l| WaveNetLayer {
                    conv: r.conv(&l.conv),
                    input_mixer: r.conv(&l.mixer),
                    activation: l.activation,
                    gating: l.gating,
                    one_by_one: l.layer1x1.as_ref().map(|c| r.conv(c)),
                    head1x1: l.head1x1.as_ref().map(|c| r.conv(c)),
                    // Read after the 1x1s, in slot order, as the package exports them.
                    films: {
                        let mut films = LayerFilms::default();
                        for (slot, shift, c) in &l.films {
                            films.0[*slot as usize] = Some(Film {
                                conv: r.conv(c),
                                shift: *shift,
                            });
                        }
                        films
                    },
                })
                .collect();
            WaveNetLayerArray {
                input_size: s.input_size,
                condition_size: s.condition_size,
                head_size: s.head_rechannel.o,
                channels: s.channels,
                rechannel,
                layers,
                head_rechannel: r.conv(&s.head_rechannel),
            }
        })
        .collect();
    let head = head_spec.map(|(act, convs)| WaveNetHead {
        activation: act,
        layers: convs.iter().map(|c| r.conv(c)).collect(),
    });
    let net = WaveNet {
        layer_arrays,
        head,
        head_scale: vec![head_scale],
    };
    net.validate()?;
    let skipped_by_core = net.layer_arrays.iter().any(|a| {
        a.layers.iter().any(|l| {
            l.films.get(FilmSlot::Layer1x1Post).is_some() && !matches!(l.gating, Gating::Blended(_))
        })
    });
    if skipped_by_core {
        // Measured with tools/check_with_nam_core.sh: NeuralAmpModelerCore applies this FiLM
        // only in blended layers.
        notices.push(
            "layer1x1_post_film is active in a layer whose gating_mode is none or gated: dealias \
             applies it as the neural-amp-modeler package does, but NeuralAmpModelerCore (the \
             plugin) skips it there, so the plugin plays this file differently"
                .into(),
        );
    }
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

/// A `.nam` document (file format 0.5.4, as the official trainer wrote A1 WaveNets) for
/// `net` with every weight zero (write the weights with [`write`]), stating `sample_rate` and
/// a `metadata` object with `loudness` and `gain` for the calibration to fill in. Only the
/// A1 layout (per array one kernel size and activation, no gating options beyond `gated`,
/// no post-head) that `dealias train` creates.
pub(crate) fn template(net: &WaveNet, sample_rate: f64) -> Result<Value, String> {
    if net.head.is_some() {
        return Err("WaveNets with a post-head are not written from scratch".into());
    }
    let mut layers = Vec::new();
    for a in &net.layer_arrays {
        let (activation, gated) = a.trainer_layout()?;
        let kernels = a.kernel_sizes();
        if kernels.iter().any(|&k| k != kernels[0]) || a.head_rechannel.kernel_size != 1 {
            return Err("per-layer kernel sizes are not written from scratch".into());
        }
        let name = match activation {
            Activation::Tanh => "Tanh",
            Activation::ReLU => "ReLU",
            Activation::Sigmoid => "Sigmoid",
            Activation::Hardtanh => "Hardtanh",
            _ => return Err(
                "activations other than Tanh, ReLU, Sigmoid, Hardtanh are not written from scratch"
                    .into(),
            ),
        };
        layers.push(serde_json::json!({
            "input_size": a.input_size,
            "condition_size": a.condition_size,
            "head_size": a.head_size,
            "channels": a.channels,
            "kernel_size": kernels[0],
            "dilations": a.dilations(),
            "activation": name,
            "gated": gated,
            "head_bias": a.head_rechannel.bias.is_some(),
        }));
    }
    let head_scale = net.head_scale.first().copied().unwrap_or(1.0);
    Ok(serde_json::json!({
        "version": "0.5.4",
        "architecture": "WaveNet",
        "config": {"layers": layers, "head": null, "head_scale": head_scale},
        "weights": vec![0.0; net.num_params()],
        "sample_rate": json::rate_value(sample_rate)?,
        "metadata": {"loudness": 0.0, "gain": 0.0},
    }))
}
