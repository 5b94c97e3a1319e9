//! Speed of `measure`: the sine-set evaluation (264 tones of 1.2 s, f64 forward pass and the
//! per-tone harmonic analysis + NMR, tones in parallel on all cores) of the paper's Broadcast
//! LSTM teacher. One run of the full set takes tens of seconds, so its wall time is measured
//! once and printed; criterion then times a representative subset (one tone per octave at
//! -6 dBFS, 8 tones) with few samples.

use std::time::Instant;

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use dealias::dsp::tones::eval_sine_set;
use dealias::eval::{measure_sine_set, measure_tones, RunOptions};

fn bench(c: &mut Criterion) {
    let m = common::paper_or_builtin("paper-models/broadcast_lstm_teacher.json", "lstm");
    let fs = m.sample_rate.unwrap_or(44_100.0);
    let t = Instant::now();
    let r = measure_sine_set(&m.network, fs, RunOptions::default(), None, &|_| {}).unwrap();
    let wall = t.elapsed().as_secs_f64();
    println!(
        "measure, Broadcast LSTM, full sine set ({} tones, {} threads): {wall:.1} s wall \
         (ESR-S {:.1} dB, NMR-S {:.1} dB mean of linear)",
        r.tones.len(),
        rayon::current_num_threads(),
        r.esr_s.mean_linear_db,
        r.nmr_s.mean_linear_db
    );
    let subset: Vec<_> = eval_sine_set()
        .into_iter()
        .filter(|t| t.dbfs == -6.0 && (t.midi - 21) % 12 == 0)
        .collect();
    let mut g = c.benchmark_group("measure");
    g.sample_size(10);
    g.bench_function("broadcast_lstm_8_tones", |b| {
        b.iter(|| {
            measure_tones(
                &m.network,
                fs,
                RunOptions::default(),
                None,
                &subset,
                &|_| {},
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(measure, bench);
criterion_main!(measure);
