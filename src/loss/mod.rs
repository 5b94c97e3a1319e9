//! Losses and metrics: ESR (paper eq. 13), DC loss, HESR, the noise-to-mask ratio (eqs. 14–16,
//! spec sec. 5), the multi-resolution mel-spectral loss of the audio validation, the evaluation
//! metrics of paper sec. 2.6, and the fine-tuning loss of eq. 17 as published (spec sec. 4) with
//! its gradient (spec sec. 8).
//!
//! # The fine-tuning loss
//! Per TBPTT frame, on low-passed student outputs `p_b` and alias-free teacher targets `t_b`:
//! `L = w_esr ESR + w_nmr NMR_lin + w_dc DC`, ESR and DC over the whole batch frame and
//! `NMR_lin = 10^(mean_b NMR_dB_b / 10)`. Either term may instead pool the batch otherwise
//! ([`EsrPooling::PerItem`], [`NmrPooling::Arithmetic`]: departures from the paper offered as
//! options). The work splits into three steps so that the caller can run items on its own
//! threads:
//! 1. [`FineTuneLoss::item_forward`] per item (parallel): pre-emphasis, partial sums, NMR and
//!    its gradient;
//! 2. [`FineTuneLoss::combine`] (cheap): batch scalars;
//! 3. [`FineTuneLoss::item_backward`] per item (parallel): the item's gradient through the FIR
//!    adjoint.
//!
//! [`FineTuneLoss::batch`] does all three with rayon.

pub mod bands;
pub mod esr;
pub mod metrics;
pub mod mrsl;
pub mod nmr;
pub mod pretrain;

pub use esr::{dc_loss, esr, hesr};
pub use metrics::{
    aggregate, sine_set_metrics, Aggregate, SineSetAnalyzer, SineSetMetrics, ToneMetrics,
};
pub use mrsl::MelStftLoss;
pub use nmr::{Nmr, NmrReference, NmrScratch};

use crate::dsp::fir::ZeroPhaseFir;
use crate::{Error, Result};
use rayon::prelude::*;

/// Pre-emphasis applied to target and prediction before the loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PreEmphasis {
    /// The 12/16 kHz Kaiser low-pass of paper sec. 2.3 (spec sec. 3).
    #[default]
    Lowpass,
    /// No filtering.
    None,
}

/// How the ESR term pools the batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EsrPooling {
    /// The paper's (spec sec. 4): `sum (t - p)^2 / sum t^2` over the whole batch frame, so
    /// loud tones dominate and a quiet tone's error hardly counts.
    #[default]
    Batch,
    /// The mean over the items of each item's own ESR: every tone's tone error counts alike,
    /// whatever its level (as the per-tone ESR-T of the evaluation does).
    PerItem,
}

/// How the NMR term pools the batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NmrPooling {
    /// The paper's (spec sec. 4): `10^(mean_b NMR_dB_b / 10)`, the geometric mean, so every
    /// tone's NMR counts alike in dB (a clean tone made cleaner as much as an aliasing one).
    #[default]
    Geometric,
    /// The arithmetic mean of the linear NMRs: the tones that alias most dominate, as they do
    /// in the evaluation's 10·log10 of the mean over the sine set.
    Arithmetic,
}

/// The smallest mean square of a target in a per-item ESR (-100 dBFS RMS), so that a
/// near-silent tone cannot make its ESR unbounded.
const PER_ITEM_MIN_MEAN_SQUARE: f64 = 1e-10;

/// Weights of the loss terms. The default is the published runs' 0.5 / 0.5 / 1 (spec sec. 4);
/// the paper's eq. 17 is 1 / 1 / 0.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossWeights {
    /// ESR weight.
    pub esr: f64,
    /// NMR weight (λ of eq. 17).
    pub nmr: f64,
    /// DC weight.
    pub dc: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self {
            esr: 0.5,
            nmr: 0.5,
            dc: 1.0,
        }
    }
}

/// The fine-tuning loss for one sample rate (immutable, `Sync`; share it between threads).
#[derive(Clone, Debug)]
pub struct FineTuneLoss {
    weights: LossWeights,
    esr_pooling: EsrPooling,
    nmr_pooling: NmrPooling,
    fir: Option<ZeroPhaseFir>,
    nmr: Nmr,
}

