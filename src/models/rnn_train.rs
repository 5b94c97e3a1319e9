//! Training engine for recurrent networks: a batched forward pass that records a tape, and
//! the exact reverse-mode gradient for truncated backpropagation through time (TBPTT).
//!
//! # What is computed
//!
//! A frame is a batch of `B` sequences of `T` samples, each starting from its own state. Per
//! layer and time step the gate pre-activations of all items are one small matrix product,
//! `Z_t (B × G·H) = X_t W_ihᵀ + H_{t-1} W_hhᵀ + bias`, followed by the cell's pointwise update
//! (PyTorch equations, see [`super::rnn`]). The output is `y = w_head · h_last + b_head
//! (+ x with skip)`.
//!
//! The backward pass walks each layer's frame in reverse, top layer first. At step `t` it adds
//! the gradient reaching `h_t` from the head (or from the layer above) to the one carried back
//! from step `t + 1`, turns it into pre-activation gradients `dZ_t` with the cell's local
//! derivatives (taken from the activations on the tape, so no transcendental is re-evaluated),
//! and carries `dh_{t-1} = dZ_t W_hh` (plus, for a GRU, `z ⊙ dh_t`) and, for an LSTM,
//! `dc_{t-1} = f ⊙ dc_t` back. LSTM: `dc_t += dh_t ⊙ o ⊙ (1 - tanh² c_t)`, `d(i, f, g, o) =
//! (dc ⊙ g, dc ⊙ c_{t-1}, dc ⊙ i, dh ⊙ tanh c_t)` times the gate derivatives. GRU:
//! `dz = dh ⊙ (h_{t-1} - n)`, `dn = dh ⊙ (1 - z)`, the `n` pre-activation gradient feeds `W_ih`
//! directly and `W_hh` through `r`, and `dr = dn_pre ⊙ (W_hn h + b_hn)`.
//!
//! The weight gradients are products over many rows at once (`dW_hh = Σ_t dZ_tᵀ H_{t-1}`,
//! `dW_ih = Σ_t dZ_tᵀ X_t`, biases = column sums of `dZ`), taken every few steps over the
//! `dZ` rows just computed (about 256 rows, still in cache); above layer 0 the same rows give
//! the gradient into the layer below, `dZ W_ih`.
//!
//! The gradient with respect to the frame's starting state is returned rather than
//! accumulated (TBPTT detaches the state between frames);
//! [`RnnTrainer::add_initial_state_grad`] adds it to the learned initial state of NAM LSTMs
//! when a frame starts from it.
//!
//! # Why it is written this way
//!
//! Batching the items turns the per-step matrix–vector products into matrix–matrix products
//! (`B × H` by `H × G·H` at each step, forward and backward). These small per-step products use
//! a hand-written register-tiled kernel over weights stored in the order it reads them:
//! `matrixmultiply` re-packs both operands on every call, which at these sizes costs a quarter
//! of the arithmetic. The many-row weight-gradient products use `matrixmultiply`, which is
//! at its best there. The pointwise cell updates use an `exp` written so that the loops
//! vectorise (libm's is a scalar call, and was a third of the time), accurate to an ulp or two,
//! so the forward pass matches the streaming processor to ~1e-15.
//!
//! The crate is built for baseline x86-64 (SSE2), so the hot loops are compiled a second time
//! with AVX2+FMA (and the pointwise ones a third time with AVX-512) and picked at run time
//! (`is_x86_feature_detected!`); other targets run the portable versions. The choice depends
//! only on the CPU, so results are deterministic on a given machine.

use super::fastmath::{madd, sigmoid, tanh};
use super::rnn::{axpy, Cell, Rnn};
use super::{cast_vec, Real};
use std::any::TypeId;
use std::sync::Mutex;

/// What one item carries from frame to frame: the recurrent state of every layer (`h`, and
/// `c` for LSTM; `c` empty for GRU) and, for a knob-conditioned network, the item's knob
/// values (constant inputs after the audio sample; set them to train or run each item at its
/// own knob setting). Precision `T`.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnState<T> {
    pub h: Vec<Vec<T>>,
    pub c: Vec<Vec<T>>,
    /// Knob values of the item (length = the network's number of knobs). The gradients
    /// returned by [`RnnTrainer::backward`] leave it empty.
    pub knobs: Vec<T>,
}

/// One layer's weights in precision `T`, in PyTorch's layout, and where its parameters sit in
/// the canonical parameter vector.
struct TrainLayer<T> {
    input: usize,
    hidden: usize,
    /// `(G·H) × input`, row-major.
    w_ih: Vec<T>,
    /// Layer 0 only: `w_ih` transposed, `input × (G·H)` (row 0: the audio input's weights;
    /// rows 1..: the knobs').
    w_ih_t: Vec<T>,
    /// `(G·H) × H`, row-major.
    w_hh: Vec<T>,
    /// `H × (G·H)`, row-major (`w_hh` transposed, for the forward recurrence).
    w_hh_t: Vec<T>,
    /// Bias on the input-side pre-activations (LSTM: `b_ih + b_hh`; GRU: `b_ih`).
    b_x: Vec<T>,
    /// GRU hidden-side bias `b_hh` (zeros when absent); empty for LSTM.
    b_h: Vec<T>,
    h0: Vec<T>,
    c0: Vec<T>,
    off_w_ih: usize,
    off_w_hh: usize,
    off_b_ih: Option<usize>,
    off_b_hh: Option<usize>,
    off_h0: Option<usize>,
    off_c0: Option<usize>,
}

/// Weights packed for training in precision `T`; built once per optimiser step from an `&Rnn`.
pub struct RnnTrainer<T: Real> {
    cell: Cell,
    layers: Vec<TrainLayer<T>>,
    head_w: Vec<T>,
    head_b: T,
    skip: bool,
    /// The network's own knob values (those of [`Self::initial_state`]).
    knobs: Vec<T>,
    off_head_w: usize,
    off_head_b: Option<usize>,
    num_params: usize,
}

