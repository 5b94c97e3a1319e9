//! The crate's error type: every failure names what went wrong and, where there is one, the
//! file it concerns.

use std::path::PathBuf;

/// Errors of the dealias library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file could not be read or parsed.
    #[error("{path}: {message}")]
    ModelFile { path: PathBuf, message: String },
    /// A model value (not tied to a file) is inconsistent or unsupported.
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// An audio file or buffer is unusable.
    #[error("{0}")]
    Audio(String),
    /// An argument is out of range or inconsistent.
    #[error("{0}")]
    InvalidArgument(String),
    /// A setting of a configuration is out of range. `name` is the setting's field name
    /// (e.g. `batch_size`), which the command line translates into its option's name;
    /// `message` states the accepted range.
    #[error("{name}: {message}")]
    Setting { name: &'static str, message: String },
    /// An I/O failure with the path it concerns. The OS error is part of the message and
    /// deliberately not a `source()`: error reporters that print the chain (`{:#}`) would
    /// otherwise repeat it.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file cannot be used as asked (its kind, its size, or it would overwrite another).
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    /// A checkpoint is corrupt, altered, or does not fit this run.
    #[error("{0}")]
    Checkpoint(String),
    /// Training stopped because the loss or a weight became NaN/Inf.
    #[error("{0}")]
    NonFinite(String),
    /// The run was interrupted (Ctrl-C); a checkpoint was written.
    #[error("interrupted")]
    Interrupted,
}

/// Result with the crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, error: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error,
        }
    }
}
