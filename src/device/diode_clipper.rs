//! The diode clipper of Yeh, Abel & Smith (2007): the clipping stage of many distortion pedals.
//!
//! ```text
//!   u(t) ──[ R ]──┬────────┬────────┬── v(t)
//!                 │        │        │
//!                ─┴─ C    ─┴─ D1   ─┬─ D2     D1 ▼, D2 ▲ (antiparallel)
//!                ─┬─      ─▲─      ─▼─
//!                 │        │        │
//!   ground ───────┴────────┴────────┴──
//! ```
//!
//! Kirchhoff's current law at the output node, with the Shockley equation for each diode
//! (`i = Is (exp(v / Vt) - 1)`, the pair giving `2 Is sinh(v / Vt)`):
//!
//! ```text
//!   dv/dt = (u - v) / (R C) - (2 Is / C) sinh(v / Vt)
//! ```
//!
//! Values (Yeh, Abel & Smith, "Simulation of the diode limiter in guitar distortion circuits by
//! numerical solution of ordinary differential equations", Proc. DAFx-07, Bordeaux, 2007):
//! R = 2.2 kΩ, C = 10 nF (the low-pass corner `1 / (2π R C)` = 7.23 kHz), 1N914 diodes with
//! Is = 2.52 nA and `Vt = n kT/q` = 45.3 mV (emission coefficient 1.752 folded in).
//!
//! Time stepping: BDF2, `v[n+1] - 4/3 v[n] + 1/3 v[n-1] = 2/3 h f(v[n+1], u[n+1])`, second
//! order and L-stable ("stiffly stable", Gear). The ODE is stiff when the diodes conduct: the
//! small-signal pole `(1/R + (2 Is/Vt) cosh(v/Vt)) / C` reaches about 1e7 s^-1 at 0.65 V, about
//! 12 times the step rate at 16 x 48 kHz. The trapezoidal rule is A-stable but not L-stable:
//! its amplification `(1 - hλ/2)/(1 + hλ/2)` is -0.71 there, a slowly decaying ringing at the
//! oversampled Nyquist frequency. BDF2's goes to 0. It needs the input only at the grid points,
//! which the band-limited interpolation provides, and its history at rest is exactly zero, so
//! no start-up step is needed.
//!
//! The implicit equation of a step, `g(v) = (1 + a) v + b sinh(v / Vt) - r = 0` with
//! `a = 2h / (3 R C)`, `b = 4 h Is / (3 C)`, `r = (4 v[n] - v[n-1]) / 3 + a u[n+1]`, is
//! increasing in `v`, and its root has the sign of `r` with `|v| <= |r| / (1 + a)`. Newton's
//! method starts from the linear extrapolation `2 v[n] - v[n-1]` and is kept inside that
//! bracket (as `rtsafe` in Numerical Recipes): a step that leaves it, is not finite, or does not
//! halve the previous step is replaced by bisection, so it always converges.
//! It stops when a step changes `v` by at most 1e-13 V (quadratic convergence: the error is then
//! far smaller); after 100 iterations without that (bisection alone needs under 60 from any
//! input up to 1e5 V) the render stops with an error, never with an approximate sample.

use super::oversampled::CircuitStep;
use crate::{Error, Result};

/// Newton stops when a step is at most this (V).
const NEWTON_TOLERANCE_V: f64 = 1e-13;
/// Newton iterations per sample before giving up with an error.
const NEWTON_MAX_ITERATIONS: usize = 100;

/// Component values and the level scaling of a diode clipper.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DiodeClipper {
    /// Series resistance, Ω.
    pub r: f64,
    /// Shunt capacitance, F.
    pub c: f64,
    /// Diode saturation current, A.
    pub is: f64,
    /// Diode thermal voltage times emission coefficient, V.
    pub vt: f64,
    /// Volts at the input per unit of the audio input (digital full scale 1.0 = `drive` V).
    pub drive: f64,
    /// Audio output units per volt at the output node.
    pub output_gain: f64,
}