/// What the backward pass needs of one layer.
#[derive(Default)]
struct LayerTape<T> {
    /// `T × B × (G·H)`: gate activations (LSTM: σ(i), σ(f), tanh(g), σ(o); GRU: r, z, n).
    act: Vec<T>,
    /// `(T + 1) × B × H`: hidden states, starting state first.
    h: Vec<T>,
    /// LSTM: `(T + 1) × B × H` cell states, starting state first.
    c: Vec<T>,
    /// LSTM: `T × B × H`, `tanh(c_t)`. GRU: `T × B × H`, `W_hn h_{t-1} + b_hn`.
    aux: Vec<T>,
}

/// Scratch of the backward pass, kept with the tape so that frames reuse it.
#[derive(Default)]
struct Scratch<T> {
    /// `T × B × (G·H)`: pre-activation gradients (GRU: input side).
    dz: Vec<T>,
    /// GRU: `T × B × (G·H)`, hidden-side pre-activation gradients.
    dzh: Vec<T>,
    /// `T × B × H`: gradient reaching a layer's outputs from the layer above, and the one
    /// being computed for the layer below.
    dh_ext: Vec<T>,
    dh_below: Vec<T>,
    /// `B × H`: gradient carried back in time.
    dh: Vec<T>,
    dc: Vec<T>,
    /// `T × B`: output gradient, time-major.
    dy: Vec<T>,
    bias: Vec<T>,
    /// `B × (G·H)`: per-item sums of layer 0's pre-activation gradients (knob weights).
    item_sums: Vec<T>,
}

/// Everything the backward pass needs from a forward pass over a batch frame; reusable across
/// frames (no allocation once sized).
///
/// Size: per layer about `T · B · (G + 3) · H` values (gate activations, `h`, `c` and
/// `tanh c` for an LSTM), e.g. 395 MB in f64 for an LSTM of hidden size 40 over 40 × 4410
/// samples; the backward scratch adds only a few hundred rows (and, with several layers, two
/// `T · B · H` buffers).
#[derive(Default)]
pub struct RnnTape<T: Real> {
    batch: usize,
    steps: usize,
    /// `T × B` inputs, time-major.
    x: Vec<T>,
    /// `B × K` knob values of the items.
    knobs: Vec<T>,
    /// `B × (G·H)`: layer 0's input-side bias per item, knob contributions included.
    bias0: Vec<T>,
    layers: Vec<LayerTape<T>>,
    /// Forward scratch: GRU hidden-side pre-activations of one step, `B × (G·H)`.
    gh: Vec<T>,
    scratch: Mutex<Scratch<T>>,
}

impl<T: Real> RnnTape<T> {
    /// An empty tape; it is sized by the first [`RnnTrainer::forward`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of items of the recorded frame.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Number of time steps of the recorded frame.
    pub fn steps(&self) -> usize {
        self.steps
    }
}

/// Resizes without giving memory back, so that a reused buffer allocates only when it grows.
fn size<T: Real>(v: &mut Vec<T>, n: usize) {
    v.resize(n, T::zero());
}

/// `C ← A B + β C` with arbitrary strides (row stride, column stride per matrix); `A` is
/// `m × k`, `B` is `k × n`. Dispatches to `matrixmultiply` for f32/f64.
#[allow(clippy::too_many_arguments)]
fn gemm<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    (rsa, csa): (usize, usize),
    b: &[T],
    (rsb, csb): (usize, usize),
    beta: T,
    c: &mut [T],
    (rsc, csc): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    // The raw-pointer kernels below rely on these bounds.
    assert!(k == 0 || (m - 1) * rsa + (k - 1) * csa < a.len());
    assert!(k == 0 || (k - 1) * rsb + (n - 1) * csb < b.len());
    assert!((m - 1) * rsc + (n - 1) * csc < c.len());
    let s = |v: usize| v as isize;
    // SAFETY: bounds checked above; T is exactly the type named by the TypeId test, and the
    // output does not alias the inputs (distinct borrows).
    unsafe {
        if TypeId::of::<T>() == TypeId::of::<f64>() {
            matrixmultiply::dgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr() as *const f64,
                s(rsa),
                s(csa),
                b.as_ptr() as *const f64,
                s(rsb),
                s(csb),
                beta.to_f64_exact(),
                c.as_mut_ptr() as *mut f64,
                s(rsc),
                s(csc),
            );
        } else if TypeId::of::<T>() == TypeId::of::<f32>() {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr() as *const f32,
                s(rsa),
                s(csa),
                b.as_ptr() as *const f32,
                s(rsb),
                s(csb),
                beta.to_f64_exact() as f32,
                c.as_mut_ptr() as *mut f32,
                s(rsc),
                s(csc),
            );
        } else {
            for i in 0..m {
                for j in 0..n {
                    let mut acc = T::zero();
                    for l in 0..k {
                        acc += a[i * rsa + l * csa] * b[l * rsb + j * csb];
                    }
                    let o = &mut c[i * rsc + j * csc];
                    *o = if beta == T::zero() {
                        acc
                    } else {
                        beta * *o + acc
                    };
                }
            }
        }
    }
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

fn add_to<T: Real>(out: &mut [T], v: &[T]) {
    for (o, &x) in out.iter_mut().zip(v) {
        *o += x;
    }
}

