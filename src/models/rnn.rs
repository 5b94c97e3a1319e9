//! Recurrent networks: stacked LSTM or GRU layers and a linear head, optionally with the input
//! added to the output (GuitarML's `skip`). Covers GuitarML/Automated-GuitarAmpModelling
//! `SimpleRNN` files and NAM `LSTM` files.
//!
//! Weights use PyTorch's layout and gate order: LSTM gates (i, f, g, o), GRU gates (r, z, n),
//! `w_ih` is `(G·H) × input_size` and `w_hh` is `(G·H) × H`, row-major.
//!
//! Knob-conditioned models (Proteus, NeuralPi, AIDA-X with 2–3 inputs) take the knob values
//! as constant extra inputs after the audio sample: layer 0 sees `[x_t, k_1, …, k_K]`
//! (`input_size = 1 + K`). The knob values are a setting of the network ([`Rnn::knobs`]), not
//! parameters; since they are constant, their contribution `W_ih[:, 1..] k` is a fixed bias of
//! layer 0's input side, which is how the forward passes apply it.

use super::{cast_vec, Processor, Real};

/// The recurrent cell type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    Lstm,
    Gru,
}

impl Cell {
    /// Number of gates (rows of `w_ih` per hidden unit).
    pub fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

/// One recurrent layer.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnLayer {
    pub input_size: usize,
    pub hidden_size: usize,
    /// `(G·H) × input_size`, row-major.
    pub w_ih: Vec<f64>,
    /// `(G·H) × H`, row-major.
    pub w_hh: Vec<f64>,
    /// Input-side bias `(G·H)`; NAM LSTM files store one combined bias here.
    pub b_ih: Option<Vec<f64>>,
    /// Hidden-side bias `(G·H)`.
    pub b_hh: Option<Vec<f64>>,
    /// Learned initial hidden state (NAM LSTM); zeros when absent.
    pub initial_hidden: Option<Vec<f64>>,
    /// Learned initial cell state (NAM LSTM); zeros when absent.
    pub initial_cell: Option<Vec<f64>>,
}

/// A stack of recurrent layers with a linear head.
#[derive(Clone, Debug, PartialEq)]
pub struct Rnn {
    pub cell: Cell,
    pub layers: Vec<RnnLayer>,
    /// Head weights, one per hidden unit of the last layer (single output).
    pub head_weight: Vec<f64>,
    /// Head bias (one value) when present.
    pub head_bias: Option<Vec<f64>>,
    /// Adds the input sample to the output (residual connection).
    pub skip: bool,
    /// Values of the knob inputs that follow the audio sample at layer 0 (conditioned models;
    /// empty otherwise). Not trained.
    pub knobs: Vec<f64>,
}

impl Rnn {
    /// Number of knob inputs (conditioning inputs after the audio sample).
    pub fn num_knobs(&self) -> usize {
        self.layers
            .first()
            .map_or(0, |l| l.input_size.saturating_sub(1))
    }

    /// Layer 0's input-side bias with the constant knob inputs folded in:
    /// `b + Σ_k knobs[k] W_ih[:, 1 + k]` (`b`: `b_ih`, zeros when absent), for `knobs` of
    /// length [`Self::num_knobs`].
    pub fn knob_bias(&self, knobs: &[f64]) -> Vec<f64> {
        let l = &self.layers[0];
        let gh = self.cell.gates() * l.hidden_size;
        let mut b = l.b_ih.clone().unwrap_or_else(|| vec![0.0; gh]);
        for (r, o) in b.iter_mut().enumerate() {
            for (k, &v) in knobs.iter().enumerate() {
                *o += v * l.w_ih[r * l.input_size + 1 + k];
            }
        }
        b
    }