/// Per-item buffers and results of [`FineTuneLoss::item_forward`]; keep one per batch item and
/// reuse it across frames (no allocation once sized).
#[derive(Clone, Debug, Default)]
pub struct ItemWork {
    p: Vec<f64>,
    t: Vec<f64>,
    g_nmr: Vec<f64>,
    g: Vec<f64>,
    scratch: NmrScratch,
    /// `sum (t - p)^2` over the item.
    pub err2: f64,
    /// `sum t^2`.
    pub t2: f64,
    /// `sum (t - p)`.
    pub err: f64,
    /// Number of samples.
    pub n: usize,
    /// Linear NMR of the item (1 when the NMR weight is 0 and it was not computed).
    pub nmr: f64,
}

/// The batch loss and the scalars its gradient needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchLoss {
    /// `w_esr ESR + w_nmr NMR_lin + w_dc DC`.
    pub value: f64,
    /// ESR over the batch frame (or the mean of the items' ESRs, [`EsrPooling`]).
    pub esr: f64,
    /// `NMR_lin = 10^(mean_b NMR_dB_b / 10)` (or the arithmetic mean, [`NmrPooling`]).
    pub nmr: f64,
    /// DC loss over the batch frame.
    pub dc: f64,
    items: usize,
    t2: f64,
    mean_err: f64,
    n_total: f64,
}

/// `sum t^2` of an item, floored for [`EsrPooling::PerItem`].
fn item_energy(w: &ItemWork) -> f64 {
    w.t2.max(PER_ITEM_MIN_MEAN_SQUARE * w.n as f64)
}

impl FineTuneLoss {
    /// The loss at sample rate `fs`.
    pub fn new(fs: f64, weights: LossWeights, pre_emphasis: PreEmphasis) -> Result<Self> {
        let fir = match pre_emphasis {
            PreEmphasis::Lowpass => Some(ZeroPhaseFir::pre_emphasis_lowpass(fs)?),
            PreEmphasis::None => None,
        };
        Ok(Self {
            weights,
            esr_pooling: EsrPooling::Batch,
            nmr_pooling: NmrPooling::Geometric,
            fir,
            nmr: Nmr::new(fs)?,
        })
    }

    /// Pools the ESR term as `pooling` says (default: the paper's [`EsrPooling::Batch`]).
    pub fn with_esr_pooling(mut self, pooling: EsrPooling) -> Self {
        self.esr_pooling = pooling;
        self
    }

    /// Pools the NMR term as `pooling` says (default: the paper's [`NmrPooling::Geometric`]).
    pub fn with_nmr_pooling(mut self, pooling: NmrPooling) -> Self {
        self.nmr_pooling = pooling;
        self
    }

    /// The weights.
    pub fn weights(&self) -> LossWeights {
        self.weights
    }

    /// The NMR model.
    pub fn nmr_model(&self) -> &Nmr {
        &self.nmr
    }

