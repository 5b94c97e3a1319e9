//! Checks of the WaveNet training engine: gradients against central finite differences of the
//! streaming inference processor (f64), forward against the processor, f32 against f64, and
//! tape reuse.

use dealias::models::wavenet_train::WaveNetTrainer;
use dealias::models::{
    Activation, Conv1d, Gating, Network, WaveNet, WaveNetHead, WaveNetLayer, WaveNetLayerArray,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const ACTIVATIONS: [Activation; 12] = Activation::ALL;

fn conv(
    rng: &mut ChaCha8Rng,
    i: usize,
    o: usize,
    k: usize,
    d: usize,
    bias: bool,
    s: f64,
) -> Conv1d {
    let mut c = Conv1d::zeros(i, o, k, d, bias);
    c.weight.iter_mut().for_each(|w| *w = rng.gen_range(-s..s));
    if let Some(b) = &mut c.bias {
        b.iter_mut().for_each(|w| *w = rng.gen_range(-s..s));
    }
    c
}

struct Config {
    activation: Activation,
    gated: bool,
    kernel: usize,
    head_bias: bool,
    post_head: bool,
    seed: u64,
}

/// Two layer arrays (channels 3 then 2, dilations 1, 2, 4), heads chaining 2 → 1 (or 2 → 2
/// and a post-head 2 → 3 → 1).
fn small_net(cfg: &Config) -> WaveNet {
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let s = 0.7;
    let last_head = if cfg.post_head { 2 } else { 1 };
    let dims = [(1, 3, 2), (3, 2, last_head)];
    let layer_arrays = dims
        .iter()
        .map(|&(input, ch, head)| {
            let mid = if cfg.gated { 2 * ch } else { ch };
            WaveNetLayerArray {
                input_size: input,
                condition_size: 1,
                head_size: head,
                channels: ch,
                rechannel: conv(&mut rng, input, ch, 1, 1, false, s),
                layers: [1, 2, 4]
                    .iter()
                    .map(|&d| WaveNetLayer {
                        conv: conv(&mut rng, ch, mid, cfg.kernel, d, true, s),
                        input_mixer: conv(&mut rng, 1, mid, 1, 1, false, s),
                        activation: cfg.activation,
                        gating: if cfg.gated {
                            Gating::Gated(Activation::Sigmoid)
                        } else {
                            Gating::None
                        },
                        one_by_one: Some(conv(&mut rng, ch, ch, 1, 1, true, s)),
                        head1x1: None,
                        films: Default::default(),
                    })
                    .collect(),
                head_rechannel: conv(&mut rng, ch, head, 1, 1, cfg.head_bias, s),
            }
        })
        .collect();
    let head = cfg.post_head.then(|| WaveNetHead {
        activation: Activation::SiLU,
        layers: vec![
            conv(&mut rng, 2, 3, 1, 1, true, s),
            conv(&mut rng, 3, 1, 1, 1, true, s),
        ],
    });
    let net = WaveNet {
        layer_arrays,
        head,
        head_scale: vec![rng.gen_range(0.5..1.5)],
    };
    net.validate().unwrap();
    net
}

fn signal(rng: &mut ChaCha8Rng, n: usize, amp: f64) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(-amp..amp)).collect()
}

/// Σ c_t y_t with y the processor's last `c.len()` outputs on `x` (from its initial state).
fn loss(net: &Network, x: &[f64], c: &[f64]) -> f64 {
    let y = net.process::<f64>(x);
    y[y.len() - c.len()..]
        .iter()
        .zip(c)
        .map(|(a, b)| a * b)
        .sum()
}

/// Lengths of the parameter tensors in canonical order.
fn groups(net: &Network) -> Vec<usize> {
    let mut g = Vec::new();
    net.clone()
        .visit_params(&mut |w: &mut Vec<f64>| g.push(w.len()));
    g
}