    /// Hidden size of the last layer.
    pub fn hidden_size(&self) -> usize {
        self.layers.last().map_or(0, |l| l.hidden_size)
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        let mut n = 0;
        // visit_params needs &mut; count by hand to keep &self.
        for l in &self.layers {
            n += l.w_ih.len() + l.w_hh.len();
            n += l.b_ih.as_ref().map_or(0, Vec::len) + l.b_hh.as_ref().map_or(0, Vec::len);
            n += l.initial_hidden.as_ref().map_or(0, Vec::len);
            n += l.initial_cell.as_ref().map_or(0, Vec::len);
        }
        n + self.head_weight.len() + self.head_bias.as_ref().map_or(0, Vec::len)
    }

    /// Visits every parameter tensor in canonical order: per layer `w_ih, w_hh, b_ih, b_hh,
    /// initial_hidden, initial_cell` (those present), then `head_weight, head_bias`.
    pub fn visit_params(&mut self, f: &mut dyn FnMut(&mut Vec<f64>)) {
        for l in &mut self.layers {
            f(&mut l.w_ih);
            f(&mut l.w_hh);
            for v in [
                &mut l.b_ih,
                &mut l.b_hh,
                &mut l.initial_hidden,
                &mut l.initial_cell,
            ]
            .into_iter()
            .flatten()
            {
                f(v);
            }
        }
        f(&mut self.head_weight);
        if let Some(b) = &mut self.head_bias {
            f(b);
        }
    }

    /// Checks shapes; returns a message naming the first inconsistency.
    pub fn validate(&self) -> Result<(), String> {
        if self.layers.is_empty() {
            return Err("recurrent network has no layers".into());
        }
        let g = self.cell.gates();
        let mut input = 1 + self.knobs.len();
        if self.knobs.iter().any(|k| !k.is_finite()) {
            return Err("knob values must be finite".into());
        }
        for (i, l) in self.layers.iter().enumerate() {
            let h = l.hidden_size;
            if h == 0 {
                return Err(format!("layer {i}: hidden size is 0"));
            }
            if l.input_size != input {
                return Err(if i == 0 {
                    format!(
                        "layer 0: input size {} but the network has {} knob value(s) after the audio input",
                        l.input_size,
                        self.knobs.len()
                    )
                } else {
                    format!(
                        "layer {i}: input size {} but the previous layer gives {input}",
                        l.input_size
                    )
                });
            }
            let check = |name: &str, v: Option<&Vec<f64>>, n: usize| match v {
                Some(v) if v.len() != n => Err(format!(
                    "layer {i}: {name} has {} values, expected {n}",
                    v.len()
                )),
                _ => Ok(()),
            };
            check("w_ih", Some(&l.w_ih), g * h * l.input_size)?;
            check("w_hh", Some(&l.w_hh), g * h * h)?;
            check("b_ih", l.b_ih.as_ref(), g * h)?;
            check("b_hh", l.b_hh.as_ref(), g * h)?;
            check("initial_hidden", l.initial_hidden.as_ref(), h)?;
            check("initial_cell", l.initial_cell.as_ref(), h)?;
            if self.cell == Cell::Gru && l.initial_cell.is_some() {
                return Err(format!("layer {i}: a GRU has no cell state"));
            }
            input = h;
        }
        if self.head_weight.len() != input {
            return Err(format!(
                "head has {} weights, expected {input}",
                self.head_weight.len()
            ));
        }
        if let Some(b) = &self.head_bias {
            if b.len() != 1 {
                return Err(format!("head bias has {} values, expected 1", b.len()));
            }
        }
        Ok(())
    }
}

/// Weights of one layer prepared for fast evaluation in precision `T`: transposed so that the
/// gate pre-activations are accumulated as contiguous, vectorisable axpy updates.
#[derive(Clone, Debug)]
pub(crate) struct PackedLayer<T> {
    pub hidden: usize,
    /// `input_size × (G·H)`.
    pub w_ih_t: Vec<T>,
    /// `H × (G·H)`.
    pub w_hh_t: Vec<T>,
    /// Bias added to the input-side pre-activations (LSTM: b_ih + b_hh combined).
    pub b_i: Vec<T>,
    /// Hidden-side bias (GRU only; LSTM has it folded into `b_i`).
    pub b_h: Vec<T>,
    pub h0: Vec<T>,
    pub c0: Vec<T>,
}

