//! FFT-domain ("giant FFT") resampling by an integer factor, as used for the paper's 2x
//! oversampled baselines (sec. 4.4, spec sec. 7; Välimäki & Bilbao 2023).
//!
//! The whole signal is transformed at once: upsampling appends zero bins above the old
//! Nyquist frequency, downsampling keeps only the bins below the new one. This is an ideal
//! (brick-wall) band-limited interpolator for the periodic extension of the signal.

use realfft::num_complex::Complex64;
use realfft::RealFftPlanner;

/// Upsamples `x` by `factor` (output length `factor · x.len()`), band-limited to the original
/// Nyquist frequency. For even lengths the old Nyquist bin is split evenly between its
/// positive and negative frequency images, so a real signal stays real and a sinusoid at any
/// frequency below Nyquist is interpolated exactly (for whole periods in the signal).
pub fn upsample(x: &[f64], factor: usize) -> Vec<f64> {
    assert!(factor >= 1, "resampling factor must be at least 1");
    let n = x.len();
    if factor == 1 || n == 0 {
        return x.to_vec();
    }
    let m = n * factor;
    let mut planner = RealFftPlanner::<f64>::new();
    let mut input = x.to_vec();
    let mut spec = planner.plan_fft_forward(n).make_output_vec();
    planner
        .plan_fft_forward(n)
        .process(&mut input, &mut spec)
        .expect("FFT sizes match");
    let mut big = vec![Complex64::new(0.0, 0.0); m / 2 + 1];
    big[..spec.len()].copy_from_slice(&spec);
    if n.is_multiple_of(2) {
        // The old Nyquist bin holds both the +fs/2 and -fs/2 components: keep half of it.
        big[n / 2] *= 0.5;
    }
    // Scale: the inverse real FFT is unnormalised; divide by the original length to undo the
    // forward transform and keep amplitudes.
    let scale = 1.0 / n as f64;
    big.iter_mut().for_each(|c| *c *= scale);
    let mut out = vec![0.0; m];
    planner
        .plan_fft_inverse(m)
        .process(&mut big, &mut out)
        .expect("FFT sizes match");
    out
}

/// Downsamples `x` by `factor` (its length must be a multiple of `factor`), removing all
/// content above the new Nyquist frequency.
pub fn downsample(x: &[f64], factor: usize) -> Vec<f64> {
    assert!(factor >= 1, "resampling factor must be at least 1");
    if factor == 1 || x.is_empty() {
        return x.to_vec();
    }
    assert!(
        x.len().is_multiple_of(factor),
        "signal length {} is not a multiple of the factor {factor}",
        x.len()
    );
    let m = x.len();
    let n = m / factor;
    let mut planner = RealFftPlanner::<f64>::new();
    let mut input = x.to_vec();
    let mut spec = planner.plan_fft_forward(m).make_output_vec();
    planner
        .plan_fft_forward(m)
        .process(&mut input, &mut spec)
        .expect("FFT sizes match");
    let mut small: Vec<Complex64> = spec[..n / 2 + 1].to_vec();
    if n.is_multiple_of(2) {
        // The new Nyquist bin must be real; its image at -fs'/2 is the conjugate, so the
        // real part, doubled, is the sum of both images' contributions.
        small[n / 2] = Complex64::new(2.0 * small[n / 2].re, 0.0);
    }
    small[0].im = 0.0;
    let scale = 1.0 / m as f64;
    small.iter_mut().for_each(|c| *c *= scale);
    let mut out = vec![0.0; n];
    planner
        .plan_fft_inverse(n)
        .process(&mut small, &mut out)
        .expect("FFT sizes match");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn sine(n: usize, cycles: f64, rate_factor: usize, phase: f64) -> Vec<f64> {
        (0..n * rate_factor)
            .map(|i| (2.0 * PI * cycles * i as f64 / (n * rate_factor) as f64 + phase).sin())
            .collect()
    }

    /// A sinusoid with a whole number of periods is interpolated exactly: upsampling gives
    /// the same sinusoid sampled twice as fast (closed form), to rounding error.
    #[test]
    fn upsampling_a_periodic_sine_is_exact() {
        for &(n, cycles) in &[(1000usize, 37.0), (1001, 250.0), (64, 31.0)] {
            let x = sine(n, cycles, 1, 0.3);
            let up = upsample(&x, 2);
            let expect = sine(n, cycles, 2, 0.3);
            let err = up
                .iter()
                .zip(&expect)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-12, "n={n} cycles={cycles}: max error {err}");
        }
    }

    /// Downsampling keeps components below the new Nyquist frequency exactly and removes
    /// those above it completely.
    #[test]
    fn downsampling_removes_the_upper_band() {
        let n = 2000;
        let low = sine(n, 123.0, 2, 0.7);
        let high = sine(n, 1500.0, 2, 1.1); // above the new Nyquist (1000 cycles)
        let mix: Vec<f64> = low.iter().zip(&high).map(|(a, b)| a + 0.5 * b).collect();
        let down = downsample(&mix, 2);
        let expect = sine(n, 123.0, 1, 0.7);
        let err = down
            .iter()
            .zip(&expect)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "max error {err}");
    }

    #[test]
    fn up_then_down_is_identity() {
        let x: Vec<f64> = (0..777)
            .map(|i| ((i * 7919) % 101) as f64 / 50.0 - 1.0)
            .collect();
        let back = downsample(&upsample(&x, 2), 2);
        let err = back
            .iter()
            .zip(&x)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-12, "max error {err}");
    }
}
