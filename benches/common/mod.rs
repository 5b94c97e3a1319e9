//! Shared by the benchmarks: random-weight networks, and the paper's models or their built-in twins.
#![allow(dead_code)]

use dealias::models::{Activation, Conv1d, Gating, WaveNet, WaveNetLayer, WaveNetLayerArray};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn conv(rng: &mut ChaCha8Rng, i: usize, o: usize, k: usize, d: usize, bias: bool) -> Conv1d {
    let mut c = Conv1d::zeros(i, o, k, d, bias);
    // PyTorch's default initialisation scale.
    let s = 1.0 / ((i * k) as f64).sqrt();
    c.weight.iter_mut().for_each(|w| *w = rng.gen_range(-s..s));
    if let Some(b) = &mut c.bias {
        b.iter_mut().for_each(|w| *w = rng.gen_range(-s..s));
    }
    c
}

/// A layer array of the NAM A1 presets: 10 layers, kernel 3, dilations 1, 2, ..., 512, Tanh.
fn array(
    rng: &mut ChaCha8Rng,
    input: usize,
    ch: usize,
    head: usize,
    bias: bool,
) -> WaveNetLayerArray {
    let layers = (0..10)
        .map(|i| WaveNetLayer {
            conv: conv(rng, ch, ch, 3, 1 << i, true),
            input_mixer: conv(rng, 1, ch, 1, 1, false),
            activation: Activation::Tanh,
            gating: Gating::None,
            one_by_one: Some(conv(rng, ch, ch, 1, 1, true)),
            head1x1: None,
            films: Default::default(),
        })
        .collect();
    WaveNetLayerArray {
        input_size: input,
        condition_size: 1,
        head_size: head,
        channels: ch,
        rechannel: conv(rng, input, ch, 1, 1, false),
        layers,
        head_rechannel: conv(rng, ch, head, 1, 1, bias),
    }
}

/// The NAM A1 WaveNet of `channels` / `second` channels in its two layer arrays (standard:
/// 16 / 8, lite 12 / 6, feather 8 / 4, nano 4 / 2), random weights (fixed seed).
pub fn a1_wavenet(channels: usize, second: usize) -> WaveNet {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let net = WaveNet {
        layer_arrays: vec![
            array(&mut rng, 1, channels, second, false),
            array(&mut rng, channels, second, 1, true),
        ],
        head: None,
        head_scale: vec![0.02],
    };
    net.validate().unwrap();
    net
}

/// The paper's published model `rel` under the shared fixtures when it is beside the clone;
/// otherwise the built-in model of the same architecture (`builtin`: `lstm` is an LSTM-40 like
/// the Broadcast LSTM, `wavenet` a NAM standard WaveNet like the Broadcast TCN), so that the
/// benchmarks run on a clone with nothing beside it and cost the same.
pub fn paper_or_builtin(rel: &str, builtin: &str) -> dealias::ModelFile {
    let p = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/"))
        .join(rel);
    if p.exists() {
        return dealias::load_model(&p).expect("fixture model loads");
    }
    let m = dealias::formats::embedded::EmbeddedModel::by_name(builtin).expect("built-in model");
    eprintln!(
        "{} is absent: benchmarking the built-in {} instead (same architecture)",
        p.display(),
        m.description
    );
    m.load().expect("built-in model loads")
}
