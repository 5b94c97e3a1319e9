//! Model files ⇄ model values: Neural Amp Modeler `.nam` and GuitarML JSON.
//!
//! Loading keeps the whole JSON document in [`Source`], so that saving rewrites only the
//! weights (and a note in the metadata) and preserves everything else, key order included.

use std::path::{Path, PathBuf};

use crate::models::Model;
use crate::Result;

/// A supported model file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Neural Amp Modeler `.nam` (JSON, versions 0.5.x and compatible newer files).
    Nam,
    /// GuitarML / Automated-GuitarAmpModelling JSON (`model_data` + `state_dict`).
    GuitarMl,
}

/// What a model was loaded from: its format and the full JSON document.
#[derive(Clone, Debug)]
pub struct Source {
    pub format: Format,
    pub document: serde_json::Value,
    pub path: Option<PathBuf>,
}

/// Loads a model file of any supported format.
pub fn load_model(path: &Path) -> Result<Model> {
    let _ = path;
    todo!("formats: load")
}

/// Saves a model in the format it was loaded from.
pub fn save_model(model: &Model, path: &Path) -> Result<()> {
    let _ = (model, path);
    todo!("formats: save")
}
