//! `process` throughput of the paper's two Broadcast teachers (LSTM-40 GuitarML, standard NAM
//! WaveNet) and of the LSTM-40 conditioned on two knobs, on 10 s of audio at 44.1 kHz, f32
//! and f64, single-threaded. Criterion reports
//! samples/s (Throughput::Elements); the real-time factor (seconds of audio per second of
//! computation) is printed next to it.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dealias::{load_model, ModelFile, Real};

const RATE: f64 = 44100.0;
const SECONDS: f64 = 10.0;

fn model(rel: &str) -> ModelFile {
    let p = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/"))
        .join(rel);
    load_model(&p).expect("fixture model loads")
}

/// 10 s of a guitar-like test signal (decaying plucked partials).
fn input<T: Real>() -> Vec<T> {
    let n = (RATE * SECONDS) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / RATE;
            let env = (-3.0 * (t % 2.0)).exp();
            let x = 0.5
                * env
                * ((2.0 * std::f64::consts::PI * 110.0 * t).sin()
                    + 0.5 * (2.0 * std::f64::consts::PI * 330.0 * t).sin());
            T::from_f64_lossy(x)
        })
        .collect()
}

fn bench_one<T: Real>(c: &mut Criterion, name: &str, m: &ModelFile) {
    let x = input::<T>();
    // Real-time factor from a few timed runs (best of 3).
    let best = (0..3)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(m.process::<T>(&x));
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    println!(
        "{name}: {:.0} samples/s, {:.1}x real time at 44.1 kHz",
        x.len() as f64 / best,
        SECONDS / best
    );
    let mut g = c.benchmark_group("process");
    g.throughput(Throughput::Elements(x.len() as u64));
    g.sample_size(10);
    g.bench_function(name, |b| {
        b.iter(|| m.process::<T>(std::hint::black_box(&x)))
    });
    g.finish();
}

/// The Broadcast LSTM-40 given two knob inputs (Proteus / AIDA-X style: `[x, k1, k2]`), with
/// knob weights of the size of its audio-input weights, at knobs (0.3, 0.7).
fn conditioned(m: &ModelFile) -> ModelFile {
    let mut m = m.clone();
    if let dealias::Network::Rnn(r) = &mut m.network {
        let l = &mut r.layers[0];
        l.w_ih = l
            .w_ih
            .iter()
            .flat_map(|&w| [w, 0.5 * w, -0.25 * w])
            .collect();
        l.input_size = 3;
        r.knobs = vec![0.3, 0.7];
        r.validate().expect("valid conditioned network");
    }
    m
}

fn benches(c: &mut Criterion) {
    let lstm = model("paper-models/broadcast_lstm_teacher.json");
    let wavenet = model("paper-models/broadcast_tcn_teacher.nam");
    bench_one::<f32>(c, "broadcast_lstm40_f32", &lstm);
    bench_one::<f64>(c, "broadcast_lstm40_f64", &lstm);
    let knobs = conditioned(&lstm);
    bench_one::<f32>(c, "broadcast_lstm40_knobs2_f32", &knobs);
    bench_one::<f64>(c, "broadcast_lstm40_knobs2_f64", &knobs);
    bench_one::<f32>(c, "broadcast_wavenet_f32", &wavenet);
    bench_one::<f64>(c, "broadcast_wavenet_f64", &wavenet);
}

criterion_group!(process, benches);
criterion_main!(process);
