//! Short-time Fourier transform with a fixed window, no centring or padding (frames start at
//! sample 0, `1 + floor((L - N) / hop)` frames), and its adjoint (spec sec. 5 step 2 and sec. 8).
//!
//! The FFTs are `realfft` plans made once per [`Stft`]. The adjoint maps a gradient with respect
//! to the complex spectra (`dL/dRe + j dL/dIm` per bin) back to the signal: inverse real FFT
//! with the interior bins halved (they stand for two conjugate bins), times the window,
//! overlap-added into the signal. Per-call buffers live in an [`StftScratch`] owned by the
//! caller, one per thread.

use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use rustfft::num_complex::Complex64;
use std::sync::Arc;

/// A planned STFT.
#[derive(Clone)]
pub struct Stft {
    n: usize,
    hop: usize,
    window: Vec<f64>,
    r2c: Arc<dyn RealToComplex<f64>>,
    c2r: Arc<dyn ComplexToReal<f64>>,
}

impl std::fmt::Debug for Stft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stft")
            .field("n", &self.n)
            .field("hop", &self.hop)
            .finish()
    }
}

/// Reusable buffers for [`Stft`] calls (one per thread).
#[derive(Clone, Debug, Default)]
pub struct StftScratch {
    frame: Vec<f64>,
    spec: Vec<Complex64>,
    fft_scratch: Vec<Complex64>,
}

impl Stft {
    /// An STFT with frame length `window.len()` (even) and hop `hop`.
    pub fn new(window: Vec<f64>, hop: usize) -> Self {
        let n = window.len();
        assert!(
            n >= 2 && n.is_multiple_of(2) && hop > 0,
            "STFT needs even N and hop > 0"
        );
        let mut planner = RealFftPlanner::<f64>::new();
        Self {
            n,
            hop,
            window,
            r2c: planner.plan_fft_forward(n),
            c2r: planner.plan_fft_inverse(n),
        }
    }

    /// Frame length N.
    pub fn frame_len(&self) -> usize {
        self.n
    }

    /// Hop size.
    pub fn hop(&self) -> usize {
        self.hop
    }

    /// Number of bins per frame, `N/2 + 1`.
    pub fn bins(&self) -> usize {
        self.n / 2 + 1
    }

    /// The window.
    pub fn window(&self) -> &[f64] {
        &self.window
    }

    /// Number of frames for a signal of `len` samples (`0` if `len < N`).
    pub fn num_frames(&self, len: usize) -> usize {
        if len < self.n {
            0
        } else {
            1 + (len - self.n) / self.hop
        }
    }

    /// A scratch sized for this STFT.
    pub fn scratch(&self) -> StftScratch {
        let s = self.r2c.get_scratch_len().max(self.c2r.get_scratch_len());
        StftScratch {
            frame: vec![0.0; self.n],
            spec: vec![Complex64::new(0.0, 0.0); self.bins()],
            fft_scratch: vec![Complex64::new(0.0, 0.0); s],
        }
    }

    fn fit(&self, s: &mut StftScratch) {
        if s.frame.len() != self.n {
            *s = self.scratch();
        }
    }

    /// Spectra of the frames of `x` (scaled by `scale`), frame-major into `out`
    /// (`num_frames * bins` values).
    pub fn forward(&self, x: &[f64], scale: f64, out: &mut [Complex64], s: &mut StftScratch) {
        self.fit(s);
        let t = self.num_frames(x.len());
        let k = self.bins();
        assert_eq!(out.len(), t * k);
        for (f, spec) in out.chunks_exact_mut(k).enumerate() {
            let seg = &x[f * self.hop..f * self.hop + self.n];
            for ((d, &v), &w) in s.frame.iter_mut().zip(seg).zip(&self.window) {
                *d = scale * v * w;
            }
            self.r2c
                .process_with_scratch(&mut s.frame, spec, &mut s.fft_scratch)
                .expect("STFT sizes are fixed");
        }
    }

    /// Adjoint of [`forward`](Self::forward): given `g[t*bins + k] = dL/dRe X + j dL/dIm X`,
    /// writes `dL/dx` (length `len`, zero beyond the last frame) into `out`.
    pub fn adjoint(&self, g: &[Complex64], scale: f64, out: &mut [f64], s: &mut StftScratch) {
        self.fit(s);
        let t = self.num_frames(out.len());
        let k = self.bins();
        assert_eq!(g.len(), t * k);
        out.iter_mut().for_each(|v| *v = 0.0);
        for (f, gf) in g.chunks_exact(k).enumerate() {
            // dL/dx[n] = Re sum_{k=0}^{N/2} G_k e^{+j 2 pi k n / N}; the unnormalised inverse real
            // FFT computes Z_0 + Z_{N/2} (-1)^n + 2 Re sum_{0<k<N/2} Z_k e^{...}, so halve the
            // interior bins and drop the imaginary parts of DC and Nyquist.
            s.spec.copy_from_slice(gf);
            for v in &mut s.spec[1..k - 1] {
                *v *= 0.5;
            }
            s.spec[0].im = 0.0;
            s.spec[k - 1].im = 0.0;
            self.c2r
                .process_with_scratch(&mut s.spec, &mut s.frame, &mut s.fft_scratch)
                .expect("STFT sizes are fixed");
            let seg = &mut out[f * self.hop..f * self.hop + self.n];
            for ((o, &v), &w) in seg.iter_mut().zip(&s.frame).zip(&self.window) {
                *o += scale * v * w;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::window::hann_symmetric;
    use std::f64::consts::PI;

    /// Forward against a direct DFT, and `<A x, G>_R = <x, A^T G>` for random data.
    #[test]
    fn forward_matches_dft_and_adjoint_identity_holds() {
        let n = 64;
        let stft = Stft::new(hann_symmetric(n), 24);
        let len = 150;
        let x: Vec<f64> = (0..len)
            .map(|i| ((i * 37 % 11) as f64 - 5.0) * 0.1)
            .collect();
        let t = stft.num_frames(len);
        assert_eq!(t, 1 + (150 - 64) / 24);
        let k = stft.bins();
        let mut s = stft.scratch();
        let mut spec = vec![Complex64::new(0.0, 0.0); t * k];
        stft.forward(&x, 2.0, &mut spec, &mut s);
        for f in 0..t {
            for b in 0..k {
                let mut acc = Complex64::new(0.0, 0.0);
                for i in 0..n {
                    acc += Complex64::from_polar(
                        2.0 * x[f * 24 + i] * stft.window()[i],
                        -2.0 * PI * (b * i) as f64 / n as f64,
                    );
                }
                assert!((acc - spec[f * k + b]).norm() < 1e-12);
            }
        }
        let g: Vec<Complex64> = (0..t * k)
            .map(|i| Complex64::new(((i * 13) % 7) as f64 - 3.0, ((i * 5) % 9) as f64 - 4.0))
            .collect();
        let mut xt = vec![0.0; len];
        stft.adjoint(&g, 2.0, &mut xt, &mut s);
        let lhs: f64 = spec
            .iter()
            .zip(&g)
            .map(|(a, b)| a.re * b.re + a.im * b.im)
            .sum();
        let rhs: f64 = x.iter().zip(&xt).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-10 * lhs.abs(), "{lhs} vs {rhs}");
        // Samples after the last frame get no gradient.
        let last = (t - 1) * 24 + n;
        assert!(xt[last..].iter().all(|&v| v == 0.0));
    }
}
