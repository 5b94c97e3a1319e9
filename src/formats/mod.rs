//! Model files ⇄ model values: Neural Amp Modeler `.nam`, GuitarML JSON and AIDA-X
//! (RTNeural) JSON. Other formats of the GuitarML family are recognised and refused by name
//! ([`legacy`]).
//!
//! Loading keeps the whole JSON document in [`Source`], so that saving rewrites only the
//! weights that changed (and adds a note in the metadata) and preserves everything else, key
//! order and number spelling included: a model loaded and saved unchanged gives the same JSON
//! values. Changed weights are rounded to f32 and written as the shortest decimal of that f32's
//! exact value, as PyTorch exports do.
//!
//! Parsing is hand-written over `serde_json::Value` (see [`json`]) so that every error names the
//! setting or tensor at fault, and so that sizes are checked against the weight count before
//! anything is allocated.

mod aidax;
pub mod embedded;
mod guitarml;
pub(crate) mod json;
mod legacy;
mod nam;

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::models::Network;
use crate::{Error, Result};

/// A supported model file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Neural Amp Modeler `.nam` (JSON, versions 0.5 to 0.7, `SlimmableContainer`s included).
    Nam,
    /// GuitarML / Automated-GuitarAmpModelling JSON (`model_data` + `state_dict`).
    GuitarMl,
    /// AIDA-X / RTNeural JSON (`in_shape` + `layers`).
    AidaX,
}

impl Format {
    /// A short human-readable name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Nam => "Neural Amp Modeler (.nam)",
            Format::GuitarMl => "GuitarML JSON",
            Format::AidaX => "AIDA-X (RTNeural JSON)",
        }
    }

    /// The sample rate the format's plugins run a model at when the file states none
    /// (GuitarML 44.1 kHz, NAM and AIDA-X 48 kHz).
    pub fn default_rate(self) -> f64 {
        match self {
            Format::GuitarMl => 44100.0,
            Format::Nam | Format::AidaX => 48000.0,
        }
    }
}

/// A model file: the network it describes, the sample rate it states, and everything else the
/// file held (the whole JSON document), so that a changed network can be written back into the
/// same file format without losing anything.
#[derive(Clone, Debug)]
pub struct ModelFile {
    /// The network's weights and settings.
    pub network: Network,
    /// Sample rate in Hz the model was trained at, when the file states one.
    pub sample_rate: Option<f64>,
    /// The file's format.
    pub format: Format,
    /// The full JSON document as read (saving rewrites only what changed).
    pub document: Value,
    /// Where the file was read from, if it was.
    pub path: Option<PathBuf>,
    /// Whether the file was indented (saving keeps the style).
    pub pretty: bool,
    /// Things worth telling the user about the file (e.g. a `head_scale` disagreement).
    pub notices: Vec<String>,
    /// For a container file (NAM `SlimmableContainer`): every submodel in the file's order.
    /// The active one's network is `network` (its entry here keeps the weights it had when
    /// another submodel was selected; [`ModelFile::submodel_networks`] gives the current ones).
    pub submodels: Vec<Submodel>,
    /// Index of the active submodel in `submodels` (0 for other files).
    pub active: usize,
}

/// One submodel of a container file.
#[derive(Clone, Debug)]
pub struct Submodel {
    /// NAM `max_value`: the plugin runs this submodel for slider values below it (and above
    /// the previous submodel's).
    pub max_value: f64,
    pub network: Network,
}

impl ModelFile {
    /// The file's sample rate, or, when it states none, its format's default
    /// ([`Format::default_rate`]); the flag says whether the rate was assumed.
    pub fn rate_or_default(&self) -> (f64, bool) {
        match self.sample_rate {
            Some(r) => (r, false),
            None => (self.format.default_rate(), true),
        }
    }

    /// The same file holding another network of the same architecture (e.g. a fine-tuned
    /// student); saving it rewrites the weights that differ.
    pub fn with_network(&self, network: Network) -> ModelFile {
        ModelFile {
            network,
            ..self.clone()
        }
    }

