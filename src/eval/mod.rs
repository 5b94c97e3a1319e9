//! Evaluation of models and recordings with the paper's metrics (sec. 2.6, Table 1, Figs. 2–4;
//! spec sec. 7): the sine-set metrics ESR-S/NMR-S (and -T against a teacher, HESR-T), the
//! audio-dataset metrics (A-weighted G+B ESR, MRSL), the figures and the reports.
//!
//! The metric definitions live in [`crate::loss`] and [`crate::dsp`]; this module drives them
//! over the evaluation set in parallel, aggregates and writes the results. It never prints; the
//! command line (`dealias measure`, `compare`, `analyze`) shows progress through a callback.

pub mod audio_metrics;
pub mod audit;
pub mod calibration;
#[cfg(feature = "plots")]
pub mod html;
pub mod oversample;
#[cfg(feature = "plots")]
pub mod plots;
pub mod report;
pub mod sine_set;
pub mod summary;
pub mod table1;

pub use crate::dsp::a_weighting::AWeighting;
pub use audio_metrics::{audio_metrics, AudioMetrics};
pub use sine_set::{
    analyze_tone, compare_sine_set, compare_sine_set_with, measure_sine_set, measure_tones,
    measure_tones_against, Playback, RunOptions, SineReference, SineSetReport, ToneResult,
};
pub use table1::{compare_table1, measure_table1, Convention, Table1};

/// The audibility threshold of aliasing in NMR, dB (paper Fig. 4, ref. \[8\]): NMR-S above it
/// marks aliasing as likely audible.
pub const AUDIBILITY_DB: f64 = -10.0;