fn transpose(w: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let mut t = vec![0.0; w.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = w[r * cols + c];
        }
    }
    t
}

impl<T: Real> PackedLayer<T> {
    /// Packs `l`; `b_ih` replaces the layer's input-side bias when given (layer 0 of a
    /// conditioned network, see [`Rnn::knob_bias`]).
    pub fn new(l: &RnnLayer, cell: Cell, b_ih: Option<&[f64]>) -> Self {
        let gh = cell.gates() * l.hidden_size;
        let zeros = vec![0.0; gh];
        let b_ih = b_ih.unwrap_or(l.b_ih.as_deref().unwrap_or(&zeros));
        let b_hh = l.b_hh.as_ref().unwrap_or(&zeros);
        let (b_i, b_h): (Vec<f64>, Vec<f64>) = match cell {
            Cell::Lstm => (b_ih.iter().zip(b_hh).map(|(a, b)| a + b).collect(), vec![]),
            Cell::Gru => (b_ih.to_vec(), b_hh.clone()),
        };
        let zh = vec![0.0; l.hidden_size];
        PackedLayer {
            hidden: l.hidden_size,
            w_ih_t: cast_vec(&transpose(&l.w_ih, gh, l.input_size)),
            w_hh_t: cast_vec(&transpose(&l.w_hh, gh, l.hidden_size)),
            b_i: cast_vec(&b_i),
            b_h: cast_vec(&b_h),
            h0: cast_vec(l.initial_hidden.as_ref().unwrap_or(&zh)),
            c0: cast_vec(l.initial_cell.as_ref().unwrap_or(&zh)),
        }
    }
}

/// `acc[j] += a * w[j]` over equal-length slices (the vectorisable inner loop).
#[inline(always)]
pub(crate) fn axpy<T: Real>(acc: &mut [T], a: T, w: &[T]) {
    for (o, &wv) in acc.iter_mut().zip(w) {
        *o += a * wv;
    }
}

/// Streaming evaluation of an [`Rnn`].
pub struct RnnProcessor<T: Real> {
    cell: Cell,
    layers: Vec<PackedLayer<T>>,
    head_w: Vec<T>,
    head_b: T,
    skip: bool,
    /// Per layer hidden state `h` and cell state `c` (LSTM).
    h: Vec<Vec<T>>,
    c: Vec<Vec<T>>,
    /// Scratch: gate pre-activations (input side and hidden side).
    gi: Vec<T>,
    gh: Vec<T>,
}

impl<T: Real> RnnProcessor<T> {
    /// A processor at the network's initial state.
    pub fn new(net: &Rnn) -> Self {
        let knob_bias = (!net.knobs.is_empty()).then(|| net.knob_bias(&net.knobs));
        let layers: Vec<PackedLayer<T>> = net
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| PackedLayer::new(l, net.cell, knob_bias.as_deref().filter(|_| i == 0)))
            .collect();
        let gmax = layers
            .iter()
            .map(|l| net.cell.gates() * l.hidden)
            .max()
            .unwrap_or(0);
        let mut p = RnnProcessor {
            cell: net.cell,
            head_w: cast_vec(&net.head_weight),
            head_b: T::from_f64_lossy(net.head_bias.as_ref().map_or(0.0, |b| b[0])),
            skip: net.skip,
            h: layers.iter().map(|l| l.h0.clone()).collect(),
            c: layers.iter().map(|l| l.c0.clone()).collect(),
            layers,
            gi: vec![T::zero(); gmax],
            gh: vec![T::zero(); gmax],
        };
        p.reset();
        p
    }

    /// Advances one time step; `x` is the layer-0 input vector. Returns the output sample.
    #[inline(always)]
    fn step(&mut self, x: T) -> T {
        let cell = self.cell;
        for li in 0..self.layers.len() {
            let (prev, rest) = self.h.split_at_mut(li);
            let h = &mut rest[0];
            let c = &mut self.c[li];
            let l = &self.layers[li];
            let hs = l.hidden;
            let g = cell.gates() * hs;
            let gi = &mut self.gi[..g];
            gi.copy_from_slice(&l.b_i);
            if li == 0 {
                axpy(gi, x, &l.w_ih_t[..g]);
            } else {
                for (j, &xj) in prev[li - 1].iter().enumerate() {
                    axpy(gi, xj, &l.w_ih_t[j * g..(j + 1) * g]);
                }
            }
            match cell {
                Cell::Lstm => {
                    // Recurrent contribution accumulated into the same pre-activations.
                    for (j, &hj) in h.iter().enumerate() {
                        axpy(gi, hj, &l.w_hh_t[j * g..(j + 1) * g]);
                    }
                    lstm_update(gi, h, c);
                }
                Cell::Gru => {
                    let gh = &mut self.gh[..g];
                    gh.copy_from_slice(&l.b_h);
                    for (j, &hj) in h.iter().enumerate() {
                        axpy(gh, hj, &l.w_hh_t[j * g..(j + 1) * g]);
                    }
                    gru_update(gi, gh, h);
                }
            }
        }
        let last = self.h.last().expect("at least one layer");
        let mut y = self.head_b;
        for (&w, &hv) in self.head_w.iter().zip(last) {
            y += w * hv;
        }
        if self.skip {
            y += x;
        }
        y
    }
}