    /// Step 1 for one item: low-passes `student` and `target` (equal lengths, at least 2048
    /// samples when the NMR weight is non-zero), stores the partial sums, the NMR and, if
    /// `with_grad`, the NMR gradient.
    pub fn item_forward(
        &self,
        student: &[f64],
        target: &[f64],
        w: &mut ItemWork,
        with_grad: bool,
    ) -> Result<()> {
        if student.len() != target.len() || student.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "loss of {} student vs {} target samples",
                student.len(),
                target.len()
            )));
        }
        let n = student.len();
        w.p.resize(n, 0.0);
        w.t.resize(n, 0.0);
        match &self.fir {
            Some(f) => {
                f.apply(student, &mut w.p);
                f.apply(target, &mut w.t);
            }
            None => {
                w.p.copy_from_slice(student);
                w.t.copy_from_slice(target);
            }
        }
        let (mut err2, mut t2, mut err) = (0.0, 0.0, 0.0);
        for (&p, &t) in w.p.iter().zip(&w.t) {
            err2 += (t - p) * (t - p);
            t2 += t * t;
            err += t - p;
        }
        w.err2 = err2;
        w.t2 = t2;
        w.err = err;
        w.n = n;
        w.nmr = 1.0;
        if self.weights.nmr != 0.0 {
            let r = self.nmr.reference(&w.t, &mut w.scratch)?;
            w.nmr = if with_grad {
                w.g_nmr.resize(n, 0.0);
                self.nmr
                    .nmr_and_grad(&r, &w.p, &mut w.g_nmr, &mut w.scratch)?
            } else {
                self.nmr.nmr(&r, &w.p, &mut w.scratch)?
            };
        }
        Ok(())
    }

    /// Step 2: the batch loss from the items' partial results.
    pub fn combine<'a>(&self, items: impl IntoIterator<Item = &'a ItemWork>) -> BatchLoss {
        let (mut err2, mut t2, mut err, mut n, mut log_nmr, mut b) = (0.0, 0.0, 0.0, 0, 0.0, 0);
        let (mut item_esr, mut item_nmr) = (0.0, 0.0);
        for w in items {
            item_nmr += w.nmr;
            item_esr += w.err2 / item_energy(w);
            err2 += w.err2;
            t2 += w.t2;
            err += w.err;
            n += w.n;
            log_nmr += w.nmr.ln();
            b += 1;
        }
        let n_total = n as f64;
        let esr = match self.esr_pooling {
            EsrPooling::Batch => err2 / t2,
            EsrPooling::PerItem => item_esr / b as f64,
        };
        let mean_err = err / n_total;
        let dc = mean_err * mean_err / (t2 / n_total);
        // 10^(mean_b 10 log10 NMR_b / 10) = exp(mean_b ln NMR_b).
        let nmr = match self.nmr_pooling {
            NmrPooling::Geometric => (log_nmr / b as f64).exp(),
            NmrPooling::Arithmetic => item_nmr / b as f64,
        };
        let wt = self.weights;
        BatchLoss {
            value: wt.esr * esr + wt.nmr * nmr + wt.dc * dc,
            esr,
            nmr,
            dc,
            items: b,
            t2,
            mean_err,
            n_total,
        }
    }

    /// Step 3 for one item: `dL/d student` into `grad` (needs `item_forward(.., true)`).
    pub fn item_backward(&self, batch: &BatchLoss, w: &mut ItemWork, grad: &mut [f64]) {
        assert_eq!(grad.len(), w.n);
        let wt = self.weights;
        // ESR: -2 (t - p) / sum t^2; DC: -2 mean(t - p) / (n mean(t^2)) (spec sec. 8).
        let c_esr = match self.esr_pooling {
            EsrPooling::Batch => -2.0 * wt.esr / batch.t2,
            // d/dp of mean_b ESR_b: -2 (t - p) / (B sum t_b^2).
            EsrPooling::PerItem => -2.0 * wt.esr / (batch.items as f64 * item_energy(w)),
        };
        let c_dc = -2.0 * wt.dc * batch.mean_err / (batch.n_total * (batch.t2 / batch.n_total));
        // dNMR_lin/dNMR_b = NMR_lin / (B NMR_b).
        let c_nmr = match self.nmr_pooling {
            _ if wt.nmr == 0.0 => 0.0,
            NmrPooling::Geometric => wt.nmr * batch.nmr / (batch.items as f64 * w.nmr),
            NmrPooling::Arithmetic => wt.nmr / batch.items as f64,
        };
        let gp: &mut [f64] = if self.fir.is_some() {
            w.g.resize(w.n, 0.0);
            &mut w.g
        } else {
            grad
        };
        for (i, g) in gp.iter_mut().enumerate() {
            *g = c_esr * (w.t[i] - w.p[i]) + c_dc;
        }
        if c_nmr != 0.0 {
            for (g, &h) in gp.iter_mut().zip(&w.g_nmr) {
                *g += c_nmr * h;
            }
        }
        if let Some(f) = &self.fir {
            f.apply_adjoint(&w.g, grad);
        }
    }

    /// The whole batch on rayon's pool: loss value and, if `grads` is given, each item's
    /// gradient `dL/d student_b` (`grads[b]` is resized to the item's length). `works` holds
    /// one [`ItemWork`] per item (resized as needed; keep it between calls).
    pub fn batch(
        &self,
        students: &[&[f64]],
        targets: &[&[f64]],
        works: &mut Vec<ItemWork>,
        grads: Option<&mut [Vec<f64>]>,
    ) -> Result<BatchLoss> {
        if students.len() != targets.len() || students.is_empty() {
            return Err(Error::InvalidArgument(
                "batch loss needs as many targets as students, and at least one".into(),
            ));
        }
        works.resize_with(students.len(), ItemWork::default);
        let with_grad = grads.is_some();
        works
            .par_iter_mut()
            .zip(students.par_iter().zip(targets.par_iter()))
            .try_for_each(|(w, (s, t))| self.item_forward(s, t, w, with_grad))?;
        let batch = self.combine(works.iter());
        if let Some(grads) = grads {
            if grads.len() != students.len() {
                return Err(Error::InvalidArgument("one gradient per item".into()));
            }
            works
                .par_iter_mut()
                .zip(grads.par_iter_mut())
                .for_each(|(w, g)| {
                    g.resize(w.n, 0.0);
                    self.item_backward(&batch, w, g);
                });
        }
        Ok(batch)
    }
}
