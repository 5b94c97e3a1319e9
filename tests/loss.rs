//! The batch fine-tuning loss (spec sec. 4) and its gradient, end to end through NMR, ESR, DC
//! and the pre-emphasis FIR adjoint, against central finite differences in f64.

use dealias::loss::{
    esr, EsrPooling, FineTuneLoss, ItemWork, LossWeights, NmrPooling, PreEmphasis,
};
use std::f64::consts::PI;

fn lcg(seed: u64) -> impl FnMut() -> f64 {
    let mut s = seed;
    move || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

fn case(items: usize, len: usize) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    case_with_levels(items, len, &vec![1.0; items])
}

/// Item `b` is scaled by `levels[b]`.
fn case_with_levels(items: usize, len: usize, levels: &[f64]) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let mut r = lcg(5);
    let fs = 44_100.0;
    let mut students = Vec::new();
    let mut targets = Vec::new();
    for (b, &level) in levels.iter().enumerate().take(items) {
        let f = 300.0 + 517.0 * b as f64;
        let t: Vec<f64> = (0..len)
            .map(|n| level * (0.5 * (2.0 * PI * f * n as f64 / fs).sin() + 0.05))
            .collect();
        let s: Vec<f64> = t.iter().map(|v| 0.9 * v + 0.02 * level * r()).collect();
        students.push(s);
        targets.push(t);
    }
    (students, targets)
}

fn check(pre: PreEmphasis, weights: LossWeights) -> f64 {
    check_pooled(
        pre,
        weights,
        EsrPooling::Batch,
        NmrPooling::Geometric,
        &[1.0, 1.0],
    )
}

fn check_pooled(
    pre: PreEmphasis,
    weights: LossWeights,
    esr_pooling: EsrPooling,
    nmr_pooling: NmrPooling,
    levels: &[f64],
) -> f64 {
    let (students, targets) = case_with_levels(2, 5000, levels);
    let loss = FineTuneLoss::new(44_100.0, weights, pre)
        .unwrap()
        .with_esr_pooling(esr_pooling)
        .with_nmr_pooling(nmr_pooling);
    let tr: Vec<&[f64]> = targets.iter().map(|v| v.as_slice()).collect();
    let eval = |st: &Vec<Vec<f64>>| -> f64 {
        let sr: Vec<&[f64]> = st.iter().map(|v| v.as_slice()).collect();
        loss.batch(&sr, &tr, &mut Vec::new(), None).unwrap().value
    };
    let sr: Vec<&[f64]> = students.iter().map(|v| v.as_slice()).collect();
    let mut works: Vec<ItemWork> = Vec::new();
    let mut grads = vec![Vec::new(); 2];
    let b = loss.batch(&sr, &tr, &mut works, Some(&mut grads)).unwrap();
    assert!((b.value - eval(&students)).abs() <= 1e-15 * b.value);
    assert!(
        (b.value - (weights.esr * b.esr + weights.nmr * b.nmr + weights.dc * b.dc)).abs()
            < 1e-15 * b.value
    );
    let gmax = grads.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
    let mut worst = 0.0f64;
    for item in 0..2 {
        for i in (0..5000).step_by(131).chain([0, 1, 2047, 2048, 4095, 4999]) {
            // Step 1e-4 (signals ~0.5): the error is round-off dominated below it (measured
            // worst errors 4e-8, 5e-7, 3e-6, 4e-5 for h = 1e-4 .. 1e-7: it scales as 1/h).
            let h = 1e-4 * levels[item];
            let mut a = students.clone();
            let mut c = students.clone();
            a[item][i] += h;
            c[item][i] -= h;
            let fd = (eval(&a) - eval(&c)) / (2.0 * h);
            let g = grads[item][i];
            worst = worst.max((fd - g).abs() / g.abs().max(1e-3 * gmax));
        }
    }
    eprintln!(
        "{pre:?} {weights:?}: loss {:.6e} (ESR {:.3e}, NMR {:.3e}, DC {:.3e}); worst rel. error {worst:.2e}",
        b.value, b.esr, b.nmr, b.dc
    );
    worst
}

#[test]
fn batch_loss_gradient_matches_finite_differences() {
    for pre in [PreEmphasis::Lowpass, PreEmphasis::None] {
        let worst = check(pre, LossWeights::default());
        assert!(worst < 1e-6, "{pre:?}: {worst}");
    }
    let worst = check(
        PreEmphasis::Lowpass,
        LossWeights {
            esr: 1.0,
            nmr: 1.0,
            dc: 0.0,
        },
    );
    assert!(worst < 1e-6, "{worst}");
    // Without the (dominant) NMR term, so that ESR and DC gradients are checked on their own.
    let worst = check(
        PreEmphasis::Lowpass,
        LossWeights {
            esr: 1.0,
            nmr: 0.0,
            dc: 1.0,
        },
    );
    assert!(worst < 1e-6, "{worst}");
}