impl<T: Real> RnnTrainer<T> {
    /// Packs the network's weights in precision `T`.
    pub fn new(net: &Rnn) -> Self {
        let cell = net.cell;
        let mut off = 0;
        let mut layers = Vec::with_capacity(net.layers.len());
        for l in &net.layers {
            let gh = cell.gates() * l.hidden_size;
            let mut take = |v: Option<&Vec<f64>>| {
                v.map(|v| {
                    let o = off;
                    off += v.len();
                    o
                })
            };
            let off_w_ih = take(Some(&l.w_ih)).unwrap_or(0);
            let off_w_hh = take(Some(&l.w_hh)).unwrap_or(0);
            let off_b_ih = take(l.b_ih.as_ref());
            let off_b_hh = take(l.b_hh.as_ref());
            let off_h0 = take(l.initial_hidden.as_ref());
            let off_c0 = take(l.initial_cell.as_ref());
            let zeros = vec![0.0; gh];
            let b_ih = l.b_ih.as_ref().unwrap_or(&zeros);
            let b_hh = l.b_hh.as_ref().unwrap_or(&zeros);
            let (b_x, b_h): (Vec<f64>, Vec<f64>) = match cell {
                Cell::Lstm => (b_ih.iter().zip(b_hh).map(|(a, b)| a + b).collect(), vec![]),
                Cell::Gru => (b_ih.clone(), b_hh.clone()),
            };
            let zh = vec![0.0; l.hidden_size];
            let first = layers.is_empty();
            layers.push(TrainLayer {
                input: l.input_size,
                hidden: l.hidden_size,
                w_ih: cast_vec(&l.w_ih),
                w_ih_t: if first {
                    cast_vec(&transpose(&l.w_ih, gh, l.input_size))
                } else {
                    vec![]
                },
                w_hh: cast_vec(&l.w_hh),
                w_hh_t: cast_vec(&transpose(&l.w_hh, gh, l.hidden_size)),
                b_x: cast_vec(&b_x),
                b_h: cast_vec(&b_h),
                h0: cast_vec(l.initial_hidden.as_ref().unwrap_or(&zh)),
                c0: match cell {
                    Cell::Lstm => cast_vec(l.initial_cell.as_ref().unwrap_or(&zh)),
                    Cell::Gru => vec![],
                },
                off_w_ih,
                off_w_hh,
                off_b_ih,
                off_b_hh,
                off_h0,
                off_c0,
            });
        }
        let off_head_w = off;
        off += net.head_weight.len();
        let off_head_b = net.head_bias.as_ref().map(|b| {
            let o = off;
            off += b.len();
            o
        });
        RnnTrainer {
            cell,
            layers,
            head_w: cast_vec(&net.head_weight),
            head_b: T::from_f64_lossy(net.head_bias.as_ref().map_or(0.0, |b| b[0])),
            skip: net.skip,
            knobs: cast_vec(&net.knobs),
            off_head_w,
            off_head_b,
            num_params: off,
        }
    }

    /// Number of parameters (equals `Network::Rnn(net).num_params()`).
    pub fn num_params(&self) -> usize {
        self.num_params
    }

    /// The network's starting state: the file's initial `h`/`c`, or zeros, and the
    /// network's knob values.
    pub fn initial_state(&self) -> RnnState<T> {
        RnnState {
            h: self.layers.iter().map(|l| l.h0.clone()).collect(),
            c: self.layers.iter().map(|l| l.c0.clone()).collect(),
            knobs: self.knobs.clone(),
        }
    }

    /// Number of knob inputs after the audio sample.
    pub fn num_knobs(&self) -> usize {
        self.knobs.len()
    }

    /// A zero state of the right shape.
    pub fn zero_state(&self) -> RnnState<T> {
        let mut s = self.initial_state();
        s.h.iter_mut()
            .chain(s.c.iter_mut())
            .for_each(|v| v.iter_mut().for_each(|x| *x = T::zero()));
        s
    }

    /// Adds the gradient with respect to a frame's starting state (as returned by
    /// [`Self::backward`]) into `grad` at the learned initial-state parameters, where the
    /// network has them (NAM LSTM). Use it for frames that start from [`Self::initial_state`].
    pub fn add_initial_state_grad(&self, dstate: &RnnState<T>, grad: &mut [T]) {
        assert_eq!(grad.len(), self.num_params, "gradient length");
        for (li, l) in self.layers.iter().enumerate() {
            if let Some(o) = l.off_h0 {
                for (g, &d) in grad[o..o + l.hidden].iter_mut().zip(&dstate.h[li]) {
                    *g += d;
                }
            }
            if let Some(o) = l.off_c0 {
                for (g, &d) in grad[o..o + l.hidden].iter_mut().zip(&dstate.c[li]) {
                    *g += d;
                }
            }
        }
    }

    fn check_batch(&self, xs: &[&[T]], states: &[RnnState<T>], ys: &[&mut [T]]) -> usize {
        assert_eq!(xs.len(), states.len(), "one state per item");
        assert_eq!(xs.len(), ys.len(), "one output per item");
        let steps = xs.first().map_or(0, |x| x.len());
        for (x, y) in xs.iter().zip(ys) {
            assert_eq!(x.len(), steps, "items of a batch have equal lengths");
            assert_eq!(y.len(), steps, "outputs have the inputs' length");
        }
        for s in states {
            assert_eq!(s.h.len(), self.layers.len(), "state has one h per layer");
            assert_eq!(s.knobs.len(), self.knobs.len(), "one value per knob");
        }
        steps
    }

    /// Forward over a batch of sequences without recording the tape (warm-up, inference).
    /// `xs[b]` and `ys[b]` have equal lengths; `states` are advanced to the end.
    pub fn run(&self, xs: &[&[T]], states: &mut [RnnState<T>], ys: &mut [&mut [T]]) {
        const CHUNK: usize = 256;
        let steps = self.check_batch(xs, states, ys);
        let mut tape = RnnTape::new();
        let mut start = 0;
        while start < steps {
            let end = (start + CHUNK).min(steps);
            let xc: Vec<&[T]> = xs.iter().map(|x| &x[start..end]).collect();
            let mut yc: Vec<&mut [T]> = ys.iter_mut().map(|y| &mut y[start..end]).collect();
            self.forward(&xc, states, &mut tape, &mut yc);
            start = end;
        }
    }

