//! Forward + backward of the NAM standard WaveNet and of the two A2 submodels (3 and 8
//! channels) on one training item (22050 outputs plus the receptive-field context), f64 and
//! f32; then a batch of 32 items on all cores.
//!
//! Prints seconds per item, samples/s, GFLOP/s of the matrix products, and the time of a
//! 32-item batch (measured with rayon, one tape per thread).

use std::time::Instant;

mod common;
use common::a1_wavenet;

use criterion::{criterion_group, criterion_main, Criterion};
use dealias::models::wavenet_train::{WaveNetTape, WaveNetTrainer};
use dealias::models::{Network, WaveNet};
use dealias::Real;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

const N: usize = 22050;
const BATCH: usize = 32;

fn item<T: Real>(
    t: &WaveNetTrainer<T>,
    x: &[T],
    dy: &[T],
    tape: &mut WaveNetTape<T>,
    y: &mut [T],
    g: &mut [T],
) {
    t.forward(x, tape, y);
    t.backward(tape, dy, g);
}

fn report<T: Real>(name: &str, net: &WaveNet) {
    let t = WaveNetTrainer::<T>::new(net);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let x: Vec<T> = (0..N + t.context())
        .map(|_| T::from_f64_lossy(rng.gen_range(-0.5..0.5)))
        .collect();
    let dy: Vec<T> = (0..N)
        .map(|_| T::from_f64_lossy(rng.gen_range(-1e-3..1e-3)))
        .collect();
    let mut tape = t.tape();
    let mut y = vec![T::zero(); N];
    let mut g = vec![T::zero(); t.num_params()];
    item(&t, &x, &dy, &mut tape, &mut y, &mut g); // sizes the tape
    let reps = 5;
    let (mut tf, mut tb) = (0.0, 0.0);
    for _ in 0..reps {
        let s = Instant::now();
        t.forward(&x, &mut tape, &mut y);
        tf += s.elapsed().as_secs_f64();
        let s = Instant::now();
        t.backward(&tape, &dy, &mut g);
        tb += s.elapsed().as_secs_f64();
    }
    let (tf, tb) = (tf / reps as f64, tb / reps as f64);
    let per = tf + tb;
    let flops = t.flops(N);
    let threads = rayon::current_num_threads();
    // A batch: each thread keeps one tape and one gradient across steps (sized outside the
    // timing, as a training loop reuses them) and runs every `threads`-th item.
    let mut workers: Vec<_> = (0..threads)
        .map(|_| {
            let mut w = (
                t.tape(),
                vec![T::zero(); N],
                vec![T::zero(); t.num_params()],
            );
            item(&t, &x, &dy, &mut w.0, &mut w.1, &mut w.2);
            w
        })
        .collect();
    let s = Instant::now();
    workers
        .par_iter_mut()
        .enumerate()
        .for_each(|(w, (tape, y, g))| {
            for _ in (w..BATCH).step_by(threads) {
                item(&t, &x, &dy, tape, y, g);
            }
        });
    let batch = s.elapsed().as_secs_f64();
    // The streaming inference processor (hand-written axpy loops) on the same input, for the
    // choice of matrix products: its forward does about a third of the trainer's flops.
    let network = Network::WaveNet(net.clone());
    let s = Instant::now();
    let _ = network.process::<T>(&x);
    let tp = s.elapsed().as_secs_f64();
    println!(
        "{name}: {} params, {} + {} samples: forward {:.1} ms, backward {:.1} ms, item {:.3} s, \
         {:.0} samples/s, {:.2} GFLOP/item, {:.1} GFLOP/s; batch of {BATCH} on {threads} threads: \
         {:.2} s measured ({:.2} s implied by one item); inference processor forward {:.1} ms \
         ({:.1} GFLOP/s)",
        t.num_params(),
        N,
        t.context(),
        tf * 1e3,
        tb * 1e3,
        per,
        N as f64 / per,
        flops * 1e-9,
        flops / per * 1e-9,
        batch,
        per * BATCH as f64 / threads as f64,
        tp * 1e3,
        flops / 3.0 / tp * 1e-9,
    );
}

fn bench(c: &mut Criterion) {
    let net = a1_wavenet(16, 8);
    report::<f64>("f64", &net);
    report::<f32>("f32", &net);
    // The trainer's A2 (the packed container's two submodels: 3 and 8 channels, kernels
    // 6/15, convolutional head k = 16), as `dealias finetune` trains each.
    let a2 = dealias::load_model(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/nam07/a2_packed_container/a2_packed_container.nam"
    )))
    .expect("the packed A2 container loads");
    for (i, sub) in a2.submodel_networks().into_iter().enumerate() {
        let Network::WaveNet(w) = sub else {
            panic!("A2 submodels are WaveNets")
        };
        report::<f64>(&format!("a2_submodel_{i} f64"), w);
        report::<f32>(&format!("a2_submodel_{i} f32"), w);
    }
    let mut group = c.benchmark_group("wavenet_train");
    group.sample_size(10);
    for prec in ["f64", "f32"] {
        group.bench_function(format!("standard_item_{prec}"), |b| {
            fn setup<T: Real>(net: &WaveNet) -> (WaveNetTrainer<T>, Vec<T>, Vec<T>) {
                let t = WaveNetTrainer::<T>::new(net);
                let x = (0..N + t.context())
                    .map(|i| T::from_f64_lossy((i as f64 * 0.01).sin() * 0.5))
                    .collect();
                let dy = vec![T::from_f64_lossy(1e-3); N];
                (t, x, dy)
            }
            fn run<T: Real>(b: &mut criterion::Bencher, net: &WaveNet) {
                let (t, x, dy) = setup::<T>(net);
                let mut tape = t.tape();
                let mut y = vec![T::zero(); N];
                let mut g = vec![T::zero(); t.num_params()];
                b.iter(|| item(&t, &x, &dy, &mut tape, &mut y, &mut g));
            }
            if prec == "f64" {
                run::<f64>(b, &net)
            } else {
                run::<f32>(b, &net)
            }
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