/// Largest, over parameter tensors, of ‖analytic − FD‖₂ / ‖FD‖₂ (absolute where FD is 0).
fn gradient_check(wn: &WaveNet, n: usize, seed: u64) -> f64 {
    let trainer = WaveNetTrainer::<f64>::new(wn);
    let net = Network::WaveNet(wn.clone());
    assert_eq!(trainer.num_params(), net.num_params());
    assert_eq!(trainer.context() + 1, net.receptive_field());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = signal(&mut rng, n + trainer.context(), 1.0);
    let c = signal(&mut rng, n, 1.0);
    let mut tape = trainer.tape();
    let mut y = vec![0.0; n];
    trainer.forward(&x, &mut tape, &mut y);
    let mut grad = vec![0.0; trainer.num_params()];
    trainer.backward(&tape, &c, &mut grad);

    let p0 = net.params();
    let h = 1e-5;
    let mut fd = vec![0.0; p0.len()];
    let mut probe = net.clone();
    for i in 0..p0.len() {
        let mut p = p0.clone();
        p[i] = p0[i] + h;
        probe.set_params(&p).unwrap();
        let up = loss(&probe, &x, &c);
        p[i] = p0[i] - h;
        probe.set_params(&p).unwrap();
        let down = loss(&probe, &x, &c);
        fd[i] = (up - down) / (2.0 * h);
    }
    let mut worst: f64 = 0.0;
    let mut at = 0;
    for len in groups(&net) {
        let (g, f) = (&grad[at..at + len], &fd[at..at + len]);
        let diff = g
            .iter()
            .zip(f)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f64>()
            .sqrt();
        let norm = f.iter().map(|v| v * v).sum::<f64>().sqrt();
        let err = if norm > 0.0 { diff / norm } else { diff };
        worst = worst.max(err);
        at += len;
    }
    worst
}

#[test]
fn wavenet_train_gradient_matches_finite_differences() {
    let mut report = Vec::new();
    for (ai, &activation) in ACTIVATIONS.iter().enumerate() {
        for gated in [false, true] {
            let variant = 2 * ai + gated as usize;
            let cfg = Config {
                activation,
                gated,
                kernel: 2 + variant % 2,
                head_bias: !variant.is_multiple_of(3),
                post_head: variant % 4 >= 2,
                seed: 100 + variant as u64,
            };
            let net = small_net(&cfg);
            let err = gradient_check(&net, 30, 7 + variant as u64);
            report.push(format!(
                "{:?} gated={} K={} head_bias={} post_head={}: max group rel. error {:.1e}",
                activation, gated, cfg.kernel, cfg.head_bias, cfg.post_head, err
            ));
            assert!(err < 1e-6, "{}", report.last().unwrap());
        }
    }
    println!("{}", report.join("\n"));
}

#[test]
fn wavenet_train_forward_matches_processor() {
    for (i, &activation) in ACTIVATIONS.iter().enumerate() {
        let cfg = Config {
            activation,
            gated: i % 2 == 1,
            kernel: 3,
            head_bias: true,
            post_head: i % 3 == 0,
            seed: 500 + i as u64,
        };
        let wn = small_net(&cfg);
        let trainer = WaveNetTrainer::<f64>::new(&wn);
        let net = Network::WaveNet(wn);
        let mut rng = ChaCha8Rng::seed_from_u64(i as u64);
        // Longer than a block, so the block boundaries are exercised.
        let n = 1300;
        let x = signal(&mut rng, n, 1.0);
        let reference = net.process::<f64>(&x);
        let mut padded = vec![0.0; trainer.context()];
        padded.extend_from_slice(&x);
        let mut tape = trainer.tape();
        let mut y = vec![0.0; n];
        trainer.forward(&padded, &mut tape, &mut y);
        // The processor starts every layer's history at zero, while zero input padding gives
        // layers with biases non-zero states over the padding; the two agree once the
        // receptive field has passed the start.
        let ctx = trainer.context();
        let scale = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let err = y[ctx..]
            .iter()
            .zip(&reference[ctx..])
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= 1e-12 * scale,
            "{activation:?}: error {err:e}, scale {scale}"
        );
        // With real context instead of zeros: the processor's last n outputs.
        let full = signal(&mut rng, n + trainer.context(), 1.0);
        let reference = net.process::<f64>(&full);
        trainer.forward(&full, &mut tape, &mut y);
        let err = y
            .iter()
            .zip(&reference[trainer.context()..])
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= 1e-12 * scale.max(1.0),
            "{activation:?}: error {err:e}"
        );
    }
}

/// A wider network (channels 8 then 4) for precision comparisons.
fn wide_net() -> WaveNet {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let arr = |rng: &mut ChaCha8Rng, input: usize, ch: usize, head: usize| WaveNetLayerArray {
        input_size: input,
        condition_size: 1,
        head_size: head,
        channels: ch,
        rechannel: conv(rng, input, ch, 1, 1, false, 1.0),
        layers: (0..6)
            .map(|i| WaveNetLayer {
                conv: conv(rng, ch, ch, 3, 1 << i, true, 1.0 / (3.0 * ch as f64).sqrt()),
                input_mixer: conv(rng, 1, ch, 1, 1, false, 1.0),
                activation: Activation::Tanh,
                gating: Gating::None,
                one_by_one: Some(conv(rng, ch, ch, 1, 1, true, 1.0 / (ch as f64).sqrt())),
                head1x1: None,
                films: Default::default(),
            })
            .collect(),
        head_rechannel: conv(rng, ch, head, 1, 1, true, 1.0 / (ch as f64).sqrt()),
    };
    let net = WaveNet {
        layer_arrays: vec![arr(&mut rng, 1, 8, 4), arr(&mut rng, 8, 4, 1)],
        head: None,
        head_scale: vec![0.02],
    };
    net.validate().unwrap();
    net
}