    /// Whether the file is a container of several submodels.
    pub fn is_container(&self) -> bool {
        !self.submodels.is_empty()
    }

    /// The submodel NeuralAmpModelerCore runs at slider value `value`
    /// (`ContainerModel::SetSlimmableSize`): the first whose `max_value` is above `value`,
    /// else the last. Its default, before any slider value, is the last (full-size) one.
    pub fn slim_index(&self, value: f64) -> usize {
        let n = self.submodels.len().max(1);
        self.submodels
            .iter()
            .position(|s| value < s.max_value)
            .unwrap_or(n - 1)
    }

    /// The networks of every submodel (the active one's from `network`); the network alone
    /// for other files.
    pub fn submodel_networks(&self) -> Vec<&Network> {
        if self.submodels.is_empty() {
            return vec![&self.network];
        }
        self.submodels
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if i == self.active {
                    &self.network
                } else {
                    &s.network
                }
            })
            .collect()
    }

    /// The networks the file was read with, in the order of [`ModelFile::submodel_networks`]
    /// (parsed again from the kept document, so changes to `network` do not show).
    pub fn source_networks(&self) -> Result<Vec<Network>> {
        let parsed = parse_network(self.format, &self.document)
            .map_err(|m| file_error(self.path.as_deref(), m))?;
        if parsed.submodels.is_empty() {
            return Ok(vec![parsed.network]);
        }
        Ok(parsed.submodels.into_iter().map(|(_, n)| n).collect())
    }

    /// The same file with submodel `index` active (its network in `network`).
    pub fn select_submodel(&self, index: usize) -> Result<ModelFile> {
        if index >= self.submodels.len().max(1) {
            return Err(Error::InvalidArgument(format!(
                "submodel {index} does not exist: the file has {} (0..{})",
                self.submodels.len().max(1),
                self.submodels.len().max(1) - 1
            )));
        }
        let mut out = self.clone();
        if self.submodels.is_empty() {
            return Ok(out);
        }
        out.submodels[self.active].network = self.network.clone();
        out.network = out.submodels[index].network.clone();
        out.active = index;
        Ok(out)
    }

    /// The licence the file states (`license` or `licence` in its metadata or, for a
    /// container, in a submodel's), as written; saving carries it through unchanged.
    pub fn licence(&self) -> Option<String> {
        let from = |md: Option<&Value>| {
            let md = md?.as_object()?;
            md.iter()
                .find(|(k, _)| {
                    let k = k.to_ascii_lowercase();
                    k == "license" || k == "licence"
                })
                .map(|(_, v)| v.as_str().map_or_else(|| v.to_string(), str::to_string))
        };
        let subs = self
            .document
            .pointer("/config/submodels")
            .and_then(Value::as_array);
        from(self.document.get("metadata")).or_else(|| {
            subs.into_iter()
                .flatten()
                .find_map(|s| from(s.pointer("/model/metadata")))
        })
    }

    /// Runs the network over `input` from its initial state (see [`Network::process`]).
    pub fn process<T: crate::Real>(&self, input: &[T]) -> Vec<T> {
        self.network.process(input)
    }
}

/// Whether a licence text forbids derivative works: a Creative Commons "ND" element
/// (`CC BY-NC-ND 4.0`, ...) or the words "no derivatives".
pub fn forbids_derivatives(licence: &str) -> bool {
    let lower = licence.to_ascii_lowercase();
    lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .any(|t| t == "nd")
        || lower.replace([' ', '-', '_'], "").contains("noderiv")
}

/// Largest model file read: real models are at most tens of MB, and parsing JSON takes several
/// times the file's size in memory, so the cap is 256 MiB or a sixteenth of the machine's
/// memory, whichever is smaller.
fn max_model_bytes() -> u64 {
    (256u64 << 20).min(crate::limits::machine_memory().0 / 16)
}

fn file_error(path: Option<&Path>, message: impl Into<String>) -> Error {
    Error::ModelFile {
        path: path.map_or_else(|| PathBuf::from("<model>"), Path::to_path_buf),
        message: message.into(),
    }
}