    /// Forward over a batch frame, recording the tape; `states` are advanced to the end of
    /// the frame.
    pub fn forward(
        &self,
        xs: &[&[T]],
        states: &mut [RnnState<T>],
        tape: &mut RnnTape<T>,
        ys: &mut [&mut [T]],
    ) {
        let steps = self.check_batch(xs, states, ys);
        let nb = xs.len();
        let nr = steps * nb;
        tape.batch = nb;
        tape.steps = steps;
        size(&mut tape.x, nr);
        for (b, x) in xs.iter().enumerate() {
            for (t, &v) in x.iter().enumerate() {
                tape.x[t * nb + b] = v;
            }
        }
        // Layer 0's input-side bias per item: the constant knob inputs enter as a bias.
        {
            let l = &self.layers[0];
            let g = self.cell.gates() * l.hidden;
            let nk = self.knobs.len();
            size(&mut tape.knobs, nb * nk);
            size(&mut tape.bias0, nb * g);
            for (b, s) in states.iter().enumerate() {
                let row = &mut tape.bias0[b * g..(b + 1) * g];
                row.copy_from_slice(&l.b_x);
                for (k, &v) in s.knobs.iter().enumerate() {
                    axpy(row, v, &l.w_ih_t[(1 + k) * g..(2 + k) * g]);
                }
                tape.knobs[b * nk..(b + 1) * nk].copy_from_slice(&s.knobs);
            }
        }
        tape.layers.resize_with(self.layers.len(), Default::default);
        let is_lstm = self.cell == Cell::Lstm;
        for (li, l) in self.layers.iter().enumerate() {
            let (below, rest) = tape.layers.split_at_mut(li);
            let lt = &mut rest[0];
            let hs = l.hidden;
            let g = self.cell.gates() * hs;
            size(&mut lt.act, nr * g);
            size(&mut lt.h, (steps + 1) * nb * hs);
            size(&mut lt.aux, nr * hs);
            if is_lstm {
                size(&mut lt.c, (steps + 1) * nb * hs);
            }
            for (b, s) in states.iter().enumerate() {
                lt.h[b * hs..(b + 1) * hs].copy_from_slice(&s.h[li]);
                if is_lstm {
                    lt.c[b * hs..(b + 1) * hs].copy_from_slice(&s.c[li]);
                }
            }
            // Input-side pre-activations: above layer 0 one product over the whole frame;
            // layer 0 (one input) per step below, while the rows are in cache.
            if li > 0 {
                for row in lt.act.chunks_exact_mut(g) {
                    row.copy_from_slice(&l.b_x);
                }
                let hin = &below[li - 1].h[nb * l.input..];
                gemm(
                    nr,
                    l.input,
                    g,
                    hin,
                    (l.input, 1),
                    &l.w_ih,
                    (1, l.input),
                    T::one(),
                    &mut lt.act,
                    (g, 1),
                );
            }
            if !is_lstm {
                size(&mut tape.gh, nb * g);
            }
            let bh = nb * hs;
            for t in 0..steps {
                let (hprev, hnext) = lt.h[t * bh..(t + 2) * bh].split_at_mut(bh);
                let act = &mut lt.act[t * nb * g..(t + 1) * nb * g];
                let aux = &mut lt.aux[t * bh..(t + 1) * bh];
                if li == 0 {
                    input_affine(
                        act,
                        &tape.x[t * nb..(t + 1) * nb],
                        &l.w_ih_t[..g],
                        &tape.bias0,
                    );
                }
                if is_lstm {
                    step_gemm(nb, hs, g, hprev, &l.w_hh_t, true, act);
                    let (cprev, cnext) = lt.c[t * bh..(t + 2) * bh].split_at_mut(bh);
                    lstm_forward(act, cprev, cnext, aux, hnext, hs);
                } else {
                    let gh = &mut tape.gh[..nb * g];
                    for row in gh.chunks_exact_mut(g) {
                        row.copy_from_slice(&l.b_h);
                    }
                    step_gemm(nb, hs, g, hprev, &l.w_hh_t, true, gh);
                    gru_forward(act, gh, hprev, aux, hnext, hs);
                }
            }
            for (b, s) in states.iter_mut().enumerate() {
                let at = steps * bh + b * hs;
                s.h[li].copy_from_slice(&lt.h[at..at + hs]);
                if is_lstm {
                    s.c[li].copy_from_slice(&lt.c[at..at + hs]);
                }
            }
        }
        // Head.
        let hl = &tape.layers.last().expect("at least one layer").h;
        let hs = self.head_w.len();
        for t in 0..steps {
            for (b, y) in ys.iter_mut().enumerate() {
                let r = (t + 1) * nb + b;
                let hrow = &hl[r * hs..(r + 1) * hs];
                let mut v = self.head_b;
                for (&w, &h) in self.head_w.iter().zip(hrow) {
                    v += w * h;
                }
                if self.skip {
                    v += tape.x[t * nb + b];
                }
                y[t] = v;
            }
        }
    }

