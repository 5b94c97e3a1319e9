//! Checks of the recurrent training engine: forward passes against the streaming processor,
//! gradients against central finite differences (f64), and f32 against f64.
//!
//! Tolerances: forward vs `Network::process` 1e-12 (max abs difference relative to the largest
//! output); `run`/`forward`/chunked frames 1e-13; gradients, per parameter tensor, the L2 norm
//! of (analytic − finite difference) relative to the L2 norm of the finite difference < 1e-6;
//! f32 vs f64: outputs 1e-5 and gradients 1e-3 (relative, per tensor).
//!
//! Knob-conditioned networks (`knobs > 0`: layer 0 sees `[x, k_1, …]`) run every item of a
//! batch at its own knob values, so that the knob weights' gradients sum over differently
//! conditioned items; the forward reference is the streaming processor of the network set to
//! that item's knob values.

use dealias::models::rnn_train::{RnnState, RnnTape, RnnTrainer};
use dealias::models::{Cell, Network, Rnn, RnnLayer};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Copy, Debug)]
enum Bias {
    /// PyTorch: b_ih and b_hh.
    Both,
    /// None at all.
    Absent,
    /// NAM: one combined bias in b_ih.
    Combined,
}

#[derive(Clone, Copy, Debug)]
struct Config {
    cell: Cell,
    hidden: &'static [usize],
    bias: Bias,
    skip: bool,
    head_bias: bool,
    initial_state: bool,
    /// Knob inputs after the audio sample.
    knobs: usize,
}

fn uniform(rng: &mut ChaCha8Rng, n: usize, a: f64) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(-a..a)).collect()
}

fn random_rnn(cfg: Config, seed: u64) -> Rnn {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let g = cfg.cell.gates();
    let mut input = 1 + cfg.knobs;
    let mut layers = vec![];
    for &h in cfg.hidden {
        let (b_ih, b_hh) = match cfg.bias {
            Bias::Both => (
                Some(uniform(&mut rng, g * h, 0.5)),
                Some(uniform(&mut rng, g * h, 0.5)),
            ),
            Bias::Absent => (None, None),
            Bias::Combined => (Some(uniform(&mut rng, g * h, 0.5)), None),
        };
        let (initial_hidden, initial_cell) = if cfg.initial_state {
            (
                Some(uniform(&mut rng, h, 0.8)),
                (cfg.cell == Cell::Lstm).then(|| uniform(&mut rng, h, 0.8)),
            )
        } else {
            (None, None)
        };
        layers.push(RnnLayer {
            input_size: input,
            hidden_size: h,
            // Large enough to drive the gates into their nonlinear range.
            w_ih: uniform(&mut rng, g * h * input, 1.2),
            w_hh: uniform(&mut rng, g * h * h, 0.8),
            b_ih,
            b_hh,
            initial_hidden,
            initial_cell,
        });
        input = h;
    }
    let rnn = Rnn {
        cell: cfg.cell,
        layers,
        head_weight: uniform(&mut rng, input, 1.0),
        head_bias: cfg.head_bias.then(|| uniform(&mut rng, 1, 0.5)),
        skip: cfg.skip,
        knobs: (0..cfg.knobs).map(|_| rng.gen_range(0.0..1.0)).collect(),
    };
    rnn.validate().unwrap();
    rnn
}

fn random_signals(rng: &mut ChaCha8Rng, batch: usize, steps: usize) -> Vec<Vec<f64>> {
    (0..batch).map(|_| uniform(rng, steps, 1.0)).collect()
}

/// Different knob values for every item (empty for unconditioned networks).
fn item_knobs(net: &Rnn, batch: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..batch)
        .map(|_| {
            (0..net.knobs.len())
                .map(|_| rng.gen_range(0.0..1.0))
                .collect()
        })
        .collect()
}

/// The network's initial state for every item, at the item's knob values.
fn initial_states<T: dealias::Real>(tr: &RnnTrainer<T>, knobs: &[Vec<f64>]) -> Vec<RnnState<T>> {
    knobs
        .iter()
        .map(|k| RnnState {
            knobs: dealias::models::cast_vec(k),
            ..tr.initial_state()
        })
        .collect()
}

fn random_state(tr: &RnnTrainer<f64>, rng: &mut ChaCha8Rng) -> RnnState<f64> {
    let mut s = tr.initial_state();
    for v in s.h.iter_mut().chain(s.c.iter_mut()) {
        for x in v.iter_mut() {
            *x = rng.gen_range(-0.7..0.7);
        }
    }
    s
}

