//! The pre-training loss of the paper's custom models (sec. 3.2): "a combination of ESR and DC
//! loss, with A-weighting pre-emphasis filtering" — as in the authors' training code
//! (Automated-GuitarAmpModelling / CoreAudioML `LossWrapper`), with its default weights:
//!
//! `L = 0.75 ESR(A p, A t) + 0.25 DC(p, t)`, over a batch of `B` items of `T` samples:
//! - `ESR = mean_{b,t} (A p - A t)² / (mean_{b,t} (A t)² + ε)`, the A-weighting `A`
//!   ([`AWeighting`]) run on each item from rest;
//! - `DC = mean_b (mean_t (p - t))² / (mean_{b,t} t² + ε)`;
//! - `ε = 1e-5`, CoreAudioML's, which keeps a silent batch finite.
//!
//! Gradients: `dESR/d(Ap) = 2 (Ap - At) / (B T (S + ε))`, carried through the filter by its
//! adjoint ([`AWeighting::apply_transposed`]); `dDC/dp_{b,t} = 2 m_b / (B T (S_raw + ε))` with
//! `m_b = mean_t (p - t)`.

use crate::dsp::a_weighting::AWeighting;
use crate::{Error, Result};

/// CoreAudioML's `epsilon` of `ESRLoss` and `DCLoss`.
pub const EPSILON: f64 = 1e-5;

/// Weights of the two terms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PretrainWeights {
    pub esr: f64,
    pub dc: f64,
}

impl Default for PretrainWeights {
    /// CoreAudioML's defaults (`{'ESRPre': 0.75, 'DC': 0.25}`).
    fn default() -> Self {
        PretrainWeights {
            esr: 0.75,
            dc: 0.25,
        }
    }
}

/// The value of the loss and of its terms (linear).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PretrainLossValue {
    pub value: f64,
    pub esr: f64,
    pub dc: f64,
}

/// The pre-training loss at one sample rate.
#[derive(Clone, Debug)]
pub struct PretrainLoss {
    filter: AWeighting,
    weights: PretrainWeights,
}

impl PretrainLoss {
    /// The loss at sample rate `fs` (the A-weighting needs at least 24 kHz).
    pub fn new(fs: f64, weights: PretrainWeights) -> Result<Self> {
        Ok(PretrainLoss {
            filter: AWeighting::new(fs)?,
            weights,
        })
    }

    /// The batch constants, which depend on the targets only: so that each item's gradient
    /// can be taken as soon as its prediction exists ([`Self::item`]).
    pub fn scales(&self, targets: &[&[f64]]) -> Result<BatchScales> {
        let b = targets.len();
        let t = targets.first().map_or(0, |x| x.len());
        if b == 0 || t == 0 || targets.iter().any(|x| x.len() != t) {
            return Err(Error::InvalidArgument(
                "pre-training loss: no targets, or targets of unequal or zero length".into(),
            ));
        }
        let n = (b * t) as f64;
        let sq = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>();
        let s_filtered = targets
            .iter()
            .map(|x| sq(&self.filter.apply(x)))
            .sum::<f64>()
            / n;
        let s_raw = targets.iter().map(|x| sq(x)).sum::<f64>() / n;
        Ok(BatchScales {
            items: b,
            len: t,
            s_filtered: s_filtered + EPSILON,
            s_raw: s_raw + EPSILON,
        })
    }

    /// One item's share of the loss; with `grad`, writes `dL/dp` of the item into it.
    pub fn item(
        &self,
        pred: &[f64],
        target: &[f64],
        scales: &BatchScales,
        grad: Option<&mut Vec<f64>>,
    ) -> ItemLoss {
        assert_eq!(pred.len(), scales.len, "prediction length");
        assert_eq!(target.len(), scales.len, "target length");
        let n = (scales.items * scales.len) as f64;
        let fp = self.filter.apply(pred);
        let ft = self.filter.apply(target);
        let err: f64 = fp.iter().zip(&ft).map(|(a, c)| (a - c) * (a - c)).sum();
        let mean = pred.iter().zip(target).map(|(a, c)| a - c).sum::<f64>() / scales.len as f64;
        if let Some(g) = grad {
            let w = self.weights;
            let d: Vec<f64> = fp
                .iter()
                .zip(&ft)
                .map(|(a, c)| w.esr * 2.0 * (a - c) / (n * scales.s_filtered))
                .collect();
            let ddc = w.dc * 2.0 * mean / (n * scales.s_raw);
            *g = self.filter.apply_transposed(&d);
            g.iter_mut().for_each(|v| *v += ddc);
        }
        ItemLoss { err, mean }
    }

    /// The batch loss from its items' shares.
    pub fn combine(&self, items: &[ItemLoss], scales: &BatchScales) -> PretrainLossValue {
        let n = (scales.items * scales.len) as f64;
        let esr = items.iter().map(|i| i.err).sum::<f64>() / n / scales.s_filtered;
        let dc =
            items.iter().map(|i| i.mean * i.mean).sum::<f64>() / scales.items as f64 / scales.s_raw;
        PretrainLossValue {
            value: self.weights.esr * esr + self.weights.dc * dc,
            esr,
            dc,
        }
    }