    /// Backward pass over the frame recorded in `tape`: given `dL/dy` per item, ACCUMULATES
    /// `dL/dθ` into `grad` (canonical parameter order, length [`Self::num_params`]). Returns
    /// `dL/d(starting state of the frame)` per item; it is not added to `grad` (see
    /// [`Self::add_initial_state_grad`]).
    pub fn backward(&self, tape: &RnnTape<T>, dys: &[&[T]], grad: &mut [T]) -> Vec<RnnState<T>> {
        let nb = tape.batch;
        let steps = tape.steps;
        let nr = nb * steps;
        assert_eq!(dys.len(), nb, "one output gradient per item");
        assert!(
            dys.iter().all(|d| d.len() == steps),
            "output gradient length"
        );
        assert_eq!(grad.len(), self.num_params, "gradient length");
        assert_eq!(
            tape.layers.len(),
            self.layers.len(),
            "tape of another network"
        );
        let mut guard = tape.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let sc = &mut *guard;
        let is_lstm = self.cell == Cell::Lstm;
        let hmax = self.layers.iter().map(|l| l.hidden).max().unwrap_or(0);
        let gmax = self.cell.gates() * hmax;
        size(&mut sc.dy, nr);
        // Steps per chunk of pre-activation gradients: about 256 rows, small enough to stay in
        // cache between the step that writes them and the weight-gradient product that reads
        // them.
        let chunk = (256 / nb.max(1)).max(1);
        size(&mut sc.dz, chunk * nb * gmax);
        if !is_lstm {
            size(&mut sc.dzh, chunk * nb * gmax);
        }
        if self.layers.len() > 1 {
            size(&mut sc.dh_ext, nr * hmax);
            size(&mut sc.dh_below, nr * hmax);
        }
        size(&mut sc.dh, nb * hmax);
        size(&mut sc.dc, nb * hmax);
        size(&mut sc.bias, 4 * gmax);
        if !self.knobs.is_empty() {
            size(&mut sc.item_sums, nb * gmax);
        }
        for (b, d) in dys.iter().enumerate() {
            for (t, &v) in d.iter().enumerate() {
                sc.dy[t * nb + b] = v;
            }
        }

        // Head: dw = Σ dy h_last, db = Σ dy.
        let top = tape.layers.last().expect("at least one layer");
        let hs_top = self.head_w.len();
        gemm(
            1,
            nr,
            hs_top,
            &sc.dy,
            (nr, 1),
            &top.h[nb * hs_top..],
            (hs_top, 1),
            T::one(),
            &mut grad[self.off_head_w..self.off_head_w + hs_top],
            (hs_top, 1),
        );
        if let Some(o) = self.off_head_b {
            grad[o] += sc.dy.iter().copied().sum::<T>();
        }

        let mut dstates: Vec<RnnState<T>> = (0..nb)
            .map(|_| RnnState {
                h: Vec::with_capacity(self.layers.len()),
                c: Vec::with_capacity(self.layers.len()),
                knobs: vec![],
            })
            .collect();
        for li in (0..self.layers.len()).rev() {
            let l = &self.layers[li];
            let lt = &tape.layers[li];
            let hs = l.hidden;
            let g = self.cell.gates() * hs;
            let bh = nb * hs;
            let top_layer = li + 1 == self.layers.len();
            let dh = &mut sc.dh[..bh];
            let dc = &mut sc.dc[..bh];
            dh.iter_mut().for_each(|v| *v = T::zero());
            dc.iter_mut().for_each(|v| *v = T::zero());
            for t in (0..steps).rev() {
                // Gradient reaching h_t from outside the recurrence, added into dh.
                if top_layer {
                    for b in 0..nb {
                        let d = sc.dy[t * nb + b];
                        for (o, &w) in dh[b * hs..(b + 1) * hs].iter_mut().zip(&self.head_w) {
                            *o += d * w;
                        }
                    }
                } else {
                    for (o, &e) in dh.iter_mut().zip(&sc.dh_ext[t * bh..(t + 1) * bh]) {
                        *o += e;
                    }
                }
                let act = &lt.act[t * nb * g..(t + 1) * nb * g];
                let aux = &lt.aux[t * bh..(t + 1) * bh];
                let hprev = &lt.h[t * bh..(t + 1) * bh];
                let c0 = t - t % chunk;
                let at = (t - c0) * nb * g..(t - c0 + 1) * nb * g;
                let dz = &mut sc.dz[at.clone()];
                if is_lstm {
                    let cprev = &lt.c[t * bh..(t + 1) * bh];
                    lstm_backward(act, cprev, aux, dh, dc, dz, hs);
                    // dh_{t-1} = dZ_t W_hh.
                    step_gemm(nb, g, hs, dz, &l.w_hh, false, dh);
                } else {
                    let dzh = &mut sc.dzh[at];
                    gru_backward(act, aux, hprev, dh, dz, dzh, hs);
                    // dh_{t-1} = z ⊙ dh_t (left in dh) + dZh_t W_hh.
                    step_gemm(nb, g, hs, dzh, &l.w_hh, true, dh);
                }
                if t == c0 {
                    let t1 = (c0 + chunk).min(steps);
                    let n = (t1 - c0) * nb * g;
                    let dzh = if is_lstm { &sc.dz[..n] } else { &sc.dzh[..n] };
                    self.weight_grads(
                        li,
                        tape,
                        c0 * nb..t1 * nb,
                        &sc.dz[..n],
                        dzh,
                        &mut sc.bias,
                        &mut sc.item_sums,
                        &mut sc.dh_below,
                        grad,
                    );
                }
            }
            for (b, ds) in dstates.iter_mut().enumerate() {
                ds.h.push(dh[b * hs..(b + 1) * hs].to_vec());
                ds.c.push(if is_lstm {
                    dc[b * hs..(b + 1) * hs].to_vec()
                } else {
                    vec![]
                });
            }

            if li > 0 {
                std::mem::swap(&mut sc.dh_ext, &mut sc.dh_below);
            }
        }
        for ds in &mut dstates {
            ds.h.reverse();
            ds.c.reverse();
        }
        dstates
    }

