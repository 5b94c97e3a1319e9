//! Multi-resolution mel-spectral loss (MRSL) for the guitar-and-bass audio validation
//! (paper sec. 2.6, refs. [32, 33]); forward only.
//!
//! The paper cites auraloss's mel STFT loss without its settings, so we fix and document them:
//! - resolutions (FFT size, hop) = (512, 128), (1024, 256), (2048, 512): 25 % hops, window =
//!   periodic Hann of the FFT size;
//! - frames centred with reflect padding of `N/2` at both ends (as `torch.stft(center=True)`);
//! - magnitudes `sqrt(max(|X|^2, 1e-8))`, mapped to 128 mel bands (Slaney mel scale, Slaney
//!   area normalisation, 0 Hz to fs/2; as librosa's default filterbank), floored at 1e-4 (at
//!   512 points some low mel triangles fall between bins);
//! - per resolution, spectral convergence `||S_ref - S||_F / ||S_ref||_F` plus the mean absolute
//!   difference of natural-log mel magnitudes (auraloss `STFTLoss` with `w_sc = w_log_mag = 1`);
//! - MRSL = mean over resolutions. Report it in dB as `10 log10(MRSL)`.
//!
//! Hand-written (mel filterbank and framing) because it is short and must match the documented
//! definition; the FFTs are `realfft` plans made once.

use crate::dsp::window::hann_periodic;
use crate::{Error, Result};
use realfft::{RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// FFT sizes and hops of the MRSL.
pub const MRSL_RESOLUTIONS: [(usize, usize); 3] = [(512, 128), (1024, 256), (2048, 512)];
/// Number of mel bands.
pub const MRSL_MEL_BANDS: usize = 128;

struct Resolution {
    n: usize,
    hop: usize,
    window: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
    /// `MRSL_MEL_BANDS` rows of `n/2 + 1` weights.
    mel: Vec<Vec<f64>>,
}

/// The MRSL for one sample rate.
pub struct MelStftLoss {
    res: Vec<Resolution>,
}

impl std::fmt::Debug for MelStftLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MelStftLoss").finish()
    }
}

/// Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
fn hz_to_mel(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// Triangular mel filterbank with Slaney area normalisation (librosa `filters.mel` defaults).
pub fn mel_filterbank(fs: f64, n_fft: usize, n_mels: usize) -> Vec<Vec<f64>> {
    let bins = n_fft / 2 + 1;
    let fft_f: Vec<f64> = (0..bins).map(|k| k as f64 * fs / n_fft as f64).collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(fs / 2.0));
    let pts: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    (0..n_mels)
        .map(|m| {
            let (a, b, c) = (pts[m], pts[m + 1], pts[m + 2]);
            let norm = 2.0 / (c - a);
            fft_f
                .iter()
                .map(|&f| {
                    let up = (f - a) / (b - a);
                    let down = (c - f) / (c - b);
                    up.min(down).max(0.0) * norm
                })
                .collect()
        })
        .collect()
}

impl MelStftLoss {
    /// The MRSL at sample rate `fs`.
    pub fn new(fs: f64) -> Self {
        let mut planner = RealFftPlanner::<f64>::new();
        let res = MRSL_RESOLUTIONS
            .iter()
            .map(|&(n, hop)| Resolution {
                n,
                hop,
                window: hann_periodic(n),
                fft: planner.plan_fft_forward(n),
                mel: mel_filterbank(fs, n, MRSL_MEL_BANDS),
            })
            .collect();
        Self { res }
    }

    fn mel_spectrogram(r: &Resolution, x: &[f64]) -> Vec<f64> {
        let pad = r.n / 2;
        let len = x.len();
        // Reflect padding (no edge repeat), as numpy/torch "reflect".
        let at = |i: isize| -> f64 {
            let mut i = i;
            let l = len as isize;
            while i < 0 || i >= l {
                if i < 0 {
                    i = -i;
                }
                if i >= l {
                    i = 2 * (l - 1) - i;
                }
            }
            x[i as usize]
        };
        let frames = 1 + len / r.hop;
        let mut out = Vec::with_capacity(frames * MRSL_MEL_BANDS);
        let mut buf = vec![0.0; r.n];
        let mut spec = r.fft.make_output_vec();
        let mut mag = vec![0.0; r.n / 2 + 1];
        for f in 0..frames {
            let start = (f * r.hop) as isize - pad as isize;
            for (i, b) in buf.iter_mut().enumerate() {
                *b = at(start + i as isize) * r.window[i];
            }
            r.fft.process(&mut buf, &mut spec).expect("fixed sizes");
            for (m, c) in mag.iter_mut().zip(&spec) {
                *m = c.norm_sqr().max(1e-8).sqrt();
            }
            for row in &r.mel {
                // Floored at 1e-4 (the magnitude floor): at 512 points some of the 128 narrow low
                // mel triangles fall between bins and would be 0 (log undefined).
                out.push(
                    row.iter()
                        .zip(&mag)
                        .map(|(w, m)| w * m)
                        .sum::<f64>()
                        .max(1e-4),
                );
            }
        }
        out
    }

    /// MRSL of `pred` against `reference` (equal lengths, longer than 1024 samples so that the
    /// reflect padding of the largest resolution exists).
    pub fn loss(&self, pred: &[f64], reference: &[f64]) -> Result<f64> {
        if pred.len() != reference.len() || pred.len() <= 1024 {
            return Err(Error::InvalidArgument(format!(
                "MRSL needs equal lengths above 1024 samples, got {} and {}",
                pred.len(),
                reference.len()
            )));
        }
        let mut total = 0.0;
        for r in &self.res {
            let s = Self::mel_spectrogram(r, pred);
            let t = Self::mel_spectrogram(r, reference);
            let diff: f64 = s.iter().zip(&t).map(|(a, b)| (b - a) * (b - a)).sum();
            let norm: f64 = t.iter().map(|b| b * b).sum();
            let sc = diff.sqrt() / norm.sqrt();
            let log_mag = s
                .iter()
                .zip(&t)
                .map(|(a, b)| (b.ln() - a.ln()).abs())
                .sum::<f64>()
                / s.len() as f64;
            total += sc + log_mag;
        }
        Ok(total / self.res.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mel_scale_and_filterbank() {
        assert!((mel_to_hz(hz_to_mel(3456.0)) - 3456.0).abs() < 1e-9);
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        let fb = mel_filterbank(44_100.0, 2048, 128);
        assert_eq!(fb.len(), 128);
        // Slaney normalisation: each triangle has unit area in Hz (up to sampling).
        let df = 44_100.0 / 2048.0;
        let area: f64 = fb[100].iter().sum::<f64>() * df;
        assert!((area - 1.0).abs() < 0.05, "{area}");
    }

    #[test]
    fn zero_for_identical_and_grows_with_error() {
        let l = MelStftLoss::new(44_100.0);
        let x: Vec<f64> = (0..8000).map(|n| (n as f64 * 0.05).sin() * 0.5).collect();
        assert_eq!(l.loss(&x, &x).unwrap(), 0.0);
        let y1: Vec<f64> = x.iter().map(|v| v * 0.9).collect();
        let y2: Vec<f64> = x.iter().map(|v| v * 0.5).collect();
        let (a, b) = (l.loss(&y1, &x).unwrap(), l.loss(&y2, &x).unwrap());
        assert!(a > 0.0 && b > a);
    }
}