/// Runs the trainer forward (without tape) from `start` (default: the network's initial
/// state at the items' knob values `knobs`) and returns `Σ c·y`.
fn loss(
    net: &Rnn,
    xs: &[Vec<f64>],
    cs: &[Vec<f64>],
    start: Option<&[RnnState<f64>]>,
    knobs: &[Vec<f64>],
) -> f64 {
    let tr = RnnTrainer::<f64>::new(net);
    let mut states: Vec<RnnState<f64>> = match start {
        Some(s) => s.to_vec(),
        None => initial_states(&tr, knobs),
    };
    let xr: Vec<&[f64]> = xs.iter().map(|x| x.as_slice()).collect();
    let mut ys = vec![vec![0.0; xs[0].len()]; xs.len()];
    let mut yr: Vec<&mut [f64]> = ys.iter_mut().map(|y| y.as_mut_slice()).collect();
    tr.run(&xr, &mut states, &mut yr);
    ys.iter()
        .zip(cs)
        .map(|(y, c)| y.iter().zip(c).map(|(a, b)| a * b).sum::<f64>())
        .sum()
}

/// Forward + backward with the tape; returns (outputs, gradient, d-start-state).
fn analytic<T: dealias::Real>(
    net: &Rnn,
    xs: &[Vec<f64>],
    cs: &[Vec<f64>],
    start: &[RnnState<T>],
) -> (Vec<Vec<T>>, Vec<T>, Vec<RnnState<T>>) {
    let tr = RnnTrainer::<T>::new(net);
    let xs: Vec<Vec<T>> = xs.iter().map(|x| dealias::models::cast_vec(x)).collect();
    let cs: Vec<Vec<T>> = cs.iter().map(|x| dealias::models::cast_vec(x)).collect();
    let mut states = start.to_vec();
    let xr: Vec<&[T]> = xs.iter().map(|x| x.as_slice()).collect();
    let mut ys = vec![vec![T::zero(); xs[0].len()]; xs.len()];
    let mut tape = RnnTape::new();
    {
        let mut yr: Vec<&mut [T]> = ys.iter_mut().map(|y| y.as_mut_slice()).collect();
        tr.forward(&xr, &mut states, &mut tape, &mut yr);
    }
    let cr: Vec<&[T]> = cs.iter().map(|c| c.as_slice()).collect();
    let mut grad = vec![T::zero(); tr.num_params()];
    let ds = tr.backward(&tape, &cr, &mut grad);
    (ys, grad, ds)
}

/// Parameter tensor boundaries in canonical order, with names.
fn groups(net: &Rnn) -> Vec<(String, std::ops::Range<usize>)> {
    let mut out = vec![];
    let mut at = 0;
    let mut push = |name: String, n: usize| {
        out.push((name, at..at + n));
        at += n;
    };
    for (i, l) in net.layers.iter().enumerate() {
        push(format!("l{i}.w_ih"), l.w_ih.len());
        push(format!("l{i}.w_hh"), l.w_hh.len());
        for (name, v) in [
            ("b_ih", &l.b_ih),
            ("b_hh", &l.b_hh),
            ("h0", &l.initial_hidden),
            ("c0", &l.initial_cell),
        ] {
            if let Some(v) = v {
                push(format!("l{i}.{name}"), v.len());
            }
        }
    }
    push("head_w".into(), net.head_weight.len());
    if let Some(b) = &net.head_bias {
        push("head_b".into(), b.len());
    }
    out
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    (num / den.max(1e-300)).sqrt()
}

const FD_STEP: f64 = 1e-5;
const GRAD_TOL: f64 = 1e-6;

