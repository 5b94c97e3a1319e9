//! Neural network models of audio effects: their values (weights and settings) and their
//! forward passes.
//!
//! A [`Network`] is one of the supported architectures, free of any file format (the file a
//! network came from is [`crate::formats::ModelFile`]). Networks store their
//! weights in f64 (the exact values read from the file) and run in f64 or f32 through the
//! generic [`Real`] trait. Streaming processors ([`Processor`]) keep the recurrent state or
//! convolution history between blocks, so that processing consecutive blocks gives exactly the
//! result of one call on the whole signal.

pub mod activations;
pub(crate) mod fastmath;
pub mod init;
pub mod linear;
pub mod rnn;
pub mod rnn_train;
pub mod wavenet;
pub mod wavenet_train;

pub use activations::Activation;
pub use linear::Linear;
pub use rnn::{Cell, Rnn, RnnLayer};
pub use wavenet::{
    Conv1d, Film, FilmSlot, Gating, LayerFilms, WaveNet, WaveNetHead, WaveNetLayer,
    WaveNetLayerArray,
};

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// Floating-point type a network can run in (f32 or f64).
pub trait Real:
    num_traits::Float
    + num_traits::FromPrimitive
    + Default
    + Debug
    + Send
    + Sync
    + Sum
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + 'static
{
    /// Converts from f64 (rounding to nearest for f32).
    fn from_f64_lossy(v: f64) -> Self;
    /// Widens to f64.
    fn to_f64_exact(self) -> f64;
    /// `tanh` as the forward passes compute it: exact (libm) for f64; for f32 the branch-free
    /// vectorisable one of the training engines (absolute error below 3e-7).
    fn tanh_fwd(self) -> Self;
    /// The logistic sigmoid as the forward passes compute it: `1 / (1 + e^-x)`, with the
    /// vectorisable `exp` for f32.
    fn sigmoid_fwd(self) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn from_f64_lossy(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to_f64_exact(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn tanh_fwd(self) -> Self {
        fastmath::tanh::<f32, false>(self)
    }
    #[inline(always)]
    fn sigmoid_fwd(self) -> Self {
        fastmath::sigmoid::<f32, false>(self)
    }
}

impl Real for f64 {
    #[inline(always)]
    fn from_f64_lossy(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn to_f64_exact(self) -> f64 {
        self
    }
    #[inline(always)]
    fn tanh_fwd(self) -> Self {
        self.tanh()
    }
    #[inline(always)]
    fn sigmoid_fwd(self) -> Self {
        1.0 / (1.0 + (-self).exp())
    }
}

/// Converts a slice of f64 weights to `T`.
pub fn cast_vec<T: Real>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::from_f64_lossy(x)).collect()
}

/// The network of a model: one of the supported architectures.
#[derive(Clone, Debug, PartialEq)]
pub enum Network {
    /// LSTM or GRU layers followed by a linear head (GuitarML, NAM LSTM).
    Rnn(Rnn),
    /// NAM WaveNet (stacks of dilated convolutions).
    WaveNet(WaveNet),
    /// A plain FIR filter (NAM `Linear`).
    Linear(Linear),
}

/// A streaming processor: runs a network block by block, keeping its state in between.
pub trait Processor<T: Real>: Send {
    /// Processes `input` into `output` (same length), continuing from the current state.
    fn process(&mut self, input: &[T], output: &mut [T]);
    /// Returns to the initial state (WaveNets: the history after `receptive_field - 1` zero
    /// inputs; recurrent networks: the zero state or the file's initial state).
    fn reset(&mut self);
}

/// Longest stretch of output one WaveNet training forward pass computes in
/// [`Network::process_batch`]: bounds its tape's memory to about that of a 1.2 s tone at
/// 48 kHz for signals of any length. The stretches are exact, as each output sample depends
/// only on the receptive field before it.
const WAVENET_SEGMENT: usize = 1 << 16;

impl Network {
    /// Total number of trainable parameters (every weight the file format stores).
    pub fn num_params(&self) -> usize {
        match self {
            Network::Rnn(m) => m.num_params(),
            Network::WaveNet(m) => m.num_params(),
            Network::Linear(m) => m.num_params(),
        }
    }

    /// All parameters as one flat vector, in the network's canonical order
    /// (the same order [`Network::set_params`] and the gradients use).
    pub fn params(&self) -> Vec<f64> {
        let mut out = Vec::with_capacity(self.num_params());
        // The visitor hands out `&mut` tensors; a clone keeps `params` a `&self` method
        // (parameter vectors are small next to the work done with them).
        self.clone()
            .visit_params(&mut |w: &mut Vec<f64>| out.extend_from_slice(w));
        out
    }

    /// Visits every parameter tensor in canonical order.
    pub fn visit_params(&mut self, f: &mut dyn FnMut(&mut Vec<f64>)) {
        match self {
            Network::Rnn(m) => m.visit_params(f),
            Network::WaveNet(m) => m.visit_params(f),
            Network::Linear(m) => m.visit_params(f),
        }
    }

    /// Sets all parameters from a flat vector in canonical order.
    pub fn set_params(&mut self, p: &[f64]) -> crate::Result<()> {
        if p.len() != self.num_params() {
            return Err(crate::Error::InvalidArgument(format!(
                "parameter vector has {} values, the network has {}",
                p.len(),
                self.num_params()
            )));
        }
        let mut at = 0;
        let mut take = |w: &mut Vec<f64>| {
            let n = w.len();
            w.copy_from_slice(&p[at..at + n]);
            at += n;
        };
        self.visit_params(&mut take);
        Ok(())
    }

    /// Short name of the architecture ("LSTM", "GRU", "WaveNet", "Linear").
    pub fn kind(&self) -> &'static str {
        match self {
            Network::Rnn(m) => match m.cell {
                Cell::Lstm => "LSTM",
                Cell::Gru => "GRU",
            },
            Network::WaveNet(_) => "WaveNet",
            Network::Linear(_) => "Linear",
        }
    }

    /// Receptive field in samples for convolutional networks (1 for recurrent ones, whose
    /// memory is their state).
    pub fn receptive_field(&self) -> usize {
        match self {
            Network::Rnn(_) => 1,
            Network::WaveNet(m) => m.receptive_field(),
            Network::Linear(m) => m.weights.len(),
        }
    }

    /// A streaming processor in precision `T`, starting from the initial state.
    pub fn processor<T: Real>(&self) -> Box<dyn Processor<T>> {
        match self {
            Network::Rnn(m) => Box::new(rnn::RnnProcessor::<T>::new(m)),
            Network::WaveNet(m) => Box::new(wavenet::WaveNetProcessor::<T>::new(m)),
            Network::Linear(m) => Box::new(linear::LinearProcessor::<T>::new(m)),
        }
    }

    /// Runs the network over `input` from its initial state (zero history / zero state, or
    /// the file's initial state), as the plugins do. Output has the input's length.
    pub fn process<T: Real>(&self, input: &[T]) -> Vec<T> {
        let mut out = vec![T::zero(); input.len()];
        self.processor::<T>().process(input, &mut out);
        out
    }

    /// Runs the network over several signals from its initial state, spread over rayon's
    /// threads, through the training kernels, which are several times faster than one
    /// [`Processor`] per item: recurrent networks advance all (equal-length) items of a thread
    /// together, so the per-step products become small matrix products; WaveNets run as
    /// matrix products over time. The results equal [`Network::process`] to rounding
    /// (≤ 1e-12 relative, tested).
    pub fn process_batch(&self, inputs: &[Vec<f64>]) -> Vec<Vec<f64>> {
        self.process_batch_with_knobs(inputs, &[])
    }

    /// [`Network::process_batch`] with every item at its own knob values (`knobs[i]` for
    /// input `i`, each of length [`Network::num_knobs`]); an empty `knobs` runs every item at
    /// the network's own values.
    pub fn process_batch_with_knobs(
        &self,
        inputs: &[Vec<f64>],
        knobs: &[Vec<f64>],
    ) -> Vec<Vec<f64>> {
        self.process_batch_in::<f64>(inputs, knobs)
    }

    /// [`Network::process_batch_with_knobs`] computed in precision `T` (inputs and outputs
    /// stay f64): f32 runs the training kernels at twice the vector width, which is what
    /// fine-tuning's teacher pass and validation use in f32 runs (outputs within about 1e-6 of
    /// f64, tested).
    pub fn process_batch_in<T: Real>(
        &self,
        inputs: &[Vec<f64>],
        knobs: &[Vec<f64>],
    ) -> Vec<Vec<f64>> {
        use rayon::prelude::*;
        let back = |y: Vec<T>| -> Vec<f64> { y.into_iter().map(T::to_f64_exact).collect() };
        assert!(
            knobs.is_empty() || knobs.len() == inputs.len(),
            "one knob setting per input"
        );
        let same_len = inputs.windows(2).all(|w| w[0].len() == w[1].len());
        match self {
            Network::Rnn(_) if !knobs.is_empty() && !same_len => inputs
                .par_iter()
                .zip(knobs)
                .map(|(x, k)| {
                    let mut n = self.clone();
                    n.set_knobs(k).expect("one value per knob");
                    back(n.process::<T>(&cast_vec(x)))
                })
                .collect(),
            Network::Rnn(r) if same_len && !inputs.is_empty() => {
                let trainer = rnn_train::RnnTrainer::<T>::new(r);
                let threads = rayon::current_num_threads().clamp(1, inputs.len());
                let chunk = inputs.len().div_ceil(threads);
                inputs
                    .par_chunks(chunk)
                    .enumerate()
                    .flat_map_iter(|(ci, items)| {
                        let cast: Vec<Vec<T>> = items.iter().map(|x| cast_vec(x)).collect();
                        let xs: Vec<&[T]> = cast.iter().map(Vec::as_slice).collect();
                        let mut states = vec![trainer.initial_state(); items.len()];
                        if !knobs.is_empty() {
                            for (s, k) in states.iter_mut().zip(&knobs[ci * chunk..]) {
                                assert_eq!(k.len(), r.knobs.len(), "one value per knob");
                                s.knobs = cast_vec(k);
                            }
                        }
                        let mut ys: Vec<Vec<T>> =
                            items.iter().map(|x| vec![T::zero(); x.len()]).collect();
                        let mut refs: Vec<&mut [T]> =
                            ys.iter_mut().map(Vec::as_mut_slice).collect();
                        trainer.run(&xs, &mut states, &mut refs);
                        ys.into_iter().map(back)
                    })
                    .collect()
            }
            Network::WaveNet(w)
                if !inputs.is_empty()
                    && wavenet_train::WaveNetTrainer::<T>::supports(w).is_ok() =>
            {
                // The training forward pass (matrix products over time) on the input with the
                // receptive field of zeros before it, which is the processor's initial state.
                let trainer = wavenet_train::WaveNetTrainer::<T>::new(w);
                let ctx = trainer.context();
                let threads = rayon::current_num_threads().clamp(1, inputs.len());
                let chunk = inputs.len().div_ceil(threads);
                inputs
                    .par_chunks(chunk)
                    .flat_map_iter(|items| {
                        let mut tape = trainer.tape();
                        let mut padded = Vec::new();
                        items
                            .iter()
                            .map(|x| {
                                let x: Vec<T> = cast_vec(x);
                                let mut y = vec![T::zero(); x.len()];
                                for (k, out) in y.chunks_mut(WAVENET_SEGMENT).enumerate() {
                                    // The stretch with the receptive field before it (zeros
                                    // before the signal's start).
                                    let start = k * WAVENET_SEGMENT;
                                    let from = start.saturating_sub(ctx);
                                    padded.clear();
                                    padded.resize(ctx - (start - from), T::zero());
                                    padded.extend_from_slice(&x[from..start + out.len()]);
                                    trainer.forward(&padded, &mut tape, out);
                                }
                                back(y)
                            })
                            .collect::<Vec<_>>()
                    })
                    .collect()
            }
            _ => inputs
                .par_iter()
                .map(|x| back(self.process::<T>(&cast_vec(x))))
                .collect(),
        }
    }

    /// Number of knob inputs of a conditioned recurrent network (0 for every other network).
    pub fn num_knobs(&self) -> usize {
        match self {
            Network::Rnn(r) => r.knobs.len(),
            _ => 0,
        }
    }

    /// The knob values the network runs at (empty for unconditioned networks).
    pub fn knobs(&self) -> &[f64] {
        match self {
            Network::Rnn(r) => &r.knobs,
            _ => &[],
        }
    }

    /// Sets the knob values of a conditioned network (one finite value per knob; the plugins'
    /// knobs span 0..1, and so does the training range of the captures).
    pub fn set_knobs(&mut self, knobs: &[f64]) -> crate::Result<()> {
        let n = self.num_knobs();
        if knobs.len() != n {
            return Err(crate::Error::InvalidArgument(if n == 0 {
                format!(
                    "the model has no knob inputs, but {} knob value(s) were given",
                    knobs.len()
                )
            } else {
                format!(
                    "the model has {n} knob input(s), but {} value(s) were given",
                    knobs.len()
                )
            }));
        }
        if let Some(k) = knobs.iter().find(|k| !k.is_finite()) {
            return Err(crate::Error::InvalidArgument(format!(
                "knob value {k} is not finite"
            )));
        }
        if let Network::Rnn(r) = self {
            r.knobs.copy_from_slice(knobs);
        }
        Ok(())
    }

    /// Every combination of `points` evenly spaced values over the knob range 0..1 for each
    /// knob (`points^K` settings; one empty setting for an unconditioned network).
    pub fn knob_grid(&self, points: usize) -> Vec<Vec<f64>> {
        let values: Vec<f64> = match points {
            0 => vec![],
            1 => vec![0.5],
            n => (0..n).map(|i| i as f64 / (n - 1) as f64).collect(),
        };
        let mut grid = vec![vec![]];
        for _ in 0..self.num_knobs() {
            grid = grid
                .into_iter()
                .flat_map(|g: Vec<f64>| {
                    values.iter().map(move |&v| {
                        let mut g = g.clone();
                        g.push(v);
                        g
                    })
                })
                .collect();
        }
        grid
    }

    /// Checks that the training engines can differentiate the network; otherwise an error
    /// naming the feature they cannot.
    pub fn check_trainable(&self) -> crate::Result<()> {
        match self {
            Network::WaveNet(w) => wavenet_train::WaveNetTrainer::<f64>::supports(w)
                .map_err(crate::Error::InvalidModel),
            _ => Ok(()),
        }
    }

    /// Checks that every weight is finite; names the first one that is not.
    pub fn check_finite(&self) -> crate::Result<()> {
        match self.params().iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(i) => Err(crate::Error::InvalidModel(format!(
                "weight {} of {} is not finite",
                i,
                self.num_params()
            ))),
        }
    }
}
