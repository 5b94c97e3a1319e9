//! dealias: remove aliasing from neural models of guitar amps and pedals.
//!
//! The library follows the data flow of the method (Carson, Wright & Bilbao, DAFx25):
//! [`formats`] (model files ⇄ model values) → [`models`] (forward and backward passes) →
//! [`dsp`] (tones, windows, filters, harmonic resynthesis) → [`loss`] (ESR, NMR, MRSL) →
//! [`train`] (Adam, truncated BPTT, teacher–student fine-tuning) → [`eval`] (metrics, plots,
//! reports). [`device`] holds alias-free circuit simulations that serve as reference devices.
//! The `dealias` binary is a thin command-line layer over this crate.

pub mod audio;
#[cfg(feature = "cli")]
pub mod cli;
pub mod device;
pub mod dsp;
pub mod error;
pub mod eval;
pub mod formats;
pub mod io;
pub mod limits;
pub mod loss;
pub mod models;
pub mod train;

pub use error::{Error, Result};
pub use formats::{load_model, save_model, Format, ModelFile, Submodel};
pub use models::{Network, Real};
