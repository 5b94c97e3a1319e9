//! Architectures a model can be trained from scratch with (`dealias train`, paper sec. 3.2),
//! and their initial weights.
//!
//! - GuitarML / Automated-GuitarAmpModelling `SimpleRNN`: one LSTM or GRU layer of any hidden
//!   size, a linear head with bias and the input added to the output (`skip`), as the paper's
//!   and the GuitarML Tone Library's models are.
//! - NAM A1 WaveNets, the layouts of the official trainer before A2 (`standard`, `lite`,
//!   `feather`, `nano`): two layer arrays of kernel-3 Tanh layers without gating, head scale
//!   0.02. The layouts are those of the trainer's presets (checked against files it wrote).
//!
//! Initial weights follow PyTorch's defaults, which the official trainers use: every LSTM/GRU
//! weight and bias `U(-1/√H, 1/√H)`; `Linear` and `Conv1d` weights and biases
//! `U(-1/√fan_in, 1/√fan_in)` with `fan_in = in_channels / groups × kernel_size`
//! (`kaiming_uniform_(a = √5)` reduces to that bound).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::activations::Activation;
use super::rnn::{Cell, Rnn, RnnLayer};
use super::wavenet::{Conv1d, Gating, LayerFilms, WaveNet, WaveNetLayer, WaveNetLayerArray};
use super::Network;

/// Largest hidden size of a recurrent architecture trained from scratch.
pub const MAX_HIDDEN: usize = 512;

/// The size of a NAM A1 WaveNet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaveNetSize {
    /// Channels 16 / 8, dilations 1..512 twice (13,802 parameters).
    Standard,
    /// Channels 12 / 6, dilations 1..64 then 128..512, 1..512.
    Lite,
    /// Channels 8 / 4, lite's dilations.
    Feather,
    /// Channels 4 / 2, lite's dilations.
    Nano,
}

impl WaveNetSize {
    const ALL: [WaveNetSize; 4] = [
        WaveNetSize::Standard,
        WaveNetSize::Lite,
        WaveNetSize::Feather,
        WaveNetSize::Nano,
    ];

    /// The trainer's name of the size.
    pub fn name(self) -> &'static str {
        match self {
            WaveNetSize::Standard => "standard",
            WaveNetSize::Lite => "lite",
            WaveNetSize::Feather => "feather",
            WaveNetSize::Nano => "nano",
        }
    }

    /// Channels of the two layer arrays.
    fn channels(self) -> (usize, usize) {
        match self {
            WaveNetSize::Standard => (16, 8),
            WaveNetSize::Lite => (12, 6),
            WaveNetSize::Feather => (8, 4),
            WaveNetSize::Nano => (4, 2),
        }
    }

    /// Dilations of the two layer arrays.
    fn dilations(self) -> (Vec<usize>, Vec<usize>) {
        let octaves = |from: u32, to: u32| (from..=to).map(|k| 1usize << k).collect::<Vec<_>>();
        match self {
            WaveNetSize::Standard => (octaves(0, 9), octaves(0, 9)),
            _ => (octaves(0, 6), [octaves(7, 9), octaves(0, 9)].concat()),
        }
    }
}

/// An architecture to train from scratch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// GuitarML `SimpleRNN`: one recurrent layer of `hidden` units, linear head, skip.
    Recurrent { cell: Cell, hidden: usize },
    /// A NAM A1 WaveNet.
    WaveNet(WaveNetSize),
}

impl Architecture {
    /// Every name [`Architecture::parse`] accepts, for messages.
    pub const NAMES: &'static str =
        "lstm-H, gru-H (H hidden units, 1..=512), wavenet-standard, wavenet-lite, wavenet-feather, wavenet-nano";

