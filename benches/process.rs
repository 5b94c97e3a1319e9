//! `process` throughput of the paper's two Broadcast teachers (LSTM-40 GuitarML, standard NAM
//! WaveNet) and of the LSTM-40 conditioned on two knobs, on 10 s of audio at 44.1 kHz, f32
//! and f64, single-threaded. Criterion reports
//! samples/s (Throughput::Elements); the real-time factor (seconds of audio per second of
//! computation) is printed next to it.
//!
//! Then the batched path (`process_batch`) on 1, 3 and 4 items, f64, one thread.
//!
//! Then the width sweep (f32, what a plugin runs): the NAM A1 layouts of real libraries
//! (nano 4/2, feather 8/4, lite 12/6, standard 16/8, custom 18–32) and the two submodels of
//! the trainer's packed A2 container (3 and 8 channels), with samples/s, multiply-adds per
//! second per parameter (1 MAC per weight per sample, so the per-parameter rate says how
//! well a width is vectorised) and the fraction of one core's f32 FMA peak
//! (`DEALIAS_PEAK_GFLOPS` / 2 cores × 2 for f32; default 83.2, see `finetune_step`).
//! `DEALIAS_BENCH_MODELS=a.nam:b.nam` adds files to the sweep, to be compared with
//! NeuralAmpModelerCore on the same files by `tools/bench_with_nam_core.sh`.

use std::time::Instant;

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dealias::{load_model, ModelFile, Real};

const RATE: f64 = 44100.0;
const SECONDS: f64 = 10.0;

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
    // Real-time factor from a few timed runs.
    let best = best_time(&m.network, &x);
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

/// Seconds for one pass of `x` (best of 3).
fn best_time<T: Real>(net: &dealias::Network, x: &[T]) -> f64 {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(net.process::<T>(x));
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn widths(c: &mut Criterion) {
    let peak64: f64 = std::env::var("DEALIAS_PEAK_GFLOPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(83.2);
    // One core, f32: twice the f64 rate of one of the two cores.
    let peak = peak64;
    let x = input::<f32>();
    let mut nets: Vec<(String, dealias::Network)> = [
        (4, 2),
        (8, 4),
        (12, 6),
        (16, 8),
        (18, 9),
        (20, 10),
        (24, 12),
        (32, 16),
    ]
    .iter()
    .map(|&(c1, c2)| {
        (
            format!("a1_{c1}x{c2}"),
            dealias::Network::WaveNet(common::a1_wavenet(c1, c2)),
        )
    })
    .collect();
    let a2 = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/nam07/a2_packed_container/a2_packed_container.nam"
    ));
    let a2 = load_model(&a2).expect("the packed A2 container loads");
    for (i, n) in a2.submodel_networks().into_iter().enumerate() {
        nets.push((format!("a2_submodel_{i}"), n.clone()));
    }
    // Files to compare with tools/bench_with_nam_core.sh (their default submodel).
    for path in std::env::var("DEALIAS_BENCH_MODELS")
        .unwrap_or_default()
        .split(':')
        .filter(|p| !p.is_empty())
    {
        let m = load_model(std::path::Path::new(path)).expect("DEALIAS_BENCH_MODELS file loads");
        nets.push((path.to_string(), m.network));
    }
    let mut g = c.benchmark_group("process_widths");
    g.throughput(Throughput::Elements(x.len() as u64));
    g.sample_size(10);
    for (name, net) in &nets {
        let secs = best_time(net, &x);
        let rate = x.len() as f64 / secs;
        let params = net.num_params() as f64;
        println!(
            "{name}: {params} parameters, {rate:.0} samples/s ({:.1}x real time), {:.2} GMAC/s \
             (samples/s x parameters) = {:.1} % of the {peak:.0} GFLOP/s f32 peak of one core",
            rate / RATE,
            rate * params / 1e9,
            100.0 * 2.0 * rate * params / 1e9 / peak
        );
        g.bench_function(name.as_str(), |b| {
            b.iter(|| net.process::<f32>(std::hint::black_box(&x)))
        });
    }
    g.finish();
}

/// The batched path (`Network::process_batch`, the training kernels; what the evaluation and
/// the fine-tuning teacher pass use) on 1, 3 and 4 items of the 10 s signal, one thread: a
/// batch smaller than the kernel's 4-row tile (the paper convention's 3 scales, the 2x
/// oversampled evaluation's 2 chains) must not fall back to scalar code.
fn batched(c: &mut Criterion, name: &str, m: &ModelFile) {
    let x: Vec<f64> = input::<f64>();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a thread pool");
    let mut g = c.benchmark_group("process_batch");
    g.sample_size(10);
    for items in [1usize, 3, 4] {
        let inputs = vec![x.clone(); items];
        let start = Instant::now();
        pool.install(|| m.network.process_batch(&inputs));
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{name} batched, {items} item(s), 1 thread: {:.0} samples/s",
            (items * x.len()) as f64 / secs
        );
        g.throughput(Throughput::Elements((items * x.len()) as u64));
        g.bench_function(format!("{name}_{items}items"), |b| {
            b.iter(|| pool.install(|| m.network.process_batch(std::hint::black_box(&inputs))))
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let lstm = common::paper_or_builtin("paper-models/broadcast_lstm_teacher.json", "lstm");
    let wavenet = common::paper_or_builtin("paper-models/broadcast_tcn_teacher.nam", "wavenet");
    bench_one::<f32>(c, "broadcast_lstm40_f32", &lstm);
    bench_one::<f64>(c, "broadcast_lstm40_f64", &lstm);
    batched(c, "broadcast_lstm40_f64", &lstm);
    let knobs = conditioned(&lstm);
    bench_one::<f32>(c, "broadcast_lstm40_knobs2_f32", &knobs);
    bench_one::<f64>(c, "broadcast_lstm40_knobs2_f64", &knobs);
    bench_one::<f32>(c, "broadcast_wavenet_f32", &wavenet);
    bench_one::<f64>(c, "broadcast_wavenet_f64", &wavenet);
}

criterion_group!(process, benches, widths);
criterion_main!(process);