#[test]
fn wavenet_train_f32_matches_f64() {
    let wn = wide_net();
    let t64 = WaveNetTrainer::<f64>::new(&wn);
    let t32 = WaveNetTrainer::<f32>::new(&wn);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let n = 2000;
    let x = signal(&mut rng, n + t64.context(), 0.5);
    let dy = signal(&mut rng, n, 1.0);
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let dy32: Vec<f32> = dy.iter().map(|&v| v as f32).collect();
    let (mut y64, mut y32) = (vec![0.0; n], vec![0.0f32; n]);
    let (mut g64, mut g32) = (vec![0.0; t64.num_params()], vec![0.0f32; t64.num_params()]);
    let mut tape64 = t64.tape();
    let mut tape32 = t32.tape();
    t64.forward(&x, &mut tape64, &mut y64);
    t64.backward(&tape64, &dy, &mut g64);
    t32.forward(&x32, &mut tape32, &mut y32);
    t32.backward(&tape32, &dy32, &mut g32);
    let rel = |a: &[f64], b: &[f32]| {
        let d = a
            .iter()
            .zip(b)
            .map(|(p, &q)| (p - q as f64).powi(2))
            .sum::<f64>()
            .sqrt();
        d / a.iter().map(|v| v * v).sum::<f64>().sqrt()
    };
    let ey = rel(&y64, &y32);
    let eg = rel(&g64, &g32);
    println!("f32 vs f64: output rel. error {ey:.1e}, gradient rel. error {eg:.1e}");
    assert!(ey < 1e-5, "output rel. error {ey:e}");
    assert!(eg < 1e-4, "gradient rel. error {eg:e}");
}

#[test]
fn wavenet_train_tape_reuse_and_accumulation() {
    let wn = wide_net();
    let t = WaveNetTrainer::<f64>::new(&wn);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut tape = t.tape();
    let run = |n: usize, tape: &mut _, rng: &mut ChaCha8Rng| {
        let x = signal(rng, n + t.context(), 0.5);
        let dy = signal(rng, n, 1.0);
        let mut y = vec![0.0; n];
        let mut g = vec![0.0; t.num_params()];
        t.forward(&x, tape, &mut y);
        t.backward(tape, &dy, &mut g);
        (x, dy, y, g)
    };
    // A long item, then a short one on the same tape; then the short one on a fresh tape.
    run(1500, &mut tape, &mut rng);
    let mut rng2 = rng.clone();
    let (_, dy, y, g) = run(700, &mut tape, &mut rng);
    let mut fresh = t.tape();
    let (_, _, y2, g2) = run(700, &mut fresh, &mut rng2);
    assert_eq!(y, y2);
    assert_eq!(g, g2);
    // backward accumulates.
    let mut g3 = g.clone();
    t.backward(&tape, &dy, &mut g3);
    let norm = g.iter().map(|v| v * v).sum::<f64>().sqrt();
    for (a, b) in g3.iter().zip(&g) {
        assert!((a - 2.0 * b).abs() <= 1e-13 * norm);
    }
}

/// The A2 features a trainer-made file uses (per-layer kernels 6/15/2, irregular dilations,
/// LeakyReLU with its slope, a convolutional head of kernel 16, layer1x1), on the synthetic
/// A2-like model exported by neural-amp-modeler 0.13 (tests/data/nam07): gradient against
/// central differences, and the training forward pass against the processor.
#[test]
fn a2_features_gradient_matches_finite_differences() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/nam07/a2_like/a2_like.nam"
    );
    let m = dealias::load_model(std::path::Path::new(path)).unwrap();
    let Network::WaveNet(wn) = &m.network else {
        panic!("a WaveNet")
    };
    assert_eq!(wn.layer_arrays[0].head_rechannel.kernel_size, 16);
    let err = gradient_check(wn, 24, 11);
    println!("A2 features: max group rel. error {err:.1e}");
    assert!(err < 1e-6, "A2 features: {err:e}");
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let x = signal(&mut rng, 900, 0.8);
    let batch = m.network.process_batch(std::slice::from_ref(&x));
    let one = m.network.process::<f64>(&x);
    let d = batch[0]
        .iter()
        .zip(&one)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let peak = one.iter().fold(0.0f64, |p, v| p.max(v.abs()));
    assert!(d <= 1e-12 * peak, "training forward vs processor: {d:e}");
}
