//! Activation functions of NAM WaveNets (and their derivatives, for training).
//!
//! Names follow NAM: the Python package looks up `torch.nn.<Name>`, the C++ plugin its own
//! table; we accept the names both use.

use super::Real;

/// A pointwise activation function.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Tanh,
    /// NAM C++'s rational tanh approximation (`fast_tanh`).
    FastTanh,
    /// Clamp to [-1, 1].
    Hardtanh,
    ReLU,
    /// `max(0, x) + slope * min(0, x)`; torch's default slope is 0.01.
    LeakyReLU {
        slope: f64,
    },
    Sigmoid,
    /// `x * sigmoid(x)` (torch `SiLU`, NAM `SiLU`).
    SiLU,
    /// `x * relu6(x + 3) / 6`.
    HardSwish,
    /// `x / (1 + |x|)`.
    Softsign,
    /// The identity (no activation).
    Identity,
    /// Identity inside `[min_val, max_val]`, slopes `min_slope` / `max_slope` outside (NAM
    /// `LeakyHardtanh`; torch `Hardtanh(min, max)` is this with both slopes 0).
    LeakyHardtanh {
        min_val: f64,
        max_val: f64,
        min_slope: f64,
        max_slope: f64,
    },
    /// `(1 + x / (1 + |x|)) / 2` (NAM `Softsigmoid`).
    Softsigmoid,
}

impl Activation {
    /// Every supported activation (LeakyReLU with torch's default slope).
    pub const ALL: [Activation; 12] = [
        Activation::Tanh,
        Activation::FastTanh,
        Activation::Hardtanh,
        Activation::ReLU,
        Activation::LeakyReLU { slope: 0.01 },
        Activation::Sigmoid,
        Activation::SiLU,
        Activation::HardSwish,
        Activation::Softsign,
        Activation::Identity,
        Activation::LeakyHardtanh {
            min_val: -1.0,
            max_val: 1.0,
            min_slope: 0.01,
            max_slope: 0.01,
        },
        Activation::Softsigmoid,
    ];

    /// Parses a NAM activation name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "Tanh" => Activation::Tanh,
            "Fasttanh" | "FastTanh" => Activation::FastTanh,
            "Hardtanh" | "HardTanh" => Activation::Hardtanh,
            "ReLU" => Activation::ReLU,
            "LeakyReLU" => Activation::LeakyReLU { slope: 0.01 },
            "Sigmoid" => Activation::Sigmoid,
            "SiLU" => Activation::SiLU,
            "Hardswish" | "HardSwish" => Activation::HardSwish,
            "Softsign" => Activation::Softsign,
            "Identity" => Activation::Identity,
            "LeakyHardtanh" | "LeakyHardTanh" => Activation::LeakyHardtanh {
                min_val: -1.0,
                max_val: 1.0,
                min_slope: 0.01,
                max_slope: 0.01,
            },
            "Softsigmoid" => Activation::Softsigmoid,
            _ => return None,
        })
    }

    /// The NAM name of the activation.
    pub fn name(&self) -> &'static str {
        match self {
            Activation::Tanh => "Tanh",
            Activation::FastTanh => "Fasttanh",
            Activation::Hardtanh => "Hardtanh",
            Activation::ReLU => "ReLU",
            Activation::LeakyReLU { .. } => "LeakyReLU",
            Activation::Sigmoid => "Sigmoid",
            Activation::SiLU => "SiLU",
            Activation::HardSwish => "Hardswish",
            Activation::Softsign => "Softsign",
            Activation::Identity => "Identity",
            Activation::LeakyHardtanh { .. } => "LeakyHardtanh",
            Activation::Softsigmoid => "Softsigmoid",
        }
    }

    /// Applies the activation to one value.
    #[inline(always)]
    pub fn apply<T: Real>(&self, x: T) -> T {
        let one = T::one();
        match *self {
            Activation::Tanh => x.tanh_fwd(),
            Activation::FastTanh => fast_tanh(x),
            Activation::Hardtanh => x.max(-one).min(one),
            Activation::ReLU => x.max(T::zero()),
            Activation::LeakyReLU { slope } => {
                if x > T::zero() {
                    x
                } else {
                    x * T::from_f64_lossy(slope)
                }
            }
            Activation::Sigmoid => sigmoid(x),
            Activation::SiLU => x * sigmoid(x),
            Activation::HardSwish => {
                let three = T::from_f64_lossy(3.0);
                let six = T::from_f64_lossy(6.0);
                x * (x + three).max(T::zero()).min(six) / six
            }
            Activation::Softsign => x / (one + x.abs()),
            Activation::Identity => x,
            Activation::LeakyHardtanh {
                min_val,
                max_val,
                min_slope,
                max_slope,
            } => {
                let (lo, hi) = (T::from_f64_lossy(min_val), T::from_f64_lossy(max_val));
                if x < lo {
                    (x - lo) * T::from_f64_lossy(min_slope) + lo
                } else if x > hi {
                    (x - hi) * T::from_f64_lossy(max_slope) + hi
                } else {
                    x
                }
            }
            Activation::Softsigmoid => T::from_f64_lossy(0.5) * (one + x / (one + x.abs())),
        }
    }

    /// Applies the activation in place to a slice (the match is outside the loop, so each
    /// arm's loop can vectorise).
    #[inline]
    pub fn apply_slice<T: Real>(&self, xs: &mut [T]) {
        match *self {
            Activation::Tanh => xs.iter_mut().for_each(|x| *x = x.tanh_fwd()),
            Activation::Sigmoid => xs.iter_mut().for_each(|x| *x = x.sigmoid_fwd()),
            Activation::ReLU => xs.iter_mut().for_each(|x| *x = x.max(T::zero())),
            Activation::Hardtanh => xs
                .iter_mut()
                .for_each(|x| *x = x.max(-T::one()).min(T::one())),
            act => xs.iter_mut().for_each(|x| *x = act.apply(*x)),
        }
    }

    /// Derivative d act(x) / dx at `x` (the pre-activation value).
    #[inline(always)]
    pub fn derivative<T: Real>(&self, x: T) -> T {
        let one = T::one();
        let zero = T::zero();
        match *self {
            Activation::Tanh => {
                let t = x.tanh();
                one - t * t
            }
            Activation::FastTanh => fast_tanh_derivative(x),
            Activation::Hardtanh => {
                if x > -one && x < one {
                    one
                } else {
                    zero
                }
            }
            Activation::ReLU => {
                if x > zero {
                    one
                } else {
                    zero
                }
            }
            Activation::LeakyReLU { slope } => {
                if x > zero {
                    one
                } else {
                    T::from_f64_lossy(slope)
                }
            }
            Activation::Sigmoid => {
                let s = sigmoid(x);
                s * (one - s)
            }
            Activation::SiLU => {
                let s = sigmoid(x);
                s * (one + x * (one - s))
            }
            Activation::HardSwish => {
                let three = T::from_f64_lossy(3.0);
                if x <= -three {
                    zero
                } else if x >= three {
                    one
                } else {
                    (x + x + three) / T::from_f64_lossy(6.0)
                }
            }
            Activation::Softsign => {
                let d = one + x.abs();
                one / (d * d)
            }
            Activation::Identity => one,
            Activation::LeakyHardtanh {
                min_val,
                max_val,
                min_slope,
                max_slope,
            } => {
                if x < T::from_f64_lossy(min_val) {
                    T::from_f64_lossy(min_slope)
                } else if x > T::from_f64_lossy(max_val) {
                    T::from_f64_lossy(max_slope)
                } else {
                    one
                }
            }
            Activation::Softsigmoid => {
                let d = one + x.abs();
                T::from_f64_lossy(0.5) / (d * d)
            }
        }
    }
}

