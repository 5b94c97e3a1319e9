//! Running a continuous-time circuit on an oversampled grid without aliasing: the input is
//! interpolated by a band-limited polyphase FIR, the circuit's ODE is stepped once per
//! oversampled sample, and its output is low-passed and decimated by a linear-phase FIR whose
//! stop band (at least 120 dB, from the output's Nyquist frequency up) removes everything that
//! would fold into the audio band.
//!
//! Both filters are Kaiser-window designs ([`firwin_kaiser`]) with edges relative to the audio
//! rate `fs`, so the same taps serve every rate:
//! - interpolation: pass band to 0.45 fs, stop band from 0.55 fs (the images of everything in
//!   the pass band lie above it), cut-off fs / 2;
//! - decimation: pass band to 0.45 fs, stop band from 0.5 fs (nothing folds back), cut-off
//!   0.475 fs.
//!
//! Both are designed for 125 dB by Kaiser's estimates, which are approximate; the measured stop
//! bands (tests) are below -120 dB. The filters are applied zero-phase (their delays are
//! compensated), so the output is aligned with the input, like [`crate::dsp::ZeroPhaseFir`]:
//! the signal is taken as zero before its first and after its last sample, and the circuit
//! starts at rest.

use std::sync::OnceLock;

use crate::dsp::fir::{dot, firwin_kaiser, kaiser_beta, kaiser_order};
use crate::Result;

/// The oversampling factor of every device.
pub const OVERSAMPLING: usize = 16;

/// Stop-band attenuation the filters are designed for, dB (Kaiser's estimates fall slightly
/// short; at least 120 dB is measured).
const DESIGN_ATTENUATION_DB: f64 = 125.0;

/// One step of a circuit on the oversampled grid.
pub trait CircuitStep {
    /// Advances the circuit by one oversampled period with input `u` (in the units of the
    /// audio input) at the end of the step, and returns its output (audio units).
    fn step(&mut self, u: f64) -> Result<f64>;
}

/// The interpolation and decimation filters at [`OVERSAMPLING`].
#[derive(Debug)]
pub struct Filters {
    /// Interpolation taps (odd length, symmetric, DC gain 1).
    pub interpolation: Vec<f64>,
    /// Decimation taps (odd length, symmetric, DC gain 1).
    pub decimation: Vec<f64>,
    /// The interpolation taps by phase, times the factor, each reversed for a forward dot
    /// product with the input: `phases[p][K_p - 1 - k] = L h[p + L k]`.
    phases: Vec<Vec<f64>>,
}

/// The filters (designed once).
pub fn filters() -> &'static Filters {
    static F: OnceLock<Filters> = OnceLock::new();
    F.get_or_init(|| {
        let l = OVERSAMPLING;
        let fs_os = l as f64; // the audio rate is 1
        let a = DESIGN_ATTENUATION_DB;
        let mi = kaiser_order(a, 0.1, fs_os, 2);
        let interpolation = firwin_kaiser(mi + 1, 0.5, fs_os, kaiser_beta(a));
        let md = kaiser_order(a, 0.05, fs_os, 2);
        let decimation = firwin_kaiser(md + 1, 0.475, fs_os, kaiser_beta(a));
        let (interpolation, decimation) = (symmetric(interpolation), symmetric(decimation));
        let phases = (0..l)
            .map(|p| {
                let mut g: Vec<f64> = interpolation
                    .iter()
                    .skip(p)
                    .step_by(l)
                    .map(|h| h * l as f64)
                    .collect();
                g.reverse();
                g
            })
            .collect();
        Filters {
            interpolation,
            decimation,
            phases,
        }
    })
}

/// `h` with each pair of mirrored taps replaced by their mean: the window's rounding leaves
/// them a few ulps apart, and exact symmetry is what makes the filter linear-phase.
fn symmetric(mut h: Vec<f64>) -> Vec<f64> {
    let n = h.len();
    for k in 0..n / 2 {
        let m = 0.5 * (h[k] + h[n - 1 - k]);
        h[k] = m;
        h[n - 1 - k] = m;
    }
    h
}

/// Output samples at the end of a render that already react to the input's end (taken as
/// zero beyond it): the filters look `(d_i + d_d) / L` audio samples ahead. A caller who wants
/// the response to a signal that goes on renders this many samples more and drops them.
pub fn lookahead() -> usize {
    let f = filters();
    let d = (f.interpolation.len() - 1) / 2 + (f.decimation.len() - 1) / 2;
    d.div_ceil(OVERSAMPLING)
}

/// Runs `circuit` over `x` (audio rate) at [`OVERSAMPLING`] times the rate and returns its
/// decimated output, `x.len()` samples aligned with `x`.
///
/// The oversampled grid index `j` is the time `(j - d_i) / (L fs)` (`d_i`, `d_d`: the
/// half-lengths of the two filters), so output sample `m` (time `m / fs`) is the decimation
/// filter centred on index `L m + d_i`; the circuit runs until the last output's window is
/// complete. Memory stays at a decimation window plus a block of the oversampled signal.
pub fn render(x: &[f64], circuit: &mut dyn CircuitStep) -> Result<Vec<f64>> {
    let f = filters();
    let l = OVERSAMPLING;
    let n = x.len();
    if n == 0 {
        return Ok(Vec::new());
    }
    let di = (f.interpolation.len() - 1) / 2;
    let dd = (f.decimation.len() - 1) / 2;
    let h = &f.decimation;
    let total = l * (n - 1) + di + 2 * dd + 1;
    let mut out = Vec::with_capacity(n);
    // The oversampled output from grid index `base` on.
    let mut w: Vec<f64> = Vec::with_capacity(1 << 17);
    let mut base = 0usize;
    for j in 0..total {
        let (q, p) = (j / l, j % l);
        let g = &f.phases[p];
        // u = sum_k g_p[k] x[q - k]; `g` is reversed, so it lines up with x[q + 1 - K ..= q].
        let lo = (q + 1) as isize - g.len() as isize;
        let (start, end) = (lo.max(0) as usize, (q + 1).min(n));
        let u = if start < end {
            let o = (start as isize - lo) as usize;
            dot(&g[o..o + end - start], &x[start..end])
        } else {
            0.0
        };
        w.push(circuit.step(u)?);
        // Output m needs grid indices L m + di - dd ..= L m + di + dd.
        while out.len() < n && l * out.len() + di + dd <= j {
            let m = out.len();
            let first = (l * m + di) as isize - dd as isize;
            let (from, skip) = if first < 0 {
                (0, (-first) as usize)
            } else {
                (first as usize, 0)
            };
            let ws = &w[from - base..=j - base];
            out.push(dot(&h[skip..skip + ws.len()], ws));
        }
        // Drop what no later output needs.
        if w.len() >= (1 << 17) {
            let keep_from = ((l * out.len() + di) as isize - dd as isize).max(0) as usize;
            if keep_from > base {
                w.drain(..keep_from - base);
                base = keep_from;
            }
        }
    }
    debug_assert_eq!(out.len(), n);
    Ok(out)
}
