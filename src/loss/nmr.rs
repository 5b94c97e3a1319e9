//! Noise-to-mask ratio (paper eqs. 14–16, spec sec. 5) with its gradient with respect to the
//! test signal (spec sec. 8).
//!
//! The PEAQ basic-version FFT ear model (ITU-R BS.1387 as examined by Kabal, 2003): loudness
//! scaling, symmetric-Hann STFT (N = 2048, hop 1024, no padding), outer/middle-ear weighting,
//! grouping into the standard's 109 critical bands, noise pattern of the magnitude difference,
//! pitch pattern of the reference plus internal noise, Kabal's recursive level-dependent
//! spreading (`PQ_SpreadCB`), mask offsets, and the mean of noise over mask.
//!
//! Hand-written: no crate implements this ear model, and the method needs a gradient.
//!
//! Structure for training: [`Nmr`] holds everything that depends on the sample rate only
//! (FFT plans, window, ear weights, sparse grouping matrix, internal noise, mask offsets,
//! spreading constants and normaliser); [`NmrReference`] holds everything that depends on the
//! reference only (its weighted magnitudes and the inverse mask). The mask is a constant of the
//! reference, so the per-call work on a test signal is one STFT, the band grouping and, for the
//! gradient, one adjoint STFT. Buffers live in a caller-owned [`NmrScratch`] (one per thread).

use super::bands::{DZ, NUM_BANDS, PEAQ_BANDS};
use crate::dsp::stft::{Stft, StftScratch};
use crate::dsp::window::hann_symmetric;
use crate::{Error, Result};
use rustfft::num_complex::Complex64;

/// STFT length of the ear model.
pub const NMR_FFT_LEN: usize = 2048;
/// STFT hop (50 % overlap).
pub const NMR_HOP: usize = 1024;
/// Energy floor `Emin`.
pub const EMIN: f64 = 1e-12;
/// Full-scale integer amplitude `Amax = 2^63` (64-bit quantisation).
pub const AMAX: f64 = 9_223_372_036_854_775_808.0;
/// Listening level of a full-scale sine, dB SPL.
pub const LP_DB: f64 = 92.0;
/// Frequency of the calibration tone, Hz.
pub const F_TEST: f64 = 1019.5;
/// Power law for the addition of spreading.
const SPREAD_E: f64 = 0.4;

/// Loudness/window scaling `GL` (spec sec. 5 step 1): `10^(Lp/20) / (gp Amax/4 (N - 1))` with the
/// peak factor `gp = sin(pi q) / (pi q (1 - q^2))`, `q = (N - 1) dist`, `dist` the distance of
/// `ftest/fs` to the nearest multiple of `1/N`.
pub fn loudness_scale(fs: f64, n: usize) -> f64 {
    let nf = n as f64;
    let fnorm = F_TEST / fs;
    let k = (fnorm * nf).floor();
    let dist = ((k + 1.0) / nf - fnorm).min(fnorm - k / nf);
    let q = (nf - 1.0) * dist;
    let gp = (std::f64::consts::PI * q).sin() / (std::f64::consts::PI * q * (1.0 - q * q));
    10f64.powf(LP_DB / 20.0) / (gp * AMAX / 4.0 * (nf - 1.0))
}

/// Outer/middle-ear weights `10^(A(f)/20)` (spec sec. 5 step 3) for the `N/2 + 1` bins,
/// `f_k = linspace(0, floor(fs/2), N/2 + 1)`; the DC weight is 0.
pub fn ear_weights(fs: f64, n: usize) -> Vec<f64> {
    let k = n / 2;
    let top = (fs / 2.0).floor();
    (0..=k)
        .map(|i| {
            if i == 0 {
                return 0.0;
            }
            let f = top * i as f64 / k as f64 / 1000.0;
            let a = -2.184 * f.powf(-0.8) + 6.5 * (-0.6 * (f - 3.3).powi(2)).exp()
                - 0.001 * f.powf(3.6);
            10f64.powf(a / 20.0)
        })
        .collect()
}

/// One row of the grouping matrix `U` (spec sec. 5 step 4), stored sparsely.
#[derive(Clone, Debug)]
struct BandRow {
    k0: usize,
    w: Vec<f64>,
}

/// The per-sample-rate NMR model.
#[derive(Clone, Debug)]
pub struct Nmr {
    fs: f64,
    stft: Stft,
    gl: f64,
    /// Gain applied to both signals before the quantisation (1 = the signals as they are).
    gain: f64,
    ear: Vec<f64>,
    rows: Vec<BandRow>,
    ein: Vec<f64>,
    gm: Vec<f64>,
    a_uc: Vec<f64>,
    bs: Vec<f64>,
}

