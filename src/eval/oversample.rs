//! Running a model at an integer multiple of its sample rate, the paper's oversampling
//! baseline (sec. 4.4, spec sec. 7):
//! - recurrent networks use the sample-rate-independent RNN method (Carson et al., DAFx24):
//!   at `M·fs` the state is fed back with a delay of `M` samples, `h[n] = f(x[n], h[n-M])`,
//!   which is exactly `M` interleaved copies of the network, copy `k` seeing samples
//!   `k, k+M, k+2M, …`;
//! - WaveNets run with every dilation multiplied by `M` (the kernels upsampled);
//! - the signal goes through an FFT-domain upsampler before and a downsampler after.

use crate::dsp::resample::{downsample, upsample};
use crate::models::{Network, Processor, Real};
use crate::{Error, Result};

/// The network as it runs at `factor` times its rate (WaveNet: dilations × factor; RNNs and
/// FIR models have no such rewrite and are returned unchanged, see [`process_oversampled`]).
fn dilated(net: &Network, factor: usize) -> Network {
    let mut out = net.clone();
    if let Network::WaveNet(w) = &mut out {
        for a in &mut w.layer_arrays {
            for l in &mut a.layers {
                l.conv.dilation *= factor;
            }
            a.head_rechannel.dilation *= factor;
        }
        for c in w.head.iter_mut().flat_map(|h| &mut h.layers) {
            c.dilation *= factor;
        }
    }
    out
}

/// A recurrent network at `M` times its rate: `M` interleaved state chains.
struct DelayedFeedback<T: Real> {
    chains: Vec<Box<dyn Processor<T>>>,
    next: usize,
}

impl<T: Real> Processor<T> for DelayedFeedback<T> {
    fn process(&mut self, input: &[T], output: &mut [T]) {
        let m = self.chains.len();
        for (x, y) in input.iter().zip(output.iter_mut()) {
            self.chains[self.next].process(std::slice::from_ref(x), std::slice::from_mut(y));
            self.next = (self.next + 1) % m;
        }
    }

    fn reset(&mut self) {
        self.chains.iter_mut().for_each(|c| c.reset());
        self.next = 0;
    }
}

/// A processor running `net` at `factor` times its native rate (input and output at the
/// higher rate).
pub fn oversampled_processor<T: Real>(
    net: &Network,
    factor: usize,
) -> Result<Box<dyn Processor<T>>> {
    if factor == 0 {
        return Err(Error::InvalidArgument(
            "oversampling factor must be ≥ 1".into(),
        ));
    }
    Ok(match net {
        Network::Rnn(_) if factor > 1 => Box::new(DelayedFeedback {
            chains: (0..factor).map(|_| net.processor::<T>()).collect(),
            next: 0,
        }),
        Network::Linear(_) if factor > 1 => {
            return Err(Error::InvalidArgument(
                "a Linear (FIR) model has no oversampled form".into(),
            ))
        }
        _ => dilated(net, factor).processor::<T>(),
    })
}

