//! Error-to-signal ratio (paper eq. 13), the DC loss and the harmonic ESR (HESR, paper sec. 2.6),
//! with the gradients the fine-tuning loss needs (spec sec. 8).

use crate::{Error, Result};

/// `ESR(pred, target) = sum (target - pred)^2 / sum target^2` (eq. 13).
pub fn esr(pred: &[f64], target: &[f64]) -> f64 {
    assert_eq!(pred.len(), target.len());
    let (mut e, mut s) = (0.0, 0.0);
    for (&p, &t) in pred.iter().zip(target) {
        e += (t - p) * (t - p);
        s += t * t;
    }
    e / s
}

/// ESR and its gradient `d ESR / d pred = -2 (target - pred) / sum target^2` into `grad`.
pub fn esr_and_grad(pred: &[f64], target: &[f64], grad: &mut [f64]) -> f64 {
    assert_eq!(pred.len(), target.len());
    assert_eq!(pred.len(), grad.len());
    let s: f64 = target.iter().map(|t| t * t).sum();
    let mut e = 0.0;
    for ((g, &p), &t) in grad.iter_mut().zip(pred).zip(target) {
        e += (t - p) * (t - p);
        *g = -2.0 * (t - p) / s;
    }
    e / s
}

/// `DC(pred, target) = mean(target - pred)^2 / mean(target^2)`.
pub fn dc_loss(pred: &[f64], target: &[f64]) -> f64 {
    assert_eq!(pred.len(), target.len());
    let n = pred.len() as f64;
    let m: f64 = pred.iter().zip(target).map(|(p, t)| t - p).sum::<f64>() / n;
    let s: f64 = target.iter().map(|t| t * t).sum::<f64>() / n;
    m * m / s
}

/// DC loss and its gradient `-2 mean(target - pred) / (n mean(target^2))` (the same for every
/// sample) into `grad`.
pub fn dc_loss_and_grad(pred: &[f64], target: &[f64], grad: &mut [f64]) -> f64 {
    let n = pred.len() as f64;
    let m: f64 = pred.iter().zip(target).map(|(p, t)| t - p).sum::<f64>() / n;
    let s: f64 = target.iter().map(|t| t * t).sum::<f64>() / n;
    grad.iter_mut().for_each(|g| *g = -2.0 * m / (n * s));
    m * m / s
}

/// Harmonic ESR: the ESR between harmonic magnitude vectors `|C_m|` (paper sec. 2.6,
/// `E(|Y~|, |Y~_ref|)`). Both vectors come from the same f0 and so have the same length.
pub fn hesr(mags: &[f64], ref_mags: &[f64]) -> Result<f64> {
    if mags.len() != ref_mags.len() {
        return Err(Error::InvalidArgument(format!(
            "HESR of {} vs {} harmonics",
            mags.len(),
            ref_mags.len()
        )));
    }
    Ok(esr(mags, ref_mags))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd_check(f: impl Fn(&[f64]) -> f64, x: &[f64], g: &[f64]) {
        let h = 1e-6;
        for i in 0..x.len() {
            let mut a = x.to_vec();
            let mut b = x.to_vec();
            a[i] += h;
            b[i] -= h;
            let fd = (f(&a) - f(&b)) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() <= 1e-7 * g[i].abs().max(1e-3),
                "{i}: {fd} vs {}",
                g[i]
            );
        }
    }

    #[test]
    fn esr_and_dc_values_and_gradients() {
        let t: Vec<f64> = (0..50).map(|i| (i as f64 * 0.3).sin() + 0.1).collect();
        let p: Vec<f64> = (0..50).map(|i| (i as f64 * 0.31).sin() * 0.9).collect();
        assert_eq!(esr(&t, &t), 0.0);
        assert!((esr(&vec![0.0; 50], &t) - 1.0).abs() < 1e-15);
        let mut g = vec![0.0; 50];
        let e = esr_and_grad(&p, &t, &mut g);
        assert_eq!(e, esr(&p, &t));
        fd_check(|x| esr(x, &t), &p, &g);
        let d = dc_loss_and_grad(&p, &t, &mut g);
        assert!((d - dc_loss(&p, &t)).abs() < 1e-15);
        fd_check(|x| dc_loss(x, &t), &p, &g);
        assert!(hesr(&[1.0, 2.0], &[1.0]).is_err());
    }
}