    /// Parses `lstm-40`, `gru-12`, `wavenet-standard`, ...
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        let bad = || {
            format!(
                "unknown architecture '{s}' (architectures: {})",
                Self::NAMES
            )
        };
        if let Some(size) = s.strip_prefix("wavenet-") {
            return WaveNetSize::ALL
                .into_iter()
                .find(|w| w.name() == size)
                .map(Architecture::WaveNet)
                .ok_or_else(bad);
        }
        let (cell, hidden) = if let Some(h) = s.strip_prefix("lstm-") {
            (Cell::Lstm, h)
        } else if let Some(h) = s.strip_prefix("gru-") {
            (Cell::Gru, h)
        } else {
            return Err(bad());
        };
        let hidden: usize = hidden.parse().map_err(|_| bad())?;
        if !(1..=MAX_HIDDEN).contains(&hidden) {
            return Err(format!(
                "architecture '{s}': the hidden size must be 1..={MAX_HIDDEN}"
            ));
        }
        Ok(Architecture::Recurrent { cell, hidden })
    }

    /// The name `parse` reads back.
    pub fn name(self) -> String {
        match self {
            Architecture::Recurrent { cell, hidden } => {
                format!(
                    "{}-{hidden}",
                    if cell == Cell::Lstm { "lstm" } else { "gru" }
                )
            }
            Architecture::WaveNet(w) => format!("wavenet-{}", w.name()),
        }
    }

    /// A network of this architecture with PyTorch's initial weights, drawn from `seed`.
    pub fn initial_network(self, seed: u64) -> Network {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        match self {
            Architecture::Recurrent { cell, hidden } => {
                Network::Rnn(initial_rnn(cell, hidden, &mut rng))
            }
            Architecture::WaveNet(size) => Network::WaveNet(initial_wavenet(size, &mut rng)),
        }
    }
}

fn uniform(rng: &mut ChaCha8Rng, n: usize, bound: f64) -> Vec<f64> {
    (0..n).map(|_| rng.gen_range(-bound..bound)).collect()
}

fn initial_rnn(cell: Cell, hidden: usize, rng: &mut ChaCha8Rng) -> Rnn {
    let gh = cell.gates() * hidden;
    let k = 1.0 / (hidden as f64).sqrt();
    let layer = RnnLayer {
        input_size: 1,
        hidden_size: hidden,
        w_ih: uniform(rng, gh, k),
        w_hh: uniform(rng, gh * hidden, k),
        b_ih: Some(uniform(rng, gh, k)),
        b_hh: Some(uniform(rng, gh, k)),
        initial_hidden: None,
        initial_cell: None,
    };
    Rnn {
        cell,
        layers: vec![layer],
        head_weight: uniform(rng, hidden, k),
        head_bias: Some(uniform(rng, 1, k)),
        skip: true,
        knobs: Vec::new(),
    }
}

/// Fills a convolution with PyTorch's `Conv1d` initialisation.
fn init_conv(mut c: Conv1d, rng: &mut ChaCha8Rng) -> Conv1d {
    redraw_conv(&mut c, rng);
    c
}

/// Redraws a convolution's weights and bias with PyTorch's `Conv1d` initialisation.
fn redraw_conv(c: &mut Conv1d, rng: &mut ChaCha8Rng) {
    let fan_in = (c.in_channels / c.groups * c.kernel_size) as f64;
    let bound = 1.0 / fan_in.sqrt();
    c.weight = uniform(rng, c.weight.len(), bound);
    if let Some(b) = &mut c.bias {
        *b = uniform(rng, b.len(), bound);
    }
}

