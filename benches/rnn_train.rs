//! Forward + backward of the recurrent training engine at the size of the paper's LSTM runs:
//! LSTM, hidden 40, skip, one layer, batch 40 × 4410 samples (one TBPTT frame per step); and a
//! GRU of the same size, for reference; and the LSTM conditioned on two knobs (Proteus /
//! AIDA-X style, every item at its own knob values).
//!
//! Prints, per precision and threading, the time per step (wall and CPU), samples per second
//! (batch items × samples) and GFLOP/s counting 3 × 2·(G·H)·(H+1) FLOP per sample and item for
//! G gates (the forward recurrent and input products, the backward recurrent product and the
//! weight gradient), then runs the LSTM cases under criterion.

use criterion::{criterion_group, criterion_main, Criterion};
use dealias::models::rnn_train::{RnnState, RnnTape, RnnTrainer};
use dealias::models::{Cell, Rnn, RnnLayer};
use dealias::Real;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::time::Instant;

const HIDDEN: usize = 40;
const BATCH: usize = 40;
const FRAME: usize = 4410;

fn net(cell: Cell, knobs: usize) -> Rnn {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut u = |n: usize, a: f64| (0..n).map(|_| rng.gen_range(-a..a)).collect::<Vec<f64>>();
    let g = cell.gates() * HIDDEN;
    let s = 1.0 / (HIDDEN as f64).sqrt();
    Rnn {
        cell,
        layers: vec![RnnLayer {
            input_size: 1 + knobs,
            hidden_size: HIDDEN,
            w_ih: u(g * (1 + knobs), s),
            w_hh: u(g * HIDDEN, s),
            b_ih: Some(u(g, s)),
            b_hh: Some(u(g, s)),
            initial_hidden: None,
            initial_cell: None,
        }],
        head_weight: u(HIDDEN, s),
        head_bias: Some(u(1, s)),
        skip: true,
        knobs: vec![0.5; knobs],
    }
}

/// One sub-batch's work: forward with tape, backward, gradient into `grad`.
struct Worker<T: Real> {
    xs: Vec<Vec<T>>,
    dys: Vec<Vec<T>>,
    ys: Vec<Vec<T>>,
    states: Vec<RnnState<T>>,
    tape: RnnTape<T>,
    grad: Vec<T>,
}

impl<T: Real> Worker<T> {
    fn new(tr: &RnnTrainer<T>, items: usize, seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut sig = || {
            (0..FRAME)
                .map(|_| T::from_f64_lossy(rng.gen_range(-0.5..0.5)))
                .collect::<Vec<T>>()
        };
        Worker {
            xs: (0..items).map(|_| sig()).collect(),
            dys: (0..items).map(|_| sig()).collect(),
            ys: vec![vec![T::zero(); FRAME]; items],
            states: (0..items)
                .map(|_| {
                    let mut s = tr.initial_state();
                    s.knobs
                        .iter_mut()
                        .for_each(|k| *k = T::from_f64_lossy(rng.gen_range(0.0..1.0)));
                    s
                })
                .collect(),
            tape: RnnTape::new(),
            grad: vec![T::zero(); tr.num_params()],
        }
    }

    fn step(&mut self, tr: &RnnTrainer<T>) {
        let xr: Vec<&[T]> = self.xs.iter().map(|x| x.as_slice()).collect();
        let mut yr: Vec<&mut [T]> = self.ys.iter_mut().map(|y| y.as_mut_slice()).collect();
        tr.forward(&xr, &mut self.states, &mut self.tape, &mut yr);
        let dr: Vec<&[T]> = self.dys.iter().map(|d| d.as_slice()).collect();
        self.grad.iter_mut().for_each(|g| *g = T::zero());
        tr.backward(&self.tape, &dr, &mut self.grad);
    }
}

