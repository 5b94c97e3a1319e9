//! Signal processing of the method: input tones (paper eqs. 3–5), analysis windows, harmonic
//! analysis and alias-free resynthesis (eqs. 6–12), the pre-emphasis low-pass (sec. 2.3) and the
//! STFT used by the NMR, and the built-in training signal of `dealias train`. FFTs come from `rustfft`/`realfft`; every structure that holds FFT
//! plans is built once and reused.

pub mod a_weighting;
pub mod fir;
pub mod harmonics;
pub mod resample;
pub mod stft;
pub mod tones;
pub mod training_signal;
pub mod window;

pub use fir::ZeroPhaseFir;
pub use harmonics::{HarmonicAnalyzer, Harmonics};
pub use stft::{Stft, StftScratch};
pub use tones::{eval_sine_set, midi_to_hz, EvalTone, Tone, ToneGenerator, ToneLevels};