/// The reference-dependent part of the NMR: weighted reference magnitudes and the mask.
#[derive(Clone, Debug)]
pub struct NmrReference {
    len: usize,
    frames: usize,
    /// `W_k |X[k, t]|`, frame-major.
    mag: Vec<f64>,
    /// `1 / (C T M[c, t])`, frame-major.
    inv_mask: Vec<f64>,
}

impl NmrReference {
    /// Signal length the reference was computed for.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when the reference has no samples (never: construction needs a full frame).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Number of STFT frames T.
    pub fn frames(&self) -> usize {
        self.frames
    }
    /// The mask `M[c, t]` (frame-major, `T x 109`).
    pub fn mask(&self) -> Vec<f64> {
        let ct = (self.frames * NUM_BANDS) as f64;
        self.inv_mask.iter().map(|v| 1.0 / (v * ct)).collect()
    }
}

/// Reusable per-thread buffers for [`Nmr`].
#[derive(Clone, Debug, Default)]
pub struct NmrScratch {
    stft: StftScratch,
    scaled: Vec<f64>,
    spec: Vec<Complex64>,
    mag: Vec<f64>,
    dmag: Vec<f64>,
}

impl Nmr {
    /// The NMR model for sample rate `fs`.
    pub fn new(fs: f64) -> Result<Self> {
        Self::with_gain(fs, 1.0)
    }