/// The logistic sigmoid `1 / (1 + exp(-x))` (in f32 through the fast tanh, see
/// [`Real::sigmoid_fwd`]).
#[inline(always)]
pub fn sigmoid<T: Real>(x: T) -> T {
    x.sigmoid_fwd()
}

/// NAM C++'s `fast_tanh`: a rational approximation of tanh.
#[inline(always)]
pub fn fast_tanh<T: Real>(x: T) -> T {
    let c = |v: f64| T::from_f64_lossy(v);
    let ax = x.abs();
    let x2 = x * x;
    (x * (c(2.45550750702956)
        + c(2.45550750702956) * ax
        + (c(0.893229853513558) + c(0.821226666969744) * ax) * x2))
        / (c(2.44506634652299)
            + (c(2.44506634652299) + x2) * (x + c(0.814642734961073) * x * ax).abs())
}

/// Derivative of [`fast_tanh`] by central difference of the closed form's pieces would be
/// imprecise; we differentiate the rational function analytically.
#[inline(always)]
fn fast_tanh_derivative<T: Real>(x: T) -> T {
    let c = |v: f64| T::from_f64_lossy(v);
    let (a, b, d, e, g, h) = (
        c(2.45550750702956),
        c(2.45550750702956),
        c(0.893229853513558),
        c(0.821226666969744),
        c(2.44506634652299),
        c(0.814642734961073),
    );
    let s = if x < T::zero() { -T::one() } else { T::one() };
    let ax = x.abs();
    let x2 = x * x;
    // numerator n(x) = x (a + b|x| + (d + e|x|) x^2)
    let n = x * (a + b * ax + (d + e * ax) * x2);
    let dn = a + c(2.0) * b * ax + c(3.0) * d * x2 + c(4.0) * e * ax * x2;
    // u(x) = x + h x|x| has the sign of x, so |u| = |x| + h x^2
    let au = ax + h * x2;
    let dau = s + c(2.0) * h * x;
    let den = g + (g + x2) * au;
    let dden = c(2.0) * x * au + (g + x2) * dau;
    (dn * den - n * dden) / (den * den)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_central_differences() {
        // Points away from the kinks of the piecewise functions (±1, 0, ±3).
        let xs = [-4.1, -2.3, -0.77, -0.31, 0.13, 0.52, 0.91, 1.7, 2.9, 3.6];
        for act in Activation::ALL {
            for &x in &xs {
                let h = 1e-6;
                let fd = (act.apply(x + h) - act.apply(x - h)) / (2.0 * h);
                let an: f64 = act.derivative(x);
                assert!(
                    (fd - an).abs() <= 1e-8 * (1.0 + an.abs()),
                    "{act:?} at {x}: fd {fd} analytic {an}"
                );
            }
        }
    }

    #[test]
    fn fast_tanh_is_close_to_tanh() {
        for i in -400..=400 {
            let x = i as f64 * 0.01;
            assert!((fast_tanh(x) - x.tanh()).abs() < 3e-3, "x = {x}");
        }
    }

    #[test]
    fn names_round_trip() {
        for act in Activation::ALL {
            assert_eq!(Activation::from_name(act.name()), Some(act));
        }
    }
}