/// Loads a model file of any supported format (detected from its content). Only regular files
/// are read (see [`crate::io::read_regular_file`]).
pub fn load_model(path: &Path) -> Result<ModelFile> {
    let bytes = crate::io::read_regular_file(path, max_model_bytes(), "model")?;
    load_model_from_bytes(&bytes, Some(path))
}

/// Parses a model from the bytes of a file; `path` is only used in messages and kept in the
/// [`ModelFile`].
pub fn load_model_from_bytes(bytes: &[u8], path: Option<&Path>) -> Result<ModelFile> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| file_error(path, format!("not a JSON model file (not UTF-8 text: {e})")))?;
    let document: Value = serde_json::from_str(text).map_err(|e| {
        let hint = if text.contains("NaN") || text.contains("Infinity") {
            " (the file contains NaN or Infinity: non-finite weights are not valid JSON and cannot be used)"
        } else {
            ""
        };
        file_error(path, format!("not valid JSON: {e}{hint}"))
    })?;
    let pretty =
        text.trim_start().starts_with('{') && text.trim_start()[1..].starts_with(['\n', '\r']);
    parse_model(document, path, pretty)
}

/// A new model file holding `network` (a model trained from scratch), stating `sample_rate`:
/// a GuitarML file for a recurrent network, a `.nam` (A1 WaveNet layout) for a WaveNet. The
/// document is built with zero weights and parsed back, so that the file says exactly what the
/// readers read; saving it writes the network's weights (and, for `.nam`, the calibration
/// via [`crate::eval::calibration::recalibrate`]).
pub fn new_model_file(network: Network, format: Format, sample_rate: f64) -> Result<ModelFile> {
    let document = match (&network, format) {
        (Network::Rnn(r), Format::GuitarMl) => guitarml::template(r, sample_rate),
        (Network::WaveNet(w), Format::Nam) => nam::template(w, sample_rate),
        (n, f) => Err(format!(
            "a {} network is not written as a new {} file (recurrent networks: GuitarML .json; WaveNets: .nam)",
            n.kind(),
            f.name()
        )),
    }
    .map_err(Error::InvalidModel)?;
    let file = parse_model(document, None, format == Format::GuitarMl)?;
    if file.network.num_params() != network.num_params() {
        return Err(Error::InvalidModel(format!(
            "internal: the new file's network has {} parameters, the network {}",
            file.network.num_params(),
            network.num_params()
        )));
    }
    Ok(file.with_network(network))
}

/// Submodel `index` of container `file` as a plain file of its own: the submodel's
/// complete `.nam` document (as NeuralAmpModelerCore would load it alone), stating the
/// container's sample rate when it states none itself.
pub fn submodel_file(file: &ModelFile, index: usize) -> Result<ModelFile> {
    let entries = file
        .document
        .pointer("/config/submodels")
        .and_then(Value::as_array)
        .filter(|e| file.is_container() && index < e.len())
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "submodel {index} does not exist: the file has {} (0..{})",
                file.submodels.len().max(1),
                file.submodels.len().max(1) - 1
            ))
        })?;
    let mut document = entries[index]["model"].clone();
    if let (Some(o), Some(rate)) = (document.as_object_mut(), file.sample_rate) {
        if !o.contains_key("sample_rate") {
            o.insert(
                "sample_rate".into(),
                json::rate_value(rate).map_err(Error::InvalidModel)?,
            );
        }
    }
    parse_model(document, None, file.pretty)
}

