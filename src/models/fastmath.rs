//! Vectorisable elementary functions for the hot loops of the training engines.
//!
//! libm's scalar `exp`/`tanh` calls stop loops from vectorising and were a third (LSTM) and a
//! sixth (WaveNet) of the training time, and no well-kept crate offers branch-free,
//! correctly-rounded-to-a-few-ulps versions generic over f32/f64, so they are written here:
//! `exp(x) = 2ⁿ exp(r)` with a two-part ln 2 reduction and a Taylor polynomial, `tanh` and the
//! sigmoid built on it. `FMA` selects fused multiply-adds for code compiled with that target
//! feature.

use super::Real;

/// `exp` for f64 and f32 written so that loops over it vectorise (the libm call does not):
/// `exp(x) = 2ⁿ exp(r)`, `n = round(x / ln 2)`, `r = x − n ln 2` (two-part ln 2), `exp(r)` by
/// its Taylor polynomial to below half an ulp on `|r| ≤ ln 2 / 2`, `2ⁿ` built from its bits.
/// The argument is clamped to the range where `2ⁿ` is a normal number (NaN passes through).
/// Other `Real` types use their own `exp`.
#[inline(always)]
pub(crate) fn exp<T: Real, const FMA: bool>(x: T) -> T {
    use std::any::TypeId;
    if TypeId::of::<T>() == TypeId::of::<f64>() {
        // SAFETY: T is f64.
        let v: f64 = unsafe { std::mem::transmute_copy(&x) };
        let y = exp_f64::<FMA>(v);
        unsafe { std::mem::transmute_copy(&y) }
    } else if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: T is f32.
        let v: f32 = unsafe { std::mem::transmute_copy(&x) };
        let y = exp_f32::<FMA>(v);
        unsafe { std::mem::transmute_copy(&y) }
    } else {
        x.exp()
    }
}

#[inline(always)]
fn exp_f64<const FMA: bool>(x: f64) -> f64 {
    const MAGIC: f64 = 6755399441055744.0; // 1.5 · 2^52: adding it rounds to an integer.
                                           // fdlibm's two-part ln 2; n · LN2_HI is exact.
    const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
    const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
    let x = x.clamp(-708.0, 709.0);
    let k = x * std::f64::consts::LOG2_E + MAGIC;
    let n = k - MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor coefficients 1/13! … 1/0!.
    const C: [f64; 14] = [
        1.0 / 6227020800.0,
        1.0 / 479001600.0,
        1.0 / 39916800.0,
        1.0 / 3628800.0,
        1.0 / 362880.0,
        1.0 / 40320.0,
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ];
    let mut p = C[0];
    for &c in &C[1..] {
        p = madd::<_, FMA>(c, p, r);
    }
    let scale = f64::from_bits(k.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(1023) << 52);
    p * scale
}

#[inline(always)]
fn exp_f32<const FMA: bool>(x: f32) -> f32 {
    const MAGIC: f32 = 12582912.0; // 1.5 · 2^23
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    let k = x * std::f32::consts::LOG2_E + MAGIC;
    let n = k - MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    const C: [f32; 8] = [
        1.0 / 5040.0,
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ];
    let mut p = C[0];
    for &c in &C[1..] {
        p = madd::<_, FMA>(c, p, r);
    }
    let scale = f32::from_bits(k.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127) << 23);
    p * scale
}

/// `1 / (1 + e^{-x})`.
#[inline(always)]
pub(crate) fn sigmoid<T: Real, const FMA: bool>(x: T) -> T {
    T::one() / (T::one() + exp::<T, FMA>(-x))
}

/// `1 − 2 / (1 + e^{2x})`: absolute error of a few ulps of 1 (what the recurrence sees).
#[inline(always)]
pub(crate) fn tanh<T: Real, const FMA: bool>(x: T) -> T {
    let two = T::one() + T::one();
    T::one() - two / (T::one() + exp::<T, FMA>(two * x))
}

/// `x + y·z`, fused where the target has FMA (a separate multiply and add otherwise, since the
/// library call behind an unfused `mul_add` would be slow).
#[inline(always)]
pub(crate) fn madd<T: Real, const FMA: bool>(x: T, y: T, z: T) -> T {
    if FMA {
        y.mul_add(z, x)
    } else {
        x + y * z
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_the_whole_range() {
        let mut worst64: f64 = 0.0;
        let mut worst32: f64 = 0.0;
        let mut x = -700.0;
        while x < 700.0 {
            for e in [exp_f64::<false>(x), exp_f64::<true>(x)] {
                worst64 = worst64.max((e / x.exp() - 1.0).abs());
            }
            if x.abs() < 80.0 {
                let x32 = x as f32;
                for e in [exp_f32::<false>(x32), exp_f32::<true>(x32)] {
                    worst32 = worst32.max((e as f64 / (x32 as f64).exp() - 1.0).abs());
                }
            }
            x += 0.012_345_6;
        }
        assert!(worst64 < 4e-16, "f64 exp relative error {worst64:e}");
        assert!(worst32 < 3e-7, "f32 exp relative error {worst32:e}");
        assert!(exp_f64::<false>(f64::NAN).is_nan() && exp_f32::<false>(f32::NAN).is_nan());
        assert_eq!(exp_f64::<false>(-1e6), exp_f64::<false>(-708.0));
        for x in [-30.0, -3.0, -0.5, -1e-9, 0.0, 1e-9, 0.5, 3.0, 30.0f64] {
            assert!((tanh::<f64, false>(x) - x.tanh()).abs() < 4e-16);
            assert!((tanh::<f64, true>(x) - x.tanh()).abs() < 4e-16);
            assert!((sigmoid::<f64, false>(x) - 1.0 / (1.0 + (-x).exp())).abs() < 4e-16);
        }
    }

    /// tanh and the sigmoid against libm on a dense grid of the range networks see: 4e-16
    /// absolute (f64), 3e-7 (f32); NaN stays NaN (a diverging model must show).
    #[test]
    fn tanh_and_sigmoid_on_a_dense_grid() {
        let (mut e_tanh, mut e_sig, mut e_tanh32) = (0.0f64, 0.0f64, 0.0f64);
        for i in -20_000..=20_000 {
            let x = i as f64 * 1e-3;
            e_tanh = e_tanh.max((tanh::<f64, false>(x) - x.tanh()).abs());
            e_sig = e_sig.max((sigmoid::<f64, true>(x) - 1.0 / (1.0 + (-x).exp())).abs());
            e_tanh32 = e_tanh32.max((tanh::<f32, false>(x as f32) as f64 - x.tanh()).abs());
        }
        assert!(e_tanh < 4e-16, "tanh {e_tanh:e}");
        assert!(e_sig < 4e-16, "sigmoid {e_sig:e}");
        assert!(e_tanh32 < 3e-7, "tanh f32 {e_tanh32:e}");
        assert!(tanh::<f64, false>(f64::NAN).is_nan());
    }
}