/// A network of `layout`'s architecture — every layer, size, kernel, dilation, activation,
/// gating and option as it is — with fresh PyTorch-default weights drawn from `seed`: the
/// starting point for training any layout a file has (`dealias train --arch like:FILE`,
/// e.g. NAM A2's per-layer kernels and convolutional head). Learned initial states start at
/// zero; a WaveNet's `head_scale` (a setting of the layout, not trained by NAM) is kept.
pub fn reinitialised(layout: &Network, seed: u64) -> Result<Network, String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    match layout {
        Network::Rnn(r) => {
            let mut r = r.clone();
            for l in &mut r.layers {
                let k = 1.0 / (l.hidden_size as f64).sqrt();
                l.w_ih = uniform(&mut rng, l.w_ih.len(), k);
                l.w_hh = uniform(&mut rng, l.w_hh.len(), k);
                for b in [&mut l.b_ih, &mut l.b_hh].into_iter().flatten() {
                    *b = uniform(&mut rng, b.len(), k);
                }
                for s in [&mut l.initial_hidden, &mut l.initial_cell]
                    .into_iter()
                    .flatten()
                {
                    s.iter_mut().for_each(|v| *v = 0.0);
                }
            }
            let fan_in = r.layers.last().map_or(1, |l| l.hidden_size);
            let k = 1.0 / (fan_in as f64).sqrt();
            r.head_weight = uniform(&mut rng, r.head_weight.len(), k);
            if let Some(b) = &mut r.head_bias {
                *b = uniform(&mut rng, b.len(), k);
            }
            Ok(Network::Rnn(r))
        }
        Network::WaveNet(w) => {
            let mut w = w.clone();
            w.visit_convs(&mut |c| redraw_conv(c, &mut rng));
            Ok(Network::WaveNet(w))
        }
        other => Err(format!(
            "a {} model has no layout to train from scratch (recurrent networks and WaveNets have)",
            other.kind()
        )),
    }
}