/// A new model of `template`'s layout holding `network` (trained at `sample_rate`): the
/// template's configuration is kept, the weights are `network`'s, and what described the
/// template's own capture is not: a `.nam` gets fresh metadata (`loudness` and `gain` for
/// the calibration to fill in) and the new rate. Other formats must already be at that rate.
pub fn fresh_file(template: &ModelFile, network: Network, sample_rate: f64) -> Result<ModelFile> {
    if template.network.num_params() != network.num_params() {
        return Err(Error::InvalidArgument(format!(
            "the network has {} parameters, the layout {}",
            network.num_params(),
            template.network.num_params()
        )));
    }
    let mut document = template.document.clone();
    match (template.format, document.as_object_mut()) {
        (Format::Nam, Some(o)) => {
            o.insert(
                "metadata".into(),
                serde_json::json!({"loudness": 0.0, "gain": 0.0}),
            );
            o.insert(
                "sample_rate".into(),
                json::rate_value(sample_rate).map_err(Error::InvalidModel)?,
            );
        }
        _ => {
            let (rate, _) = template.rate_or_default();
            if rate != sample_rate {
                return Err(Error::InvalidArgument(format!(
                    "the layout's file is a {} model at {rate} Hz, the training audio is at \
                     {sample_rate} Hz: train at the file's rate",
                    template.format.name()
                )));
            }
        }
    }
    let file = parse_model(document, None, template.pretty)?;
    Ok(file.with_network(network))
}

/// Detects the format of a parsed document.
pub fn detect_format(document: &Value) -> Option<Format> {
    let o = document.as_object()?;
    if o.contains_key("architecture") || o.contains_key("weights") {
        Some(Format::Nam)
    } else if o.contains_key("state_dict") || o.contains_key("model_data") {
        Some(Format::GuitarMl)
    } else if o.contains_key("in_shape") && o.contains_key("layers") {
        Some(Format::AidaX)
    } else {
        None
    }
}

/// Builds a model from a parsed document.
pub fn parse_model(document: Value, path: Option<&Path>, pretty: bool) -> Result<ModelFile> {
    if let Some(m) = legacy::unsupported(&document) {
        return Err(file_error(path, m));
    }
    let format = detect_format(&document).ok_or_else(|| {
        file_error(
            path,
            "unknown model format: neither a Neural Amp Modeler file (\"architecture\", \"config\", \
             \"weights\"), a GuitarML file (\"model_data\", \"state_dict\") nor an AIDA-X / \
             RTNeural file (\"in_shape\", \"layers\")",
        )
    })?;
    let p = parse_network(format, &document).map_err(|m| file_error(path, m))?;
    let active = p.submodels.len().saturating_sub(1);
    Ok(ModelFile {
        network: p.network,
        sample_rate: p.sample_rate,
        format,
        document,
        path: path.map(Path::to_path_buf),
        pretty,
        notices: p.notices,
        submodels: p
            .submodels
            .into_iter()
            .map(|(max_value, network)| Submodel { max_value, network })
            .collect(),
        active,
    })
}

fn parse_network(format: Format, document: &Value) -> std::result::Result<nam::Parsed, String> {
    match format {
        Format::Nam => nam::parse(document),
        Format::GuitarMl => {
            let p = guitarml::parse(document)?;
            Ok(nam::Parsed {
                network: p.network,
                sample_rate: p.sample_rate,
                notices: Vec::new(),
                submodels: Vec::new(),
            })
        }
        Format::AidaX => {
            let p = aidax::parse(document)?;
            Ok(nam::Parsed {
                network: p.network,
                sample_rate: p.sample_rate,
                notices: p.notices,
                submodels: Vec::new(),
            })
        }
    }
}

/// For an AIDA-X file with `input_batch` / `output_batch` test vectors: the largest error of
/// the model's network on them, relative to their peak (the vectors are of the bare network,
/// without the file's gains, at knob values 0). `None` for other files.
pub fn test_vector_error(model: &ModelFile) -> Result<Option<f64>> {
    if model.format != Format::AidaX {
        return Ok(None);
    }
    aidax::vector_error(&model.network, &model.document)
        .map_err(|m| file_error(model.path.as_deref(), m))
}

/// Saves a model in the format it was loaded from (see [`save_model_with_note`]).
pub fn save_model(model: &ModelFile, path: &Path) -> Result<()> {
    save_model_with_note(model, path, None)
}