/// Central finite differences of the loss over every parameter; frames start from the
/// network's initial state (so that learned initial states get their gradient).
fn check_params(cfg: Config, seed: u64, batch: usize, steps: usize) -> f64 {
    let net = random_rnn(cfg, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 1000);
    let xs = random_signals(&mut rng, batch, steps);
    let cs = random_signals(&mut rng, batch, steps);
    let tr = RnnTrainer::<f64>::new(&net);
    assert_eq!(tr.num_params(), Network::Rnn(net.clone()).num_params());
    let knobs = item_knobs(&net, batch, seed + 3000);
    let start = initial_states(&tr, &knobs);
    let (_, mut grad, ds) = analytic(&net, &xs, &cs, &start);
    for d in &ds {
        tr.add_initial_state_grad(d, &mut grad);
    }
    let network = Network::Rnn(net.clone());
    let p0 = network.params();
    let mut fd = vec![0.0; p0.len()];
    let mut probe = network.clone();
    for i in 0..p0.len() {
        let mut p = p0.clone();
        p[i] = p0[i] + FD_STEP;
        probe.set_params(&p).unwrap();
        let Network::Rnn(ref n) = probe else {
            unreachable!()
        };
        let lp = loss(n, &xs, &cs, None, &knobs);
        p[i] = p0[i] - FD_STEP;
        probe.set_params(&p).unwrap();
        let Network::Rnn(ref n) = probe else {
            unreachable!()
        };
        let lm = loss(n, &xs, &cs, None, &knobs);
        fd[i] = (lp - lm) / (2.0 * FD_STEP);
    }
    let mut worst: f64 = 0.0;
    for (name, r) in groups(&net) {
        let e = rel_err(&grad[r.clone()], &fd[r.clone()]);
        println!("{cfg:?} {name}: relative error {e:.2e}");
        assert!(e < GRAD_TOL, "{cfg:?} {name}: relative error {e:.3e}");
        worst = worst.max(e);
    }
    println!("{cfg:?}: worst parameter-group error {worst:.2e}");
    worst
}

/// Central finite differences with respect to a random starting state.
fn check_state(cfg: Config, seed: u64, batch: usize, steps: usize) -> f64 {
    let net = random_rnn(cfg, seed);
    let tr = RnnTrainer::<f64>::new(&net);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 2000);
    let xs = random_signals(&mut rng, batch, steps);
    let cs = random_signals(&mut rng, batch, steps);
    let knobs = item_knobs(&net, batch, seed + 3000);
    let start: Vec<RnnState<f64>> = knobs
        .iter()
        .map(|k| RnnState {
            knobs: k.clone(),
            ..random_state(&tr, &mut rng)
        })
        .collect();
    let (_, _, ds) = analytic(&net, &xs, &cs, &start);
    let mut worst: f64 = 0.0;
    for b in 0..batch {
        for which in 0..2 {
            for li in 0..net.layers.len() {
                let n = if which == 0 {
                    start[b].h[li].len()
                } else {
                    start[b].c[li].len()
                };
                let mut fd = vec![0.0; n];
                for (k, f) in fd.iter_mut().enumerate() {
                    let mut s = start.clone();
                    let v = if which == 0 {
                        &mut s[b].h[li][k]
                    } else {
                        &mut s[b].c[li][k]
                    };
                    let v0 = *v;
                    *v = v0 + FD_STEP;
                    let lp = loss(&net, &xs, &cs, Some(&s), &knobs);
                    let v = if which == 0 {
                        &mut s[b].h[li][k]
                    } else {
                        &mut s[b].c[li][k]
                    };
                    *v = v0 - FD_STEP;
                    let lm = loss(&net, &xs, &cs, Some(&s), &knobs);
                    *f = (lp - lm) / (2.0 * FD_STEP);
                }
                if n == 0 {
                    assert!(ds[b].c[li].is_empty());
                    continue;
                }
                let an = if which == 0 {
                    &ds[b].h[li]
                } else {
                    &ds[b].c[li]
                };
                let e = rel_err(an, &fd);
                assert!(
                    e < GRAD_TOL,
                    "{cfg:?} item {b} layer {li} state {which}: {e:.3e}"
                );
                worst = worst.max(e);
            }
        }
    }
    println!("{cfg:?}: worst starting-state error {worst:.2e}");
    worst
}

fn configs() -> Vec<Config> {
    let mut v = vec![];
    for cell in [Cell::Lstm, Cell::Gru] {
        for hidden in [&[4usize][..], &[3, 5][..]] {
            for (bias, skip, head_bias) in [
                (Bias::Both, true, true),
                (Bias::Absent, false, false),
                (Bias::Both, false, true),
            ] {
                v.push(Config {
                    cell,
                    hidden,
                    bias,
                    skip,
                    head_bias,
                    initial_state: false,
                    knobs: 0,
                });
            }
        }
        // NAM style: one combined bias, learned initial state.
        for hidden in [&[5usize][..], &[4, 3][..]] {
            v.push(Config {
                cell,
                hidden,
                bias: Bias::Combined,
                skip: false,
                head_bias: true,
                initial_state: true,
                knobs: 0,
            });
        }
        // Knob-conditioned (Proteus / AIDA-X style): 1 and 2 knobs, with and without biases.
        for (hidden, bias, skip, knobs) in [
            (&[4usize][..], Bias::Both, true, 2),
            (&[3, 5][..], Bias::Absent, false, 1),
        ] {
            v.push(Config {
                cell,
                hidden,
                bias,
                skip,
                head_bias: true,
                initial_state: false,
                knobs,
            });
        }
    }
    v
}

