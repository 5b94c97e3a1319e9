//! Batch fine-tuning loss + gradient for 40 items x 4410 samples at 44.1 kHz (one TBPTT frame
//! of the LSTM schedule), with the low-pass pre-emphasis and the published weights; and the
//! alias removal of one batch's teacher outputs (40 tones, N = 44,100, eqs. 6-12).

use criterion::{criterion_group, criterion_main, Criterion};
use dealias::dsp::harmonics::HarmonicAnalyzer;
use dealias::dsp::tones::ToneGenerator;
use dealias::loss::{FineTuneLoss, ItemWork, LossWeights, PreEmphasis};
use std::f64::consts::PI;

fn bench(c: &mut Criterion) {
    let fs = 44_100.0;
    let len = 4410;
    let loss = FineTuneLoss::new(fs, LossWeights::default(), PreEmphasis::Lowpass).unwrap();
    let mut students = Vec::new();
    let mut targets = Vec::new();
    for b in 0..40 {
        let f = 50.0 * 1.1f64.powi(b);
        let t: Vec<f64> = (0..len)
            .map(|n| (2.0 * PI * f * n as f64 / fs).sin().tanh())
            .collect();
        let s: Vec<f64> = t
            .iter()
            .enumerate()
            .map(|(n, v)| 0.95 * v + 1e-3 * ((n * 7919 % 101) as f64 / 50.0 - 1.0))
            .collect();
        students.push(s);
        targets.push(t);
    }
    let sr: Vec<&[f64]> = students.iter().map(|v| v.as_slice()).collect();
    let tr: Vec<&[f64]> = targets.iter().map(|v| v.as_slice()).collect();
    let mut works: Vec<ItemWork> = Vec::new();
    let mut grads = vec![Vec::new(); 40];
    c.bench_function("batch loss + gradient, 40 x 4410 @ 44.1 kHz", |b| {
        b.iter(|| {
            loss.batch(&sr, &tr, &mut works, Some(&mut grads))
                .unwrap()
                .value
        })
    });
    c.bench_function("batch loss only, 40 x 4410 @ 44.1 kHz", |b| {
        b.iter(|| loss.batch(&sr, &tr, &mut works, None).unwrap().value)
    });
}

/// Harmonic analysis and resynthesis of 40 training tones drawn as the paper draws them
/// (eqs. 3-5), one thread: per tone one FFT, one window-DTFT correction per harmonic (801 at
/// 27.5 Hz) and the Fourier resynthesis.
fn alias_removal(c: &mut Criterion) {
    let fs = 44_100.0;
    let an = HarmonicAnalyzer::new(44_100, fs).unwrap();
    let tones = ToneGenerator::new(1).tones(40);
    let outputs: Vec<Vec<f64>> = tones
        .iter()
        .map(|t| t.render(fs, 52_920).iter().map(|v| v.tanh()).collect())
        .collect();
    c.bench_function("alias removal, 40 training tones @ 44.1 kHz", |b| {
        b.iter(|| {
            tones
                .iter()
                .zip(&outputs)
                .map(|(t, y)| an.remove_aliasing(y, t.f0).unwrap().1[0])
                .sum::<f64>()
        })
    });
}

criterion_group!(benches, bench, alias_removal);
criterion_main!(benches);