/// Saves a model in the format it was loaded from, refusing to overwrite the file it was
/// loaded from. When weights changed, a `"dealias"` note (the crate version, the number of
/// changed values and `note`, if given) is added to the metadata: under `metadata` for `.nam`
/// files, as a top-level key for GuitarML files (the plugins read only `model_data` and
/// `state_dict`); a record already there (the file came from dealias) moves under `previous`.
pub fn save_model_with_note(model: &ModelFile, path: &Path, note: Option<Value>) -> Result<()> {
    if let Some(src) = &model.path {
        crate::io::ensure_distinct(src, path)?;
    }
    crate::io::write_atomic(path, &model_bytes(model, note)?)
}

/// The bytes [`save_model_with_note`] writes: the document of [`to_document`] in the source
/// file's style (indented or not), with a final newline.
pub fn model_bytes(model: &ModelFile, note: Option<Value>) -> Result<Vec<u8>> {
    let doc = to_document(model, note)?;
    let mut text = if model.pretty {
        serde_json::to_string_pretty(&doc)
    } else {
        serde_json::to_string(&doc)
    }
    .map_err(|e| Error::InvalidModel(format!("cannot serialise the model: {e}")))?;
    text.push('\n');
    Ok(text.into_bytes())
}

/// The JSON document for `model`: its source document with the weights that changed
/// rewritten (and a note in the metadata when anything changed).
pub fn to_document(model: &ModelFile, note: Option<Value>) -> Result<Value> {
    let src = model;
    let err = |m: String| file_error(src.path.as_deref(), m);
    let nets = model.submodel_networks();
    for n in &nets {
        n.check_finite()?;
    }
    let parsed = parse_network(src.format, &src.document).map_err(err)?;
    let (original, original_rate) = (parsed.network, parsed.sample_rate);
    let mut doc = src.document.clone();
    let changed = match src.format {
        Format::Nam if !parsed.submodels.is_empty() => {
            nam::write_container(&nets, &parsed.submodels, &mut doc)
        }
        Format::Nam => nam::write(&model.network, &original, &mut doc),
        Format::GuitarMl => guitarml::write(&model.network, &original, &mut doc),
        Format::AidaX => aidax::write(&model.network, &original, &mut doc),
    }
    .map_err(err)?;
    let rate_changed = model.sample_rate != original_rate;
    if rate_changed {
        let rate = model
            .sample_rate
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, |n| {
                // Integral rates are written as integers, as the exporters do.
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 {
                    Value::from(f as u64)
                } else {
                    Value::Number(n)
                }
            });
        let top = doc.as_object_mut().expect("parsed documents are objects");
        match src.format {
            Format::Nam => {
                top.insert("sample_rate".into(), rate);
            }
            Format::GuitarMl => {
                if let Some(md) = top.get_mut("model_data").and_then(Value::as_object_mut) {
                    md.insert("sample_rate".into(), rate);
                }
            }
            Format::AidaX => aidax::write_rate(&mut doc, rate),
        }
    }
    if changed == 0 && !rate_changed && note.is_none() {
        return Ok(doc);
    }
    let mut record = serde_json::Map::new();
    record.insert("version".into(), Value::from(env!("CARGO_PKG_VERSION")));
    record.insert("changed_values".into(), Value::from(changed));
    record.insert(
        "total_values".into(),
        Value::from(nets.iter().map(|n| n.num_params()).sum::<usize>()),
    );
    if rate_changed {
        record.insert("sample_rate_changed".into(), Value::Bool(true));
    }
    if let Some(n) = note {
        record.insert("note".into(), n);
    }
    let top = doc.as_object_mut().expect("parsed documents are objects");
    // The plugins read only their own keys; AIDA-X shows `metadata` strings, so the record
    // goes to the top level for the JSON formats.
    let home = match src.format {
        Format::Nam => {
            let md = top
                .entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()));
            if !md.is_object() {
                *md = Value::Object(Default::default());
            }
            md.as_object_mut().expect("just made an object")
        }
        Format::GuitarMl | Format::AidaX => top,
    };
    // A file dealias wrote before (trained, fine-tuned) keeps that record under `previous`:
    // the history of the file is never lost.
    if let Some(old) = home.remove("dealias") {
        record.insert("previous".into(), old);
    }
    home.insert("dealias".into(), Value::Object(record));
    Ok(doc)
}

#[cfg(test)]
mod tests;