    /// Weight and bias gradients of layer `li` from the pre-activation gradients of the tape
    /// rows `rows` (time-major `t · B + b`), and, above layer 0, the gradient these rows send
    /// into the layer below (`dZ W_ih`, written into `dh_below`).
    #[allow(clippy::too_many_arguments)]
    fn weight_grads(
        &self,
        li: usize,
        tape: &RnnTape<T>,
        rows: std::ops::Range<usize>,
        dz: &[T],
        dzh: &[T],
        bias: &mut [T],
        item_sums: &mut [T],
        dh_below: &mut [T],
        grad: &mut [T],
    ) {
        let l = &self.layers[li];
        let (hs, ni) = (l.hidden, l.input);
        let g = self.cell.gates() * hs;
        let nb = tape.batch;
        let n = rows.len();
        let bias = &mut bias[..4 * g];
        let lstm = self.cell == Cell::Lstm;
        if li == 0 {
            // The audio input's column of dW_ih is a weighted column sum, done with the bias
            // sum.
            column_sums(dz, &tape.x[rows.clone()], bias);
            if ni == 1 {
                add_to(&mut grad[l.off_w_ih..l.off_w_ih + g], &bias[..g]);
            } else {
                // Knob k's column: Σ_rows knob_k(item) dZ = Σ_items knob_k Σ_(its rows) dZ.
                let nk = ni - 1;
                let sums = &mut item_sums[..nb * g];
                sums.iter_mut().for_each(|v| *v = T::zero());
                for (i, row) in dz.chunks_exact(g).enumerate() {
                    let b = (rows.start + i) % nb;
                    add_to(&mut sums[b * g..(b + 1) * g], row);
                }
                let w = &mut grad[l.off_w_ih..l.off_w_ih + g * ni];
                for j in 0..g {
                    w[j * ni] += bias[j];
                }
                for b in 0..nb {
                    let s = &sums[b * g..(b + 1) * g];
                    for k in 0..nk {
                        let v = tape.knobs[b * nk + k];
                        for j in 0..g {
                            w[j * ni + 1 + k] += v * s[j];
                        }
                    }
                }
            }
        } else {
            let hin = &tape.layers[li - 1].h[(nb + rows.start) * ni..(nb + rows.end) * ni];
            gemm(
                g,
                n,
                ni,
                dz,
                (1, g),
                hin,
                (ni, 1),
                T::one(),
                &mut grad[l.off_w_ih..l.off_w_ih + g * ni],
                (ni, 1),
            );
            if l.off_b_ih.is_some() || (lstm && l.off_b_hh.is_some()) {
                column_sums(dz, &[], bias);
            }
            // Gradient into the layer below: dH_below = dZ W_ih.
            gemm(
                n,
                g,
                ni,
                dz,
                (g, 1),
                &l.w_ih,
                (ni, 1),
                T::zero(),
                &mut dh_below[rows.start * ni..rows.end * ni],
                (ni, 1),
            );
        }
        if let Some(o) = l.off_b_ih {
            add_to(&mut grad[o..o + g], &bias[g..2 * g]);
        }
        let hprev = &tape.layers[li].h[rows.start * hs..rows.end * hs];
        gemm(
            g,
            n,
            hs,
            dzh,
            (1, g),
            hprev,
            (hs, 1),
            T::one(),
            &mut grad[l.off_w_hh..l.off_w_hh + g * hs],
            (hs, 1),
        );
        if let Some(o) = l.off_b_hh {
            if !lstm {
                column_sums(dzh, &[], bias);
            }
            // LSTM: both biases enter the same pre-activations.
            add_to(&mut grad[o..o + g], &bias[g..2 * g]);
        }
    }
}

/// Layer-0 input-side pre-activations of one step: row `r` (item `r`) of `act` is
/// `b_r + x[r] w`, with `b_r` row `r` of `b` (the item's bias, knob inputs included).
#[inline(always)]
fn input_affine_body<T: Real, const FMA: bool>(act: &mut [T], x: &[T], w: &[T], b: &[T]) {
    let g = w.len();
    assert_eq!(b.len(), x.len() * g);
    for ((row, &xv), br) in act.chunks_exact_mut(g).zip(x).zip(b.chunks_exact(g)) {
        for ((o, &wv), &bv) in row.iter_mut().zip(w).zip(br) {
            *o = bv + xv * wv;
        }
    }
}

/// Column sums of the row-major matrix `m` (`out.len() / 4` columns): `out[..cols]` receives
/// `Σ_r x[r] m[r, ·]` (when `x` is not empty) and `out[cols..2 cols]` `Σ_r m[r, ·]`; the rest
/// of `out` is scratch. Summed in blocks of rows, which keeps the rounding error of long
/// frames well below that of one running sum.
#[inline(always)]
fn column_sums_body<T: Real, const FMA: bool>(m: &[T], x: &[T], out: &mut [T]) {
    const BLOCK: usize = 256;
    let cols = out.len() / 4;
    let (wsum, rest) = out.split_at_mut(cols);
    let (sum, rest) = rest.split_at_mut(cols);
    let (bw, bs) = rest.split_at_mut(cols);
    wsum.iter_mut()
        .chain(sum.iter_mut())
        .for_each(|v| *v = T::zero());
    for (bi, block) in m.chunks(BLOCK * cols).enumerate() {
        bw.iter_mut()
            .chain(bs.iter_mut())
            .for_each(|v| *v = T::zero());
        for (r, row) in block.chunks_exact(cols).enumerate() {
            for (s, &v) in bs.iter_mut().zip(row) {
                *s += v;
            }
            if !x.is_empty() {
                let xv = x[bi * BLOCK + r];
                for (s, &v) in bw.iter_mut().zip(row) {
                    *s += xv * v;
                }
            }
        }
        add_to(wsum, bw);
        add_to(sum, bs);
    }
}

/// LSTM step for all items: `act` holds the pre-activations `(i, f, g, o)` per item and
/// receives the activations; writes `c_t`, `tanh(c_t)` and `h_t`.
#[inline(always)]
fn lstm_forward_body<T: Real, const FMA: bool>(
    act: &mut [T],
    cprev: &[T],
    cnext: &mut [T],
    tc: &mut [T],
    hnext: &mut [T],
    hs: usize,
) {
    for (b, z) in act.chunks_exact_mut(4 * hs).enumerate() {
        let r = b * hs..(b + 1) * hs;
        let (zi, rest) = z.split_at_mut(hs);
        let (zf, rest) = rest.split_at_mut(hs);
        let (zg, zo) = rest.split_at_mut(hs);
        let cp = &cprev[r.clone()];
        let cn = &mut cnext[r.clone()];
        let tcb = &mut tc[r.clone()];
        let hn = &mut hnext[r];
        for k in 0..hs {
            let i = sigmoid::<T, FMA>(zi[k]);
            let f = sigmoid::<T, FMA>(zf[k]);
            let g = tanh::<T, FMA>(zg[k]);
            let o = sigmoid::<T, FMA>(zo[k]);
            let c = f * cp[k] + i * g;
            let t = tanh::<T, FMA>(c);
            zi[k] = i;
            zf[k] = f;
            zg[k] = g;
            zo[k] = o;
            cn[k] = c;
            tcb[k] = t;
            hn[k] = o * t;
        }
    }
}