fn initial_wavenet(size: WaveNetSize, rng: &mut ChaCha8Rng) -> WaveNet {
    let (c1, c2) = size.channels();
    let (d1, d2) = size.dilations();
    // (input size, channels, head size, dilations, head bias), as the trainer's presets.
    let arrays = [(1, c1, c2, d1, false), (c1, c2, 1, d2, true)];
    let layer_arrays = arrays
        .into_iter()
        .map(|(input, ch, head, dilations, head_bias)| {
            let rechannel = init_conv(Conv1d::zeros(input, ch, 1, 1, false), rng);
            let layers = dilations
                .iter()
                .map(|&d| WaveNetLayer {
                    conv: init_conv(Conv1d::zeros(ch, ch, 3, d, true), rng),
                    input_mixer: init_conv(Conv1d::zeros(1, ch, 1, 1, false), rng),
                    activation: Activation::Tanh,
                    gating: Gating::None,
                    one_by_one: Some(init_conv(Conv1d::zeros(ch, ch, 1, 1, true), rng)),
                    head1x1: None,
                    films: LayerFilms::default(),
                })
                .collect();
            let head_rechannel = init_conv(Conv1d::zeros(ch, head, 1, 1, head_bias), rng);
            WaveNetLayerArray {
                input_size: input,
                condition_size: 1,
                head_size: head,
                channels: ch,
                rechannel,
                layers,
                head_rechannel,
            }
        })
        .collect();
    WaveNet {
        layer_arrays,
        head: None,
        head_scale: vec![0.02],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        for s in [
            "lstm-40",
            "gru-12",
            "wavenet-standard",
            "wavenet-lite",
            "wavenet-feather",
            "wavenet-nano",
        ] {
            assert_eq!(Architecture::parse(s).unwrap().name(), s);
        }
        for s in [
            "lstm-0",
            "lstm-513",
            "lstm",
            "tcn-3",
            "wavenet-huge",
            "gru-x",
        ] {
            assert!(Architecture::parse(s).is_err(), "{s}");
        }
    }

    /// Parameter counts of files the official trainer wrote (the `weights` arrays of
    /// published standard, lite and feather captures): 13,802, 6,554 and 3,026; GuitarML LSTM-40:
    /// 4·40·(1 + 40 + 2) + 40 + 1 = 6,921.
    #[test]
    fn parameter_counts_match_the_official_layouts() {
        let count = |s: &str| {
            Architecture::parse(s)
                .unwrap()
                .initial_network(1)
                .num_params()
        };
        assert_eq!(count("wavenet-standard"), 13_802);
        assert_eq!(count("wavenet-lite"), 6_554);
        assert_eq!(count("wavenet-feather"), 3_026);
        assert_eq!(count("lstm-40"), 6_921);
        assert_eq!(count("gru-8"), 3 * 8 * (1 + 8 + 2) + 8 + 1);
    }

    /// `reinitialised` keeps a layout (every setting; shapes by parameter count and the
    /// configuration written back) and redraws every weight within PyTorch's bounds, seeded;
    /// learned initial states start at zero and `head_scale` stays.
    #[test]
    fn reinitialised_keeps_the_layout_and_redraws_the_weights() {
        let path = |p: &str| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data")
                .join(p)
        };
        for p in [
            "nam07/a2_like/a2_like.nam",
            "reference/nam_lstm_2x6/nam_lstm_2x6.nam",
            "reference/guitarml_lstm5x2_skip_bias/guitarml_lstm5x2_skip_bias.json",
        ] {
            let t = crate::load_model(&path(p)).unwrap();
            let a = reinitialised(&t.network, 5).unwrap();
            assert_eq!(a, reinitialised(&t.network, 5).unwrap(), "{p}: not seeded");
            assert_ne!(a.params(), reinitialised(&t.network, 6).unwrap().params());
            assert_eq!(a.num_params(), t.network.num_params(), "{p}");
            let mut same = a.clone();
            same.set_params(&t.network.params()).unwrap();
            assert_eq!(same, t.network, "{p}: the layout changed");
            match &a {
                Network::WaveNet(w) => {
                    let Network::WaveNet(tw) = &t.network else {
                        panic!()
                    };
                    assert_eq!(w.head_scale, tw.head_scale);
                    let mut w = w.clone();
                    w.visit_convs(&mut |c| {
                        let b = 1.0 / ((c.in_channels / c.groups * c.kernel_size) as f64).sqrt();
                        assert!(c
                            .weight
                            .iter()
                            .chain(c.bias.iter().flatten())
                            .all(|v| v.abs() < b));
                    });
                }
                Network::Rnn(r) => {
                    for l in &r.layers {
                        let b = 1.0 / (l.hidden_size as f64).sqrt();
                        assert!(l.w_ih.iter().chain(&l.w_hh).all(|v| v.abs() < b));
                        for s in [&l.initial_hidden, &l.initial_cell].into_iter().flatten() {
                            assert!(s.iter().all(|&v| v == 0.0));
                        }
                    }
                }
                _ => unreachable!(),
            }
        }
        let lin =
            crate::load_model(&path("reference/nam_linear_bias/nam_linear_bias.nam")).unwrap();
        assert!(reinitialised(&lin.network, 0)
            .unwrap_err()
            .contains("from scratch"));
    }

    #[test]
    fn initial_weights_are_seeded_and_within_pytorch_bounds() {
        let a = Architecture::parse("lstm-16").unwrap();
        let (n1, n2) = (a.initial_network(3), a.initial_network(3));
        assert_eq!(n1, n2);
        assert_ne!(n1.params(), a.initial_network(4).params());
        let p = n1.params();
        let bound = 1.0 / 4.0;
        assert!(p.iter().all(|v| v.abs() < bound));
        // Uniform on (-1/4, 1/4): the sample variance is near bound²/3.
        let var = p.iter().map(|v| v * v).sum::<f64>() / p.len() as f64;
        assert!((var / (bound * bound / 3.0) - 1.0).abs() < 0.1, "{var}");
        let Network::WaveNet(w) = Architecture::parse("wavenet-nano")
            .unwrap()
            .initial_network(1)
        else {
            panic!()
        };
        // Layer convolutions: fan-in = channels x kernel = 4 x 3.
        let b = 1.0 / 12f64.sqrt();
        assert!(w.layer_arrays[0].layers[0]
            .conv
            .weight
            .iter()
            .all(|v| v.abs() < b));
        assert!(w.validate().is_ok());
    }
}
