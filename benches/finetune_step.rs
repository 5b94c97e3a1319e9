//! Whole fine-tuning steps as `dealias finetune` runs them, on the paper's Broadcast teachers:
//! one batch each (LSTM-40: 40 tones, 10 TBPTT frames of 4410 samples = 10 steps; NAM
//! standard WaveNet: 32 tones, 2 frames of 22,050 samples + receptive field = 2 steps), f64 and
//! f32, on all cores. A step's time includes everything a run pays for it: the teacher's pass
//! over the batch's tones and the alias removal (amortised over the batch's steps), the
//! student's forward and backward passes, the loss with its gradient and Adam. The validation
//! is shrunk to 3 tones so that it stays out of the figure.
//!
//! Prints seconds per step, steps per second and the arithmetic rate (7 GFLOP per LSTM step,
//! 64 GFLOP per WaveNet step for forward + backward) as a fraction of the machine's f64 and f32
//! FMA peak, taken as `DEALIAS_PEAK_GFLOPS` (f64, all cores; default 83.2 = 2 Zen 4 cores ×
//! 16 FLOP/cycle × 2.6 GHz; f32 twice that).

use std::sync::atomic::AtomicBool;
use std::time::Instant;

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use dealias::train::finetune::{FinetuneConfig, Finetuner, Precision};

/// One batch of fine-tuning; returns (steps, seconds).
fn one_batch(net: &dealias::Network, precision: Precision) -> (u64, f64) {
    let config = FinetuneConfig {
        precision,
        max_epochs: Some(1),
        tones_per_epoch: if matches!(net, dealias::Network::Rnn(_)) {
            40
        } else {
            32
        },
        validation_stride: 88,
        patience: None,
        checkpoint_path: None,
        ..FinetuneConfig::default()
    };
    // Both paper teachers were trained at 44.1 kHz (the .nam states no rate).
    let mut t = Finetuner::new(net, 44100.0, config).unwrap();
    let start = Instant::now();
    let out = t.run(&AtomicBool::new(false), &mut |_| {}).unwrap();
    (out.steps, start.elapsed().as_secs_f64())
}

fn bench(c: &mut Criterion) {
    let peak64: f64 = std::env::var("DEALIAS_PEAK_GFLOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(83.2);
    let cases = [
        (
            "broadcast_lstm40",
            "paper-models/broadcast_lstm_teacher.json",
            "lstm",
            7.0,
        ),
        (
            "broadcast_wavenet",
            "paper-models/broadcast_tcn_teacher.nam",
            "wavenet",
            64.3,
        ),
    ];
    for (name, file, builtin, gflop) in cases {
        let model = common::paper_or_builtin(file, builtin);
        for (prec, label, peak) in [
            (Precision::F64, "f64", peak64),
            (Precision::F32, "f32", 2.0 * peak64),
        ] {
            let (steps, secs) = one_batch(&model.network, prec);
            let per = secs / steps as f64;
            println!(
                "{name} {label}: {per:.3} s/step ({:.2} steps/s, {steps} steps), {:.1} GFLOP/s = {:.0} % of the {peak:.0} GFLOP/s peak",
                1.0 / per,
                gflop / per,
                100.0 * gflop / per / peak
            );
            let mut g = c.benchmark_group("finetune_batch");
            g.sample_size(10);
            g.bench_function(format!("{name}_{label}"), |b| {
                b.iter(|| one_batch(&model.network, prec))
            });
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