/// GRU step for all items: `act` holds the input-side pre-activations and receives
/// `(r, z, n)`; `gh` the hidden-side ones; `bhn` receives `W_hn h + b_hn`.
#[inline(always)]
fn gru_forward_body<T: Real, const FMA: bool>(
    act: &mut [T],
    gh: &[T],
    hprev: &[T],
    bhn: &mut [T],
    hnext: &mut [T],
    hs: usize,
) {
    let g = 3 * hs;
    for (b, a) in act.chunks_exact_mut(g).enumerate() {
        let gb = &gh[b * g..(b + 1) * g];
        let r0 = b * hs;
        for k in 0..hs {
            let r = sigmoid::<T, FMA>(a[k] + gb[k]);
            let z = sigmoid::<T, FMA>(a[hs + k] + gb[hs + k]);
            let bn = gb[2 * hs + k];
            let n = tanh::<T, FMA>(a[2 * hs + k] + r * bn);
            a[k] = r;
            a[hs + k] = z;
            a[2 * hs + k] = n;
            bhn[r0 + k] = bn;
            hnext[r0 + k] = (T::one() - z) * n + z * hprev[r0 + k];
        }
    }
}

/// LSTM backward step for all items. In: `dh` = dL/dh_t, `dc` = dL/dc_t carried from t + 1.
/// Out: `dz` = dL/d(pre-activations), `dc` = dL/dc_{t-1}.
#[inline(always)]
fn lstm_backward_body<T: Real, const FMA: bool>(
    act: &[T],
    cprev: &[T],
    tc: &[T],
    dh: &[T],
    dc: &mut [T],
    dz: &mut [T],
    hs: usize,
) {
    let one = T::one();
    for (b, (a, d)) in act
        .chunks_exact(4 * hs)
        .zip(dz.chunks_exact_mut(4 * hs))
        .enumerate()
    {
        let r0 = b * hs;
        for k in 0..hs {
            let (i, f, g, o) = (a[k], a[hs + k], a[2 * hs + k], a[3 * hs + k]);
            let t = tc[r0 + k];
            let dhk = dh[r0 + k];
            let dct = dc[r0 + k] + dhk * o * (one - t * t);
            d[k] = dct * g * i * (one - i);
            d[hs + k] = dct * cprev[r0 + k] * f * (one - f);
            d[2 * hs + k] = dct * i * (one - g * g);
            d[3 * hs + k] = dhk * t * o * (one - o);
            dc[r0 + k] = dct * f;
        }
    }
}

/// GRU backward step for all items. In: `dh` = dL/dh_t. Out: `dz`, `dzh` = gradients of the
/// input-side and hidden-side pre-activations; `dh` = the direct part `z ⊙ dh_t` of dL/dh_{t-1}.
#[inline(always)]
fn gru_backward_body<T: Real, const FMA: bool>(
    act: &[T],
    bhn: &[T],
    hprev: &[T],
    dh: &mut [T],
    dz: &mut [T],
    dzh: &mut [T],
    hs: usize,
) {
    let one = T::one();
    let g = 3 * hs;
    for (b, ((a, da), dha)) in act
        .chunks_exact(g)
        .zip(dz.chunks_exact_mut(g))
        .zip(dzh.chunks_exact_mut(g))
        .enumerate()
    {
        let r0 = b * hs;
        for k in 0..hs {
            let (r, z, n) = (a[k], a[hs + k], a[2 * hs + k]);
            let dhk = dh[r0 + k];
            let dn = dhk * (one - z) * (one - n * n);
            let dr = dn * bhn[r0 + k] * r * (one - r);
            let dzz = dhk * (hprev[r0 + k] - n) * z * (one - z);
            da[k] = dr;
            da[hs + k] = dzz;
            da[2 * hs + k] = dn;
            dha[k] = dr;
            dha[hs + k] = dzz;
            dha[2 * hs + k] = dn * r;
            dh[r0 + k] = dhk * z;
        }
    }
}

/// Generates the public-facing kernel: compiled once more with AVX2 and FMA enabled and chosen
/// at run time (the crate is built for baseline x86-64, where these loops would run on SSE2).
macro_rules! multiversion {
    ($name:ident, $body:ident, $avx2:ident, ($($arg:ident: $ty:ty),*)) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $avx2<T: Real>($($arg: $ty),*) {
            $body::<T, true>($($arg),*)
        }

        fn $name<T: Real>($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                unsafe fn avx512<T: Real>($($arg: $ty),*) {
                    $body::<T, true>($($arg),*)
                }
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has the features the function was compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: as above.
                    return unsafe { $avx2($($arg),*) };
                }
            }
            $body::<T, false>($($arg),*)
        }
    };
}

multiversion!(input_affine, input_affine_body, input_affine_avx2,
    (act: &mut [T], x: &[T], w: &[T], b: &[T]));
multiversion!(column_sums, column_sums_body, column_sums_avx2,
    (m: &[T], x: &[T], out: &mut [T]));

multiversion!(lstm_forward, lstm_forward_body, lstm_forward_avx2,
    (act: &mut [T], cprev: &[T], cnext: &mut [T], tc: &mut [T], hnext: &mut [T], hs: usize));
