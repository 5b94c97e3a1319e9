//! Analysis windows: the Dolph–Chebyshev window of the harmonic analysis (paper eq. 6,
//! spec sec. 2) and the symmetric Hann window of the NMR's STFT (spec sec. 5 step 2).
//!
//! Hand-written because no maintained Rust crate provides a Dolph–Chebyshev window of arbitrary
//! length and attenuation that matches `scipy.signal.windows.chebwin` (the form the method is
//! defined with). The construction is the classical one: sample the Chebyshev polynomial
//! `T_{M-1}(beta cos(pi k / M))` (the window's DFT, equiripple by construction) and take its
//! inverse DFT with `rustfft`, then normalise to a maximum of 1.

use rustfft::num_complex::Complex64;
use rustfft::FftPlanner;
use std::f64::consts::PI;

/// Dolph–Chebyshev window of length `n` with side lobes `at` dB below the main lobe peak.
///
/// `sym = true` gives the symmetric window (`scipy.signal.windows.chebwin(n, at)`);
/// `sym = false` the periodic one, i.e. the symmetric window of length `n + 1` with its last
/// sample dropped (`chebwin(n, at, sym=False)`), as used by the harmonic analysis (spec sec. 2).
/// Normalised to a maximum of 1. `n = 0` gives an empty window, `n = 1` gives `[1]`.
pub fn chebwin(n: usize, at: f64, sym: bool) -> Vec<f64> {
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![1.0];
    }
    let m = if sym { n } else { n + 1 };
    let mut w = chebwin_symmetric(m, at.abs());
    w.truncate(n);
    w
}

/// The symmetric Dolph–Chebyshev window of length `m >= 2`.
fn chebwin_symmetric(m: usize, at: f64) -> Vec<f64> {
    let order = (m - 1) as f64;
    let beta = ((10f64.powf(at / 20.0)).acosh() / order).cosh();
    // Samples of the window's DFT: the Chebyshev polynomial T_order(beta cos(pi k / m)).
    let mut p: Vec<Complex64> = (0..m)
        .map(|k| {
            let x = beta * (PI * k as f64 / m as f64).cos();
            let v = if x > 1.0 {
                (order * x.acosh()).cosh()
            } else if x < -1.0 {
                let sign = if !m.is_multiple_of(2) { 1.0 } else { -1.0 };
                sign * (order * (-x).acosh()).cosh()
            } else {
                (order * x.acos()).cos()
            };
            Complex64::new(v, 0.0)
        })
        .collect();
    if m.is_multiple_of(2) {
        // Half-sample shift so that the even-length window is centred.
        for (k, v) in p.iter_mut().enumerate() {
            *v *= Complex64::from_polar(1.0, PI * k as f64 / m as f64);
        }
    }
    let fft = FftPlanner::<f64>::new().plan_fft_forward(m);
    fft.process(&mut p);
    let re: Vec<f64> = p.iter().map(|c| c.re).collect();
    let mut w = Vec::with_capacity(m);
    if !m.is_multiple_of(2) {
        let h = m.div_ceil(2);
        // w = [re[h-1], ..., re[1], re[0], re[1], ..., re[h-1]]
        w.extend((1..h).rev().map(|i| re[i]));
        w.extend(re[..h].iter().copied());
    } else {
        let h = m / 2 + 1;
        // w = [re[h-1], ..., re[1], re[1], ..., re[h-1]]
        w.extend((1..h).rev().map(|i| re[i]));
        w.extend(re[1..h].iter().copied());
    }
    let max = w.iter().cloned().fold(f64::MIN, f64::max);
    for v in &mut w {
        *v /= max;
    }
    w
}

/// Symmetric Hann window of length `n`: `0.5 - 0.5 cos(2 pi k / (n - 1))`
/// (`scipy.signal.windows.hann(n, sym=True)`), the NMR's STFT window (spec sec. 5 step 2).
pub fn hann_symmetric(n: usize) -> Vec<f64> {
    match n {
        0 => Vec::new(),
        1 => vec![1.0],
        _ => (0..n)
            .map(|k| 0.5 - 0.5 * (2.0 * PI * k as f64 / (n - 1) as f64).cos())
            .collect(),
    }
}