/// Per-item ESR pooling: the value is the mean of each item's own ESR (computed by the
/// independent `esr`, without pre-emphasis so that it sees the same signals), it differs from the batch-pooled ESR when the items' levels differ (item 1 at
/// -40 dB), and its gradient matches central finite differences as the paper's pooling does.
#[test]
fn per_item_esr_is_the_mean_of_item_esrs_and_its_gradient_is_exact() {
    let levels = [1.0, 0.01];
    let (students, targets) = case_with_levels(2, 5000, &levels);
    let only_esr = LossWeights {
        esr: 1.0,
        nmr: 0.0,
        dc: 0.0,
    };
    let sr: Vec<&[f64]> = students.iter().map(|v| v.as_slice()).collect();
    let tr: Vec<&[f64]> = targets.iter().map(|v| v.as_slice()).collect();
    let value = |pooling| {
        FineTuneLoss::new(44_100.0, only_esr, PreEmphasis::None)
            .unwrap()
            .with_esr_pooling(pooling)
            .batch(&sr, &tr, &mut Vec::new(), None)
            .unwrap()
            .esr
    };
    let expect = 0.5 * (esr(&students[0], &targets[0]) + esr(&students[1], &targets[1]));
    let per_item = value(EsrPooling::PerItem);
    assert!(
        (per_item - expect).abs() < 1e-14 * expect,
        "{per_item} vs {expect}"
    );
    // Pooled over the batch, the quiet item's error is weighted by its energy (1e-4).
    assert!((value(EsrPooling::Batch) - per_item).abs() > 1e-3 * per_item);
    for pre in [PreEmphasis::Lowpass, PreEmphasis::None] {
        let geometric = NmrPooling::Geometric;
        let worst = check_pooled(
            pre,
            LossWeights::default(),
            EsrPooling::PerItem,
            geometric,
            &levels,
        );
        assert!(worst < 1e-6, "{pre:?}: {worst}");
        let worst = check_pooled(pre, only_esr, EsrPooling::PerItem, geometric, &levels);
        assert!(worst < 1e-6, "{pre:?} ESR only: {worst}");
    }
}

/// Arithmetic NMR pooling: the batch NMR is the mean of the items' NMRs (each item's NMR from
/// a batch of one, where both poolings agree), not their geometric mean, and its gradient
/// matches central finite differences.
#[test]
fn arithmetic_nmr_is_the_mean_of_item_nmrs_and_its_gradient_is_exact() {
    let levels = [1.0, 0.01];
    let (students, targets) = case_with_levels(2, 5000, &levels);
    let loss = |p| {
        FineTuneLoss::new(44_100.0, LossWeights::default(), PreEmphasis::Lowpass)
            .unwrap()
            .with_nmr_pooling(p)
    };
    let item_nmr = |b: usize| {
        loss(NmrPooling::Geometric)
            .batch(&[&students[b]], &[&targets[b]], &mut Vec::new(), None)
            .unwrap()
            .nmr
    };
    let (n0, n1) = (item_nmr(0), item_nmr(1));
    let sr: Vec<&[f64]> = students.iter().map(|v| v.as_slice()).collect();
    let tr: Vec<&[f64]> = targets.iter().map(|v| v.as_slice()).collect();
    let batch = |p| loss(p).batch(&sr, &tr, &mut Vec::new(), None).unwrap().nmr;
    let arithmetic = batch(NmrPooling::Arithmetic);
    assert!((arithmetic - 0.5 * (n0 + n1)).abs() < 1e-14 * arithmetic);
    let geometric = batch(NmrPooling::Geometric);
    assert!((geometric - (n0 * n1).sqrt()).abs() < 1e-12 * geometric);
    for esr_pooling in [EsrPooling::Batch, EsrPooling::PerItem] {
        let worst = check_pooled(
            PreEmphasis::Lowpass,
            LossWeights::default(),
            esr_pooling,
            NmrPooling::Arithmetic,
            &levels,
        );
        assert!(worst < 1e-6, "{esr_pooling:?}: {worst}");
    }
}

#[test]
fn identical_signals_give_the_floor() {
    let (_, targets) = case(3, 4410);
    let loss = FineTuneLoss::new(44_100.0, LossWeights::default(), PreEmphasis::Lowpass).unwrap();
    let tr: Vec<&[f64]> = targets.iter().map(|v| v.as_slice()).collect();
    let b = loss.batch(&tr, &tr, &mut Vec::new(), None).unwrap();
    assert_eq!(b.esr, 0.0);
    assert_eq!(b.dc, 0.0);
    assert!(10.0 * b.nmr.log10() < -100.0);
}