multiversion!(gru_forward, gru_forward_body, gru_forward_avx2,
    (act: &mut [T], gh: &[T], hprev: &[T], bhn: &mut [T], hnext: &mut [T], hs: usize));
multiversion!(lstm_backward, lstm_backward_body, lstm_backward_avx2,
    (act: &[T], cprev: &[T], tc: &[T], dh: &[T], dc: &mut [T], dz: &mut [T], hs: usize));
multiversion!(gru_backward, gru_backward_body, gru_backward_avx2,
    (act: &[T], bhn: &[T], hprev: &[T], dh: &mut [T], dz: &mut [T], dzh: &mut [T], hs: usize));

/// The per-step product `C (m × n) = A (m × k) · B (k × n)` (`C +=` when `accumulate`), all
/// row-major and contiguous, for the small sizes of one time step (items × hidden × gates).
/// `matrixmultiply` re-packs the weight matrix on every call, which at these sizes costs about
/// a quarter of the arithmetic; here the weights are stored in the order the kernel reads them
/// and a register tile of 4 rows × 2 vectors stays in registers over the whole `k` loop.
fn step_gemm<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    b: &[T],
    accumulate: bool,
    c: &mut [T],
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    let wide = std::mem::size_of::<T>() == 4;
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has the features the functions were compiled for.
        unsafe {
            if wide {
                step_gemm_avx512::<T, 32>(m, k, n, a, b, accumulate, c)
            } else {
                step_gemm_avx512::<T, 16>(m, k, n, a, b, accumulate, c)
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: as above.
        unsafe {
            if wide {
                step_gemm_avx2::<T, 16>(m, k, n, a, b, accumulate, c)
            } else {
                step_gemm_avx2::<T, 8>(m, k, n, a, b, accumulate, c)
            }
        }
        return;
    }
    if wide {
        step_gemm_body::<T, 16, false>(m, k, n, a, b, accumulate, c)
    } else {
        step_gemm_body::<T, 8, false>(m, k, n, a, b, accumulate, c)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn step_gemm_avx512<T: Real, const NR: usize>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    b: &[T],
    accumulate: bool,
    c: &mut [T],
) {
    step_gemm_body::<T, NR, true>(m, k, n, a, b, accumulate, c)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn step_gemm_avx2<T: Real, const NR: usize>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    b: &[T],
    accumulate: bool,
    c: &mut [T],
) {
    step_gemm_body::<T, NR, true>(m, k, n, a, b, accumulate, c)
}

/// Rows `rows` (a multiple of `MR` of them) of the columns `j0..j0 + W`: an `MR` × `W`
/// register tile kept over the whole `k` loop.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn panel<T: Real, const MR: usize, const W: usize, const FMA: bool>(
    rows: std::ops::Range<usize>,
    k: usize,
    n: usize,
    j0: usize,
    a: &[T],
    b: &[T],
    accumulate: bool,
    c: &mut [T],
) {
    for i0 in rows.step_by(MR) {
        let mut acc = [[T::zero(); W]; MR];
        let ar: [&[T]; MR] = std::array::from_fn(|r| &a[(i0 + r) * k..(i0 + r + 1) * k]);
        for l in 0..k {
            let brow: &[T; W] = b[l * n + j0..l * n + j0 + W].try_into().unwrap();
            for r in 0..MR {
                let av = ar[r][l];
                for q in 0..W {
                    acc[r][q] = madd::<T, FMA>(acc[r][q], av, brow[q]);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let crow = &mut c[(i0 + r) * n + j0..(i0 + r) * n + j0 + W];
            for (o, &v) in crow.iter_mut().zip(acc) {
                *o = if accumulate { *o + v } else { v };
            }
        }
    }
}

/// The columns `j0..j0 + W` of all `m` rows: tiles of 4 rows, then single-row tiles for the
/// rest (a batch of 1–3 items, or the last items of a thread's share, must not fall back to
/// scalar dot products: they cost as much as a full tile of 4).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn column_panel<T: Real, const W: usize, const FMA: bool>(
    m: usize,
    k: usize,
    n: usize,
    j0: usize,
    a: &[T],
    b: &[T],
    accumulate: bool,
    c: &mut [T],
) {
    let m4 = m - m % 4;
    panel::<T, 4, W, FMA>(0..m4, k, n, j0, a, b, accumulate, c);
    panel::<T, 1, W, FMA>(m4..m, k, n, j0, a, b, accumulate, c);
}

#[inline(always)]
fn step_gemm_body<T: Real, const NR: usize, const FMA: bool>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    b: &[T],
    accumulate: bool,
    c: &mut [T],
) {
    let mut nn = n - n % NR;
    // Column panels outside, so that one k × NR panel of B stays in L1 over all rows.
    for j0 in (0..nn).step_by(NR) {
        column_panel::<T, NR, FMA>(m, k, n, j0, a, b, accumulate, c);
    }
    // Narrower panels for what is left (e.g. 40 = 2 · 16 + 8 columns in f32 with AVX2).
    for w in [16, 8, 4] {
        if w < NR && n - nn >= w {
            match w {
                16 => column_panel::<T, 16, FMA>(m, k, n, nn, a, b, accumulate, c),
                8 => column_panel::<T, 8, FMA>(m, k, n, nn, a, b, accumulate, c),
                _ => column_panel::<T, 4, FMA>(m, k, n, nn, a, b, accumulate, c),
            }
            nn += w;
        }
    }
    // Columns past the last panel of 4 (none for LSTM and GRU gates, 4 or 3 × hidden size,
    // when the hidden size is even).
    let dot = |i: usize, j: usize| {
        let mut s = T::zero();
        for l in 0..k {
            s = madd::<T, FMA>(s, a[i * k + l], b[l * n + j]);
        }
        s
    };
    for i in 0..m {
        for j in nn..n {
            let v = dot(i, j);
            let o = &mut c[i * n + j];
            *o = if accumulate { *o + v } else { v };
        }
    }
}
