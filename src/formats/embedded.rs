//! Models of the project's own, compiled into the library: trained by `dealias train` on the
//! built-in `diode-clipper` reference device (`assets/models/README.md` has the command that
//! regenerates each, and what it measures). They make dealias complete on its own: `dealias
//! finetune` with no MODEL fine-tunes the LSTM, and tests run on them without any file beside
//! the repository.

use std::path::Path;

use super::ModelFile;
use crate::{Error, Result};

/// A model compiled into the library.
#[derive(Clone, Copy, Debug)]
pub struct EmbeddedModel {
    /// Short name (`lstm`, `wavenet`).
    pub name: &'static str,
    /// The file name it is written under.
    pub file_name: &'static str,
    /// One line about it.
    pub description: &'static str,
    /// The reference device it imitates (`dealias device list`).
    pub device: &'static str,
    bytes: &'static [u8],
}

/// Every embedded model; the first is the default.
pub const EMBEDDED_MODELS: [EmbeddedModel; 2] = [
    EmbeddedModel {
        name: "lstm",
        file_name: "dealias-diode-clipper-lstm40.json",
        description: "GuitarML LSTM-40 of the diode-clipper device (44.1 kHz)",
        device: "diode-clipper",
        bytes: include_bytes!("../../assets/models/dealias-diode-clipper-lstm40.json"),
    },
    EmbeddedModel {
        name: "wavenet",
        file_name: "dealias-diode-clipper-wavenet.nam",
        description: "NAM standard WaveNet of the diode-clipper device (48 kHz)",
        device: "diode-clipper",
        bytes: include_bytes!("../../assets/models/dealias-diode-clipper-wavenet.nam"),
    },
];

impl EmbeddedModel {
    /// The embedded model called `name`; the error lists the names.
    pub fn by_name(name: &str) -> Result<&'static EmbeddedModel> {
        EMBEDDED_MODELS
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = EMBEDDED_MODELS.iter().map(|m| m.name).collect();
                Error::InvalidArgument(format!(
                    "no built-in model called '{name}' (built-in models: {})",
                    names.join(", ")
                ))
            })
    }

    /// The default model (the LSTM).
    pub fn default_model() -> &'static EmbeddedModel {
        &EMBEDDED_MODELS[0]
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &'static [u8] {
        self.bytes
    }

    /// The model, as if read from `file_name`.
    pub fn load(&self) -> Result<ModelFile> {
        super::load_model_from_bytes(self.bytes, Some(Path::new(self.file_name)))
    }
}