impl DiodeClipper {
    /// The values of Yeh, Abel & Smith (2007), with digital full scale = `drive` volts at the
    /// input and 1 V at the output = full scale.
    pub fn yeh_abel_smith(drive: f64) -> Self {
        Self {
            r: 2.2e3,
            c: 10e-9,
            is: 2.52e-9,
            vt: 45.3e-3,
            drive,
            output_gain: 1.0,
        }
    }

    /// The output voltage for input voltages `u` sampled at `fs_os` Hz, from rest: the ODE
    /// solver alone, without interpolation or decimation (for checking it against other
    /// solvers).
    pub fn solve(&self, u: &[f64], fs_os: f64) -> Result<Vec<f64>> {
        let mut s = Stepper::new(self, fs_os, 1.0, 1.0);
        u.iter().map(|&x| s.step(x)).collect()
    }

    /// The stepper for audio-unit input at oversampled rate `fs_os`.
    pub(crate) fn stepper(&self, fs_os: f64) -> Stepper {
        Stepper::new(self, fs_os, self.drive, self.output_gain)
    }
}

/// BDF2 state of a diode clipper.
pub(crate) struct Stepper {
    a: f64,
    b: f64,
    vt: f64,
    input_gain: f64,
    output_gain: f64,
    v: f64,
    v_prev: f64,
    steps: u64,
}

impl Stepper {
    fn new(d: &DiodeClipper, fs_os: f64, input_gain: f64, output_gain: f64) -> Self {
        let h = 1.0 / fs_os;
        Self {
            a: 2.0 * h / (3.0 * d.r * d.c),
            b: 4.0 * h * d.is / (3.0 * d.c),
            vt: d.vt,
            input_gain,
            output_gain,
            v: 0.0,
            v_prev: 0.0,
            steps: 0,
        }
    }

    /// Solves `g(v) = (1 + a) v + b sinh(v / vt) - r = 0` by bracketed Newton.
    fn solve_step(&self, r: f64) -> Result<f64> {
        let (a, b, vt) = (self.a, self.b, self.vt);
        let bound = r / (1.0 + a);
        let (mut lo, mut hi) = if bound < 0.0 {
            (bound, 0.0)
        } else {
            (0.0, bound)
        };
        let mut v = (2.0 * self.v - self.v_prev).clamp(lo, hi);
        let mut last_step = hi - lo;
        for _ in 0..NEWTON_MAX_ITERATIONS {
            let x = v / vt;
            let g = (1.0 + a) * v + b * x.sinh() - r;
            if g == 0.0 {
                return Ok(v);
            }
            if g > 0.0 {
                hi = v;
            } else {
                lo = v;
            }
            let dg = 1.0 + a + b / vt * x.cosh();
            let newton = v - g / dg;
            // A Newton step inside the bracket that at least halves the previous step, else
            // bisection (far up the exponential, Newton creeps by about Vt a step); converged
            // when a Newton step is below the tolerance (or the bracket is).
            let step = (newton - v).abs();
            let (next, converged) =
                if newton.is_finite() && (lo..=hi).contains(&newton) && step <= 0.5 * last_step {
                    (newton, step <= NEWTON_TOLERANCE_V)
                } else {
                    (0.5 * (lo + hi), hi - lo <= NEWTON_TOLERANCE_V)
                };
            last_step = (next - v).abs();
            v = next;
            if converged {
                return Ok(v);
            }
        }
        Err(Error::InvalidArgument(format!(
            "diode clipper: Newton's method did not converge within {NEWTON_MAX_ITERATIONS} \
             iterations at oversampled step {} (input {} V)",
            self.steps,
            (r - (4.0 * self.v - self.v_prev) / 3.0) / a
        )))
    }
}

impl CircuitStep for Stepper {
    fn step(&mut self, u: f64) -> Result<f64> {
        let u = u * self.input_gain;
        let r = (4.0 * self.v - self.v_prev) / 3.0 + self.a * u;
        let v = self.solve_step(r)?;
        self.v_prev = self.v;
        self.v = v;
        self.steps += 1;
        Ok(v * self.output_gain)
    }
}