#[test]
fn rnn_train_gradient_matches_finite_differences() {
    let mut worst: f64 = 0.0;
    for (i, cfg) in configs().into_iter().enumerate() {
        let batch = 2 + i % 2;
        let steps = 20 + (i * 7) % 31;
        worst = worst.max(check_params(cfg, 10 + i as u64, batch, steps));
    }
    println!("all configurations: worst parameter-group error {worst:.2e}");
}

#[test]
fn rnn_train_state_gradient_matches_finite_differences() {
    let mut worst: f64 = 0.0;
    for (i, cfg) in configs().into_iter().enumerate() {
        let batch = 3 - i % 2;
        let steps = 50 - (i * 5) % 31;
        worst = worst.max(check_state(cfg, 100 + i as u64, batch, steps));
    }
    println!("all configurations: worst starting-state error {worst:.2e}");
}

fn max_rel(a: &[f64], b: &[f64]) -> f64 {
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn rnn_train_forward_matches_streaming_processor() {
    let mut worst: f64 = 0.0;
    let mut cases: Vec<(Config, usize)> = configs().into_iter().map(|c| (c, 3)).collect();
    cases.extend(tile_configs().into_iter().map(|c| (c, 6)));
    for (i, (cfg, batch)) in cases.into_iter().enumerate() {
        let net = random_rnn(cfg, 300 + i as u64);
        let mut rng = ChaCha8Rng::seed_from_u64(400 + i as u64);
        let steps = 300;
        let xs = random_signals(&mut rng, batch, steps);
        let cs = random_signals(&mut rng, batch, steps);
        let tr = RnnTrainer::<f64>::new(&net);
        let knobs = item_knobs(&net, batch, 450 + i as u64);
        let start = initial_states(&tr, &knobs);
        let (ys, _, _) = analytic(&net, &xs, &cs, &start);
        for ((x, y), k) in xs.iter().zip(&ys).zip(&knobs) {
            let network = Network::Rnn(Rnn {
                knobs: k.clone(),
                ..net.clone()
            });
            let reference = network.process::<f64>(x);
            let e = max_rel(y, &reference);
            assert!(e < 1e-12, "{cfg:?}: forward vs process {e:.3e}");
            worst = worst.max(e);
        }

        // `run`, and the same signal as two consecutive frames, give the same outputs and
        // final states as one long frame.
        let xr: Vec<&[f64]> = xs.iter().map(|x| x.as_slice()).collect();
        let mut s_run = start.clone();
        let mut y_run = vec![vec![0.0; steps]; batch];
        let mut yr: Vec<&mut [f64]> = y_run.iter_mut().map(|y| y.as_mut_slice()).collect();
        tr.run(&xr, &mut s_run, &mut yr);
        let mut s_one = start.clone();
        let mut y_one = vec![vec![0.0; steps]; batch];
        let mut tape = RnnTape::new();
        let mut yr: Vec<&mut [f64]> = y_one.iter_mut().map(|y| y.as_mut_slice()).collect();
        tr.forward(&xr, &mut s_one, &mut tape, &mut yr);
        let mut s_two = start.clone();
        let mut y_two = vec![vec![0.0; steps]; batch];
        for (a, b) in [(0, 117), (117, steps)] {
            let xc: Vec<&[f64]> = xs.iter().map(|x| &x[a..b]).collect();
            let mut yc: Vec<&mut [f64]> = y_two.iter_mut().map(|y| &mut y[a..b]).collect();
            tr.forward(&xc, &mut s_two, &mut tape, &mut yc);
        }
        for b in 0..batch {
            assert!(
                max_rel(&y_run[b], &y_one[b]) < 1e-13,
                "{cfg:?}: run vs forward"
            );
            assert!(max_rel(&y_two[b], &y_one[b]) < 1e-13, "{cfg:?}: two frames");
            assert!(max_rel(&y_one[b], &ys[b]) < 1e-13, "{cfg:?}: tape reuse");
            for li in 0..net.layers.len() {
                assert!(max_rel(&s_run[b].h[li], &s_one[b].h[li]) < 1e-13);
                assert!(max_rel(&s_two[b].h[li], &s_one[b].h[li]) < 1e-13);
                assert!(max_rel(&s_two[b].c[li], &s_one[b].c[li]) < 1e-13);
            }
        }
    }
    println!("forward vs streaming processor: worst relative difference {worst:.2e}");
}

#[test]
fn rnn_train_backward_is_repeatable_with_reused_tape() {
    let cfg = configs()[1];
    let net = random_rnn(cfg, 7);
    let tr = RnnTrainer::<f64>::new(&net);
    let mut tape = RnnTape::new();
    let mut grads = vec![];
    // A long frame, a short one (buffers shrink without reallocating), then the long again.
    for steps in [80, 30, 80] {
        let mut r = ChaCha8Rng::seed_from_u64(9);
        let xs = random_signals(&mut r, 2, steps);
        let cs = random_signals(&mut r, 2, steps);
        let xr: Vec<&[f64]> = xs.iter().map(|x| x.as_slice()).collect();
        let cr: Vec<&[f64]> = cs.iter().map(|x| x.as_slice()).collect();
        let mut rs = ChaCha8Rng::seed_from_u64(11);
        let mut states = vec![random_state(&tr, &mut rs); 2];
        let mut ys = vec![vec![0.0; steps]; 2];
        let mut yr: Vec<&mut [f64]> = ys.iter_mut().map(|y| y.as_mut_slice()).collect();
        tr.forward(&xr, &mut states, &mut tape, &mut yr);
        let mut g = vec![0.0; tr.num_params()];
        tr.backward(&tape, &cr, &mut g);
        grads.push(g);
    }
    assert_ne!(grads[0], grads[1]);
    // Same frame as the first: the same gradient, bit for bit.
    assert_eq!(grads[2], grads[0]);
}

fn check_f32(cfg: Config, seed: u64, batch: usize, steps: usize) {
    let net = random_rnn(cfg, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 100);
    let xs = random_signals(&mut rng, batch, steps);
    let cs = random_signals(&mut rng, batch, steps);
    let knobs = item_knobs(&net, batch, seed + 200);
    let s64 = initial_states(&RnnTrainer::<f64>::new(&net), &knobs);
    let s32 = initial_states(&RnnTrainer::<f32>::new(&net), &knobs);
    let (y64, g64, d64) = analytic::<f64>(&net, &xs, &cs, &s64);
    let (y32, g32, d32) = analytic::<f32>(&net, &xs, &cs, &s32);
    let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let mut ey: f64 = 0.0;
    for (a, b) in y32.iter().zip(&y64) {
        ey = ey.max(max_rel(&widen(a), b));
    }
    let mut eg: f64 = 0.0;
    for (_, r) in groups(&net) {
        eg = eg.max(rel_err(&widen(&g32[r.clone()]), &g64[r]));
    }
    for (a, b) in d32.iter().zip(&d64) {
        eg = eg.max(rel_err(&widen(&a.h.concat()), &b.h.concat()));
    }
    println!("{cfg:?}: f32 vs f64 outputs {ey:.2e}, gradients {eg:.2e}");
    assert!(ey < 1e-5, "{cfg:?}: f32 outputs {ey:.3e}");
    assert!(eg < 1e-3, "{cfg:?}: f32 gradients {eg:.3e}");
}

#[test]
fn rnn_train_f32_matches_f64() {
    for (i, cfg) in configs().into_iter().enumerate() {
        check_f32(cfg, 500 + i as u64, 3, 200);
    }
    // Full register tiles and half-width panels of the f32 kernel.
    for (i, cfg) in tile_configs().into_iter().enumerate() {
        check_f32(cfg, 700 + i as u64, 6, 200);
    }
}

/// Sizes where the per-step product runs on full register tiles and half-width panels
/// (used with batches of 5 and 6: full tiles of 4 items plus remainder rows).
fn tile_configs() -> Vec<Config> {
    [
        (Cell::Lstm, &[16usize][..], 0),
        (Cell::Gru, &[8, 16][..], 0),
        (Cell::Lstm, &[16, 8][..], 0),
        (Cell::Lstm, &[16usize][..], 2),
    ]
    .into_iter()
    .map(|(cell, hidden, knobs)| Config {
        cell,
        hidden,
        bias: Bias::Both,
        skip: true,
        head_bias: true,
        initial_state: false,
        knobs,
    })
    .collect()
}

#[test]
fn rnn_train_gradient_with_full_kernel_tiles() {
    for (i, cfg) in tile_configs().into_iter().enumerate() {
        check_params(cfg, 900 + i as u64, 6, 25);
        check_state(cfg, 950 + i as u64, 5, 20);
    }
}

/// The training loop shares the trainer across threads and gives each thread its own tape.
#[test]
fn rnn_train_types_are_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<RnnTrainer<f64>>();
    send_sync::<RnnTape<f64>>();
    send_sync::<RnnTrainer<f32>>();
    send_sync::<RnnTape<f32>>();
}