/// Periodic Hann window of length `n`: `0.5 - 0.5 cos(2 pi k / n)` (`torch.hann_window(n)`),
/// used by the mel-spectral loss.
pub fn hann_periodic(n: usize) -> Vec<f64> {
    (0..n)
        .map(|k| 0.5 - 0.5 * (2.0 * PI * k as f64 / n as f64).cos())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use realfft::RealFftPlanner;

    /// Magnitude spectrum (dB re. its peak) of `w` zero-padded to `len`.
    fn dense_spectrum_db(w: &[f64], len: usize) -> Vec<f64> {
        let mut planner = RealFftPlanner::<f64>::new();
        let fft = planner.plan_fft_forward(len);
        let mut buf = vec![0.0; len];
        buf[..w.len()].copy_from_slice(w);
        let mut out = fft.make_output_vec();
        fft.process(&mut buf, &mut out).unwrap();
        let mag: Vec<f64> = out.iter().map(|c| c.norm()).collect();
        let peak = mag.iter().cloned().fold(0.0, f64::max);
        mag.iter().map(|m| 20.0 * (m / peak).log10()).collect()
    }

    /// The defining property of the (symmetric) Dolph–Chebyshev window: every side lobe peaks at
    /// exactly `-at` dB, and the main lobe ends (first null) at `(m/pi) acos(1/beta)` bins.
    #[test]
    fn chebwin_is_equiripple_at_the_requested_attenuation() {
        for &(m, at) in &[(65usize, 120.0f64), (64, 120.0), (51, 60.0), (100, 90.0)] {
            let w = chebwin(m, at, true);
            let pad = 64 * 1024;
            let db = dense_spectrum_db(&w, pad);
            // First null of the main lobe, in bins of the length-m DFT.
            let order = (m - 1) as f64;
            let beta = ((10f64.powf(at / 20.0)).acosh() / order).cosh();
            let null_bins = (m as f64 / PI) * (1.0 / beta).acos();
            let null_idx = (null_bins * pad as f64 / m as f64) as usize;
            // Largest value beyond the first null: the side-lobe level.
            let side = db[null_idx + 2..].iter().cloned().fold(f64::MIN, f64::max);
            assert!(
                (side + at).abs() < 1e-6,
                "m={m} at={at}: side lobes at {side} dB"
            );
            // Local maxima beyond the null are all at -at dB (equiripple), checked on the peaks.
            let mut peaks = 0;
            for i in null_idx + 2..db.len() - 1 {
                if db[i] > db[i - 1] && db[i] >= db[i + 1] && db[i] > -at - 3.0 {
                    assert!((db[i] + at).abs() < 0.01, "m={m}: lobe at {} dB", db[i]);
                    peaks += 1;
                }
            }
            assert!(
                peaks >= (m - 1) / 2 - 2,
                "m={m}: only {peaks} side lobes found"
            );
            // Just inside the null the main lobe is still above the side-lobe level.
            let inside = null_idx - pad / m / 8;
            assert!(db[inside] > -at, "m={m}: main lobe too narrow");
        }
    }

    /// The periodic window's defining property (its values against SciPy's are checked in
    /// `tests/dsp_reference.rs`).
    #[test]
    fn chebwin_periodic_is_symmetric_about_n_over_2() {
        let p = chebwin(100, 120.0, false);
        assert_eq!(p.len(), 100);
        // Periodic window of even length: symmetric about n/2 (w[k] = w[n-k]).
        for k in 1..100 {
            assert!((p[k] - p[100 - k]).abs() < 1e-14);
        }
        assert!(p.iter().cloned().fold(0.0, f64::max) == 1.0);
    }

    #[test]
    fn hann_windows() {
        let h = hann_symmetric(5);
        let expect = [0.0, 0.5, 1.0, 0.5, 0.0];
        for (a, b) in h.iter().zip(expect) {
            assert!((a - b).abs() < 1e-15);
        }
        let p = hann_periodic(4);
        let expect = [0.0, 0.5, 1.0, 0.5];
        for (a, b) in p.iter().zip(expect) {
            assert!((a - b).abs() < 1e-15);
        }
    }
}