/// LSTM state update from gate pre-activations `z = (i, f, g, o)` (PyTorch equations):
/// `c' = σ(f) c + σ(i) tanh(g)`, `h' = σ(o) tanh(c')`.
#[inline(always)]
pub(crate) fn lstm_update<T: Real>(z: &[T], h: &mut [T], c: &mut [T]) {
    let hs = h.len();
    let (zi, rest) = z.split_at(hs);
    let (zf, rest) = rest.split_at(hs);
    let (zg, zo) = rest.split_at(hs);
    for k in 0..hs {
        let i = super::activations::sigmoid(zi[k]);
        let f = super::activations::sigmoid(zf[k]);
        let g = zg[k].tanh_fwd();
        let o = super::activations::sigmoid(zo[k]);
        let cn = f * c[k] + i * g;
        c[k] = cn;
        h[k] = o * cn.tanh_fwd();
    }
}

/// GRU state update (PyTorch equations) from input-side `a = W_ih x + b_ih` and hidden-side
/// `b = W_hh h + b_hh` pre-activations, gates (r, z, n):
/// `r = σ(a_r + b_r)`, `z = σ(a_z + b_z)`, `n = tanh(a_n + r b_n)`, `h' = (1 - z) n + z h`.
#[inline(always)]
pub(crate) fn gru_update<T: Real>(a: &[T], b: &[T], h: &mut [T]) {
    let hs = h.len();
    for k in 0..hs {
        let r = super::activations::sigmoid(a[k] + b[k]);
        let z = super::activations::sigmoid(a[hs + k] + b[hs + k]);
        let n = (a[2 * hs + k] + r * b[2 * hs + k]).tanh_fwd();
        h[k] = (T::one() - z) * n + z * h[k];
    }
}

impl<T: Real> RnnProcessor<T> {
    #[inline(always)]
    fn process_inner(&mut self, input: &[T], output: &mut [T]) {
        for (o, &x) in output.iter_mut().zip(input) {
            *o = self.step(x);
        }
    }

    /// The same loop compiled for AVX2 (everything below is `inline(always)`, so it inherits
    /// the target feature). No FMA: results are those of the portable build.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn process_avx2(&mut self, input: &[T], output: &mut [T]) {
        self.process_inner(input, output)
    }
}

impl<T: Real> Processor<T> for RnnProcessor<T> {
    fn process(&mut self, input: &[T], output: &mut [T]) {
        assert_eq!(input.len(), output.len(), "input and output lengths differ");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { self.process_avx2(input, output) };
        }
        self.process_inner(input, output)
    }

    fn reset(&mut self) {
        for (li, l) in self.layers.iter().enumerate() {
            self.h[li].copy_from_slice(&l.h0);
            self.c[li].copy_from_slice(&l.c0);
        }
    }
}