/// A whole step on `splits` sub-batches in parallel; gradients summed in a fixed order.
fn step<T: Real>(tr: &RnnTrainer<T>, workers: &mut [Worker<T>], total: &mut [T]) {
    workers.par_iter_mut().for_each(|w| w.step(tr));
    total.iter_mut().for_each(|g| *g = T::zero());
    for w in workers.iter() {
        for (t, &g) in total.iter_mut().zip(&w.grad) {
            *t += g;
        }
    }
}

fn setup<T: Real>(
    cell: Cell,
    knobs: usize,
    splits: usize,
) -> (RnnTrainer<T>, Vec<Worker<T>>, Vec<T>) {
    let tr = RnnTrainer::<T>::new(&net(cell, knobs));
    let workers = (0..splits)
        .map(|i| Worker::new(&tr, BATCH / splits, i as u64 + 10))
        .collect();
    let total = vec![T::zero(); tr.num_params()];
    (tr, workers, total)
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool")
}

/// CPU time (user + system) of the process in seconds, from `/proc/self/stat` (Linux; `None`
/// elsewhere). Printed next to wall time because a shared machine inflates the latter.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux.
}

fn report<T: Real>(cell: Cell, knobs: usize, name: &str, splits: usize) {
    let (tr, mut workers, mut total) = setup::<T>(cell, knobs, splits);
    pool(splits).install(|| {
        step(&tr, &mut workers, &mut total);
        let reps = 5;
        let c0 = cpu_seconds();
        let t0 = Instant::now();
        for _ in 0..reps {
            step(&tr, &mut workers, &mut total);
        }
        let s = t0.elapsed().as_secs_f64() / reps as f64;
        let cpu = match (c0, cpu_seconds()) {
            (Some(a), Some(b)) => format!(", CPU {:.3} s/step", (b - a) / reps as f64),
            _ => String::new(),
        };
        let samples = (BATCH * FRAME) as f64;
        let flop = samples * 3.0 * 2.0 * (cell.gates() * HIDDEN) as f64 * (HIDDEN + 1) as f64;
        println!(
            "rnn_train {cell:?} {name}: {:.3} s/step{cpu}, {:.2} M samples/s, {:.1} GFLOP/s",
            s,
            samples / s / 1e6,
            flop / s / 1e9
        );
    });
}

fn bench(c: &mut Criterion) {
    for (name, splits) in [("1 thread", 1), ("2 threads", 2)] {
        report::<f64>(Cell::Lstm, 0, &format!("f64 {name}"), splits);
        report::<f32>(Cell::Lstm, 0, &format!("f32 {name}"), splits);
    }
    report::<f64>(Cell::Gru, 0, "f64 1 thread", 1);
    for (name, splits) in [("1 thread", 1), ("2 threads", 2)] {
        report::<f64>(Cell::Lstm, 2, &format!("2 knobs f64 {name}"), splits);
        report::<f32>(Cell::Lstm, 2, &format!("2 knobs f32 {name}"), splits);
    }
    let mut g = c.benchmark_group("rnn_train_lstm40_b40x4410");
    g.sample_size(10);
    for splits in [1, 2] {
        let p = pool(splits);
        let (tr, mut w, mut t) = setup::<f64>(Cell::Lstm, 0, splits);
        g.bench_function(format!("f64_{splits}thread"), |b| {
            b.iter(|| p.install(|| step(&tr, &mut w, &mut t)))
        });
        let (tr, mut w, mut t) = setup::<f32>(Cell::Lstm, 0, splits);
        g.bench_function(format!("f32_{splits}thread"), |b| {
            b.iter(|| p.install(|| step(&tr, &mut w, &mut t)))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("rnn_train_lstm40_knobs2_b40x4410");
    g.sample_size(10);
    let p = pool(1);
    let (tr, mut w, mut t) = setup::<f64>(Cell::Lstm, 2, 1);
    g.bench_function("f64_1thread", |b| {
        b.iter(|| p.install(|| step(&tr, &mut w, &mut t)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