    /// The NMR model for sample rate `fs` evaluating both signals scaled by `gain` (before the
    /// quantisation of spec sec. 5 step 1). The ear model is level dependent (internal noise,
    /// level-dependent spreading), so this is the listening level `Lp + 20 log10(gain)` dB SPL
    /// for a full-scale sine: the authors evaluated Table 1 on renders stored at half
    /// amplitude, i.e. `gain = 0.5`, 86 dB instead of 92 (see `eval::table1`).
    pub fn with_gain(fs: f64, gain: f64) -> Result<Self> {
        if !(fs > 0.0 && fs.is_finite()) {
            return Err(Error::InvalidArgument(format!("bad sample rate {fs}")));
        }
        if !(gain > 0.0 && gain.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "NMR signal gain must be positive and finite, got {gain}"
            )));
        }
        let n = NMR_FFT_LEN;
        let bins = n / 2 + 1;
        let df = fs / n as f64;
        let rows = PEAQ_BANDS
            .iter()
            .map(|&(fl, _, fu)| {
                let u = |k: usize| {
                    let hi = fu.min((k as f64 + 0.5) * df);
                    let lo = fl.max((k as f64 - 0.5) * df);
                    (hi - lo).max(0.0) / df
                };
                let nz: Vec<usize> = (0..bins).filter(|&k| u(k) > 0.0).collect();
                match (nz.first(), nz.last()) {
                    (Some(&a), Some(&b)) => BandRow {
                        k0: a,
                        w: (a..=b).map(u).collect(),
                    },
                    _ => BandRow {
                        k0: 0,
                        w: Vec::new(),
                    },
                }
            })
            .collect();
        let ein = PEAQ_BANDS
            .iter()
            .map(|&(_, fc, _)| 10f64.powf(1.456 * (fc / 1000.0).powf(-0.8) / 10.0))
            .collect();
        let gm = (0..NUM_BANDS)
            .map(|c| {
                if (c as f64) <= 12.0 / DZ {
                    10f64.powf(-3.0 / 10.0)
                } else {
                    10f64.powf(-0.25 * c as f64 * DZ / 10.0)
                }
            })
            .collect();
        let a_uc = PEAQ_BANDS
            .iter()
            .map(|&(_, fc, _)| 10f64.powf((-2.4 - 23.0 / fc) * DZ))
            .collect();
        let mut nmr = Self {
            fs,
            stft: Stft::new(hann_symmetric(n), NMR_HOP),
            gl: loudness_scale(fs, n),
            gain,
            ear: ear_weights(fs, n),
            rows,
            ein,
            gm,
            a_uc,
            bs: vec![1.0; NUM_BANDS],
        };
        let mut bs = vec![0.0; NUM_BANDS];
        nmr.spread(&[1.0; NUM_BANDS], &mut bs);
        nmr.bs = bs;
        Ok(nmr)
    }

    /// Sample rate.
    pub fn fs(&self) -> f64 {
        self.fs
    }

    /// Gain applied to both signals before the ear model (see [`Nmr::with_gain`]).
    pub fn gain(&self) -> f64 {
        self.gain
    }

    /// A scratch for calls on signals of any length.
    pub fn scratch(&self) -> NmrScratch {
        NmrScratch {
            stft: self.stft.scratch(),
            ..Default::default()
        }
    }

    /// Number of STFT frames for `len` samples.
    pub fn frames(&self, len: usize) -> usize {
        self.stft.num_frames(len)
    }

    /// Kabal's recursive spreading `PQ_SpreadCB` of one frame's pitch pattern `e` into `out`,
    /// normalised by `self.bs` (spec sec. 5 step 6).
    fn spread(&self, e: &[f64], out: &mut [f64]) {
        let nc = NUM_BANDS;
        let a_l = 10f64.powf(-2.7 * DZ);
        let mut ene = [0.0; NUM_BANDS];
        let mut auce_e = [0.0; NUM_BANDS];
        for m in 0..nc {
            let auce = self.a_uc[m] * e[m].powf(0.2 * DZ);
            let gil = (1.0 - a_l.powi(m as i32 + 1)) / (1.0 - a_l);
            let giu = (1.0 - auce.powi((nc - m) as i32)) / (1.0 - auce);
            let en = e[m] / (gil + giu - 1.0);
            ene[m] = en.powf(SPREAD_E);
            auce_e[m] = auce.powf(SPREAD_E);
        }
        // Lower spreading, downwards.
        let a_le = a_l.powf(SPREAD_E);
        out[nc - 1] = ene[nc - 1];
        for m in (0..nc - 1).rev() {
            out[m] = a_le * out[m + 1] + ene[m];
        }
        // Upper spreading, i > m.
        for m in 0..nc - 1 {
            let mut r = ene[m];
            let a = auce_e[m];
            for o in &mut out[m + 1..nc] {
                r *= a;
                *o += r;
            }
        }
        for (o, b) in out.iter_mut().zip(&self.bs) {
            *o = o.powf(1.0 / SPREAD_E) / b;
        }
    }

    /// `round(Amax g x) GL` into the scratch (spec sec. 5 step 1; `g` = [`Nmr::gain`]).
    fn scale_into(&self, x: &[f64], s: &mut NmrScratch) {
        let a = AMAX * self.gain;
        s.scaled.clear();
        s.scaled
            .extend(x.iter().map(|&v| (a * v).round() * self.gl));
    }

    /// Weighted magnitudes `W_k |X[k, t]|` of `x` into `s.mag`, spectra into `s.spec`.
    fn weighted_magnitudes(&self, x: &[f64], s: &mut NmrScratch) -> usize {
        let t = self.stft.num_frames(x.len());
        let k = self.stft.bins();
        self.scale_into(x, s);
        s.spec.resize(t * k, Complex64::new(0.0, 0.0));
        let scaled = std::mem::take(&mut s.scaled);
        self.stft.forward(&scaled, 1.0, &mut s.spec, &mut s.stft);
        s.scaled = scaled;
        s.mag.resize(t * k, 0.0);
        for (frame_m, frame_s) in s.mag.chunks_exact_mut(k).zip(s.spec.chunks_exact(k)) {
            for ((m, c), w) in frame_m.iter_mut().zip(frame_s).zip(&self.ear) {
                *m = w * c.norm_sqr().sqrt();
            }
        }
        t
    }

    /// Computes the reference-dependent part: weighted magnitudes and mask (spec sec. 5 steps
    /// 1–7). The reference needs at least one full frame (2048 samples).
    pub fn reference(&self, reference: &[f64], s: &mut NmrScratch) -> Result<NmrReference> {
        let t = self.stft.num_frames(reference.len());
        if t == 0 {
            return Err(Error::InvalidArgument(format!(
                "NMR needs at least {NMR_FFT_LEN} samples, got {}",
                reference.len()
            )));
        }
        self.weighted_magnitudes(reference, s);
        let k = self.stft.bins();
        let ct = (t * NUM_BANDS) as f64;
        let mut inv_mask = vec![0.0; t * NUM_BANDS];
        let mut e = [0.0; NUM_BANDS];
        let mut es = [0.0; NUM_BANDS];
        for (f, inv) in inv_mask.chunks_exact_mut(NUM_BANDS).enumerate() {
            let mag = &s.mag[f * k..(f + 1) * k];
            for (c, row) in self.rows.iter().enumerate() {
                let p: f64 = row
                    .w
                    .iter()
                    .zip(&mag[row.k0..row.k0 + row.w.len()])
                    .map(|(u, m)| u * m * m)
                    .sum();
                e[c] = p.max(EMIN) + self.ein[c];
            }
            self.spread(&e, &mut es);
            for c in 0..NUM_BANDS {
                inv[c] = 1.0 / (ct * self.gm[c] * es[c]);
            }
        }
        Ok(NmrReference {
            len: reference.len(),
            frames: t,
            mag: s.mag.clone(),
            inv_mask,
        })
    }

    fn check_len(r: &NmrReference, test: &[f64]) -> Result<()> {
        if test.len() != r.len {
            return Err(Error::InvalidArgument(format!(
                "NMR test signal has {} samples, reference {}",
                test.len(),
                r.len
            )));
        }
        Ok(())
    }

    /// Linear NMR of `test` against the prepared reference (spec sec. 5 step 8).
    pub fn nmr(&self, r: &NmrReference, test: &[f64], s: &mut NmrScratch) -> Result<f64> {
        Self::check_len(r, test)?;
        Ok(self.eval(r, test, s, false))
    }

    /// Shared forward pass: returns the linear NMR; when `grad`, leaves
    /// `dNMR/d(W_k |X^[k,t]|)` in `s.dmag` and the test spectra in `s.spec`.
    fn eval(&self, r: &NmrReference, test: &[f64], s: &mut NmrScratch, grad: bool) -> f64 {
        let t = self.weighted_magnitudes(test, s);
        let k = self.stft.bins();
        if grad {
            s.dmag.clear();
            s.dmag.resize(t * k, 0.0);
        }
        let mut total = 0.0;
        for f in 0..t {
            let a = &s.mag[f * k..(f + 1) * k];
            let b = &r.mag[f * k..(f + 1) * k];
            let inv = &r.inv_mask[f * NUM_BANDS..(f + 1) * NUM_BANDS];
            for (c, row) in self.rows.iter().enumerate() {
                let range = row.k0..row.k0 + row.w.len();
                let e: f64 = row
                    .w
                    .iter()
                    .zip(&a[range.clone()])
                    .zip(&b[range.clone()])
                    .map(|((u, x), y)| u * (x - y) * (x - y))
                    .sum();
                total += e.max(EMIN) * inv[c];
                if grad && e > EMIN {
                    let d = &mut s.dmag[f * k..(f + 1) * k];
                    for (((g, u), x), y) in d[range.clone()]
                        .iter_mut()
                        .zip(&row.w)
                        .zip(&a[range.clone()])
                        .zip(&b[range.clone()])
                    {
                        *g += 2.0 * inv[c] * u * (x - y);
                    }
                }
            }
        }
        total
    }

    /// Linear NMR of `test` and its gradient `dNMR/dtest` written into `grad` (spec sec. 8: the
    /// mask is a constant of the reference; the rounding passes the gradient straight through).
    pub fn nmr_and_grad(
        &self,
        r: &NmrReference,
        test: &[f64],
        grad: &mut [f64],
        s: &mut NmrScratch,
    ) -> Result<f64> {
        Self::check_len(r, test)?;
        if grad.len() != test.len() {
            return Err(Error::InvalidArgument("gradient length mismatch".into()));
        }
        let total = self.eval(r, test, s, true);
        // dNMR/dX = dNMR/d(W|X|) * W * X/|X| (0 where |X| = 0).
        let k = self.stft.bins();
        for (gf, xf) in s.spec.chunks_exact_mut(k).zip(s.dmag.chunks_exact(k)) {
            for ((x, &dm), &w) in gf.iter_mut().zip(xf).zip(&self.ear) {
                let n = x.norm_sqr().sqrt();
                *x = if n > 0.0 && dm != 0.0 {
                    *x * (dm * w / n)
                } else {
                    Complex64::new(0.0, 0.0)
                };
            }
        }
        let spec = std::mem::take(&mut s.spec);
        self.stft
            .adjoint(&spec, AMAX * self.gain * self.gl, grad, &mut s.stft);
        s.spec = spec;
        Ok(total)
    }

    /// Convenience: linear NMR of `test` against `reference` (equal lengths).
    pub fn nmr_of(&self, test: &[f64], reference: &[f64]) -> Result<f64> {
        let mut s = self.scratch();
        let r = self.reference(reference, &mut s)?;
        self.nmr(&r, test, &mut s)
    }
}