    /// The loss of predictions `preds` against `targets` (items of equal length); with
    /// `grads`, writes `dL/dp` of every item into it.
    pub fn batch(
        &self,
        preds: &[&[f64]],
        targets: &[&[f64]],
        mut grads: Option<&mut [Vec<f64>]>,
    ) -> Result<PretrainLossValue> {
        if preds.len() != targets.len() {
            return Err(Error::InvalidArgument(format!(
                "pre-training loss of {} predictions and {} targets",
                preds.len(),
                targets.len()
            )));
        }
        let scales = self.scales(targets)?;
        if preds.iter().any(|p| p.len() != scales.len) {
            return Err(Error::InvalidArgument(
                "pre-training loss: predictions and targets of unequal length".into(),
            ));
        }
        let items: Vec<ItemLoss> = (0..preds.len())
            .map(|k| {
                let g = grads.as_mut().map(|g| &mut g[k]);
                self.item(preds[k], targets[k], &scales, g)
            })
            .collect();
        Ok(self.combine(&items, &scales))
    }
}

/// The constants of a batch that depend on its targets only.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchScales {
    items: usize,
    len: usize,
    /// `mean (A t)² + ε`.
    s_filtered: f64,
    /// `mean t² + ε`.
    s_raw: f64,
}

/// One item's share of a batch loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ItemLoss {
    /// `Σ_t (A p - A t)²`.
    err: f64,
    /// `mean_t (p - t)`.
    mean: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn signals(b: usize, t: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..b)
            .map(|_| (0..t).map(|_| rng.gen_range(-0.5..0.5) + 0.05).collect())
            .collect()
    }

    /// The gradient equals central differences in f64 (step 1e-6) to 1e-7 relative of the
    /// largest component (measured 1e-10).
    #[test]
    fn gradient_matches_finite_differences() {
        let loss = PretrainLoss::new(44_100.0, PretrainWeights::default()).unwrap();
        let preds = signals(3, 64, 1);
        let targets = signals(3, 64, 2);
        let refs = |v: &[Vec<f64>]| v.iter().map(|x| x.to_vec()).collect::<Vec<_>>();
        let value = |p: &[Vec<f64>]| {
            let pr: Vec<&[f64]> = p.iter().map(|x| x.as_slice()).collect();
            let tr: Vec<&[f64]> = targets.iter().map(|x| x.as_slice()).collect();
            loss.batch(&pr, &tr, None).unwrap().value
        };
        let mut grads = vec![Vec::new(); 3];
        {
            let pr: Vec<&[f64]> = preds.iter().map(|x| x.as_slice()).collect();
            let tr: Vec<&[f64]> = targets.iter().map(|x| x.as_slice()).collect();
            loss.batch(&pr, &tr, Some(&mut grads)).unwrap();
        }
        let top = grads.iter().flatten().fold(0.0f64, |m, g| m.max(g.abs()));
        let h = 1e-6;
        for (b, i) in [(0, 0), (1, 17), (2, 63), (0, 40)] {
            let mut up = refs(&preds);
            up[b][i] += h;
            let mut down = refs(&preds);
            down[b][i] -= h;
            let fd = (value(&up) - value(&down)) / (2.0 * h);
            assert!(
                (fd - grads[b][i]).abs() < 1e-7 * top,
                "{b},{i}: {fd} vs {}",
                grads[b][i]
            );
        }
    }

    /// Closed forms: a prediction equal to the target costs nothing; one offset by a constant
    /// c costs DC = c² / (mean t² + ε) only (the A-weighting removes DC, so the ESR term is
    /// the transient of the filter's start, tiny next to it); a zero prediction has
    /// ESR = S / (S + ε), S the mean energy of the A-weighted target.
    #[test]
    fn closed_forms() {
        let loss = PretrainLoss::new(48_000.0, PretrainWeights::default()).unwrap();
        let t = signals(2, 48_000, 3);
        let tr: Vec<&[f64]> = t.iter().map(|x| x.as_slice()).collect();
        assert_eq!(loss.batch(&tr, &tr, None).unwrap().value, 0.0);
        let shifted: Vec<Vec<f64>> = t
            .iter()
            .map(|x| x.iter().map(|v| v + 0.1).collect())
            .collect();
        let sr: Vec<&[f64]> = shifted.iter().map(|x| x.as_slice()).collect();
        let v = loss.batch(&sr, &tr, None).unwrap();
        let s = t.iter().flatten().map(|v| v * v).sum::<f64>() / 96_000.0 + EPSILON;
        assert!((v.dc - 0.01 / s).abs() < 1e-12, "{}", v.dc);
        assert!(v.esr < 1e-3, "{}", v.esr);
        let zero = vec![vec![0.0; 48_000]; 2];
        let zr: Vec<&[f64]> = zero.iter().map(|x| x.as_slice()).collect();
        let aw = AWeighting::new(48_000.0).unwrap();
        let sf = t
            .iter()
            .flat_map(|x| aw.apply(x))
            .map(|v| v * v)
            .sum::<f64>()
            / 96_000.0;
        let esr0 = loss.batch(&zr, &tr, None).unwrap().esr;
        assert!((esr0 - sf / (sf + EPSILON)).abs() < 1e-12, "{esr0}");
    }
}