/// Runs `net` on `x` (at the native rate) oversampled by `factor`: FFT upsampling, the
/// network at the higher rate from its initial state, FFT downsampling. Output has `x`'s
/// length.
pub fn process_oversampled(net: &Network, x: &[f64], factor: usize) -> Result<Vec<f64>> {
    let y = match net {
        // The dilated WaveNet through the batched pass (matrix products over time, several
        // times faster than the streaming processor, equal to it to rounding).
        Network::WaveNet(_) if factor >= 1 => dilated(net, factor)
            .process_batch(&[upsample(x, factor)])
            .pop()
            .expect("one output per input"),
        // The `factor` interleaved state chains are independent: run them as one batch
        // (the batched kernels, several times faster than the streaming processor).
        Network::Rnn(_) if factor > 1 => {
            let up = upsample(x, factor);
            let chains: Vec<Vec<f64>> = (0..factor)
                .map(|k| up.iter().skip(k).step_by(factor).copied().collect())
                .collect();
            let outs = net.process_batch(&chains);
            (0..up.len())
                .map(|i| outs[i % factor][i / factor])
                .collect()
        }
        _ => {
            let mut proc = oversampled_processor::<f64>(net, factor)?;
            let up = upsample(x, factor);
            let mut y = vec![0.0; up.len()];
            proc.process(&up, &mut y);
            y
        }
    };
    Ok(downsample(&y, factor))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Cell, Rnn, RnnLayer};

    fn tiny_lstm() -> Network {
        let h = 3;
        let w = |n: usize, s: f64| {
            (0..n)
                .map(|i| ((i as f64 + s) * 0.37).sin() * 0.6)
                .collect()
        };
        Network::Rnn(Rnn {
            cell: Cell::Lstm,
            layers: vec![RnnLayer {
                input_size: 1,
                hidden_size: h,
                w_ih: w(4 * h, 0.1),
                w_hh: w(4 * h * h, 0.7),
                b_ih: Some(w(4 * h, 1.3)),
                b_hh: None,
                initial_hidden: None,
                initial_cell: None,
            }],
            head_weight: w(h, 2.1),
            head_bias: Some(vec![0.05]),
            skip: true,
            knobs: vec![],
        })
    }

    /// The delayed-feedback RNN fed a signal with every sample repeated `M` times produces
    /// every native-rate output repeated `M` times (each chain sees the native signal).
    #[test]
    fn delayed_feedback_is_interleaved_native_runs() {
        let net = tiny_lstm();
        let x: Vec<f64> = (0..200).map(|i| (i as f64 * 0.21).sin() * 0.8).collect();
        let native = net.process(&x);
        let held: Vec<f64> = x.iter().flat_map(|&v| [v, v]).collect();
        let mut p = oversampled_processor::<f64>(&net, 2).unwrap();
        let mut y = vec![0.0; held.len()];
        p.process(&held, &mut y);
        for (i, &v) in native.iter().enumerate() {
            assert_eq!(y[2 * i], v);
            assert_eq!(y[2 * i + 1], v);
        }
    }

    /// `process_oversampled` runs a recurrent network's chains as one batch: equal to the
    /// streaming delayed-feedback processor between the same resamplers, to 1e-12 of the peak
    /// (different kernels, same arithmetic up to summation order).
    #[test]
    fn batched_chains_equal_the_streaming_processor() {
        let net = tiny_lstm();
        let x: Vec<f64> = (0..301).map(|i| (i as f64 * 0.17).sin() * 0.9).collect();
        for m in [2, 3] {
            let fast = process_oversampled(&net, &x, m).unwrap();
            let up = upsample(&x, m);
            let mut y = vec![0.0; up.len()];
            oversampled_processor::<f64>(&net, m)
                .unwrap()
                .process(&up, &mut y);
            let slow = downsample(&y, m);
            let peak = slow.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            assert_eq!(fast.len(), slow.len());
            for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-12 * peak,
                    "M={m}: sample {i}: {a} vs {b}"
                );
            }
        }
    }

    /// The WaveNet with every dilation multiplied by `M`, fed a signal with every sample
    /// repeated `M` times, produces every native-rate output repeated `M` times: each dilated
    /// tap of output `n` reads input `floor(n/M) - k d`, which is the native tap (the held-sample
    /// property; exact for integer factors). Checked on a gated two-array WaveNet of the
    /// reference set, against its native output, to 1e-13 of the peak (the sums run in the
    /// same order; measured 0).
    #[test]
    fn dilated_wavenet_holds_samples() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/reference/wavenet_tanh_gated/wavenet_tanh_gated.nam"
        );
        let net = crate::load_model(std::path::Path::new(path))
            .unwrap()
            .network;
        assert!(matches!(net, Network::WaveNet(_)));
        let x: Vec<f64> = (0..700).map(|i| (i as f64 * 0.13).sin() * 0.7).collect();
        let native = net.process(&x);
        let peak = native.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for m in [2, 3] {
            let held: Vec<f64> = x.iter().flat_map(|&v| vec![v; m]).collect();
            let mut p = oversampled_processor::<f64>(&net, m).unwrap();
            let mut y = vec![0.0; held.len()];
            p.process(&held, &mut y);
            for (i, &v) in native.iter().enumerate() {
                for j in 0..m {
                    assert!(
                        (y[m * i + j] - v).abs() <= 1e-13 * peak,
                        "M={m}: sample {i}.{j}: {} vs {v}",
                        y[m * i + j]
                    );
                }
            }
        }
    }
}
