//! NAM WaveNet: layer arrays of dilated causal convolutions with a conditioning input mixer,
//! residual 1×1 convolutions and a summed head path, as in `nam.models.wavenet` (0.5.x files).
//!
//! Per layer, with input `x` (C channels) and condition `c` (the model input):
//! `z = conv_dilated(x) + mixer(c)`, `a = act(z)` (gated: `act(z[..C]) · σ(z[C..])`),
//! residual out `x + W₁ₓ₁ a + b`, head contribution `a`. Each layer array starts with a 1×1
//! `rechannel` and ends with a 1×1 `head_rechannel` of the summed head contributions; the
//! network output is `head_scale ·` the last head (through the optional post-head).
//!
//! Convolution weights are stored as in PyTorch/NAM: `weight[o][i][k]`, tap `k = K-1` on the
//! newest sample.

use super::{cast_vec, Activation, Processor, Real};

/// A 1-D convolution (PyTorch `Conv1d` semantics, causal use).
#[derive(Clone, Debug, PartialEq)]
pub struct Conv1d {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel_size: usize,
    pub dilation: usize,
    /// `out × in × kernel`, row-major.
    pub weight: Vec<f64>,
    /// `out` values when present.
    pub bias: Option<Vec<f64>>,
}

impl Conv1d {
    /// A zero-initialised convolution of the given shape.
    pub fn zeros(
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        dilation: usize,
        bias: bool,
    ) -> Self {
        Conv1d {
            in_channels,
            out_channels,
            kernel_size,
            dilation,
            weight: vec![0.0; in_channels * out_channels * kernel_size],
            bias: bias.then(|| vec![0.0; out_channels]),
        }
    }

    /// Number of parameters (weight, then bias).
    pub fn num_params(&self) -> usize {
        self.weight.len() + self.bias.as_ref().map_or(0, Vec::len)
    }

    fn visit_params(&mut self, f: &mut dyn FnMut(&mut Vec<f64>)) {
        f(&mut self.weight);
        if let Some(b) = &mut self.bias {
            f(b);
        }
    }
}

/// One gated or plain dilated layer.
#[derive(Clone, Debug, PartialEq)]
pub struct WaveNetLayer {
    /// `channels → mid` (mid = 2·channels when gated), kernel K, dilation d, with bias.
    pub conv: Conv1d,
    /// `condition_size → mid`, 1×1, no bias.
    pub input_mixer: Conv1d,
    /// `channels → channels`, 1×1, with bias.
    pub one_by_one: Conv1d,
}

/// A layer array (NAM `_LayerArray`).
#[derive(Clone, Debug, PartialEq)]
pub struct WaveNetLayerArray {
    pub input_size: usize,
    pub condition_size: usize,
    pub head_size: usize,
    pub channels: usize,
    pub kernel_size: usize,
    pub activation: Activation,
    pub gated: bool,
    /// `input_size → channels`, 1×1, no bias.
    pub rechannel: Conv1d,
    pub layers: Vec<WaveNetLayer>,
    /// `channels → head_size`, 1×1, bias when `head_bias`.
    pub head_rechannel: Conv1d,
}

impl WaveNetLayerArray {
    /// The array's dilations, layer by layer.
    pub fn dilations(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.conv.dilation).collect()
    }
}

/// The optional post-head (NAM `_Head`): `num_layers` blocks of activation → 1×1 conv.
#[derive(Clone, Debug, PartialEq)]
pub struct WaveNetHead {
    pub activation: Activation,
    pub layers: Vec<Conv1d>,
}

/// A NAM WaveNet.
#[derive(Clone, Debug, PartialEq)]
pub struct WaveNet {
    pub layer_arrays: Vec<WaveNetLayerArray>,
    pub head: Option<WaveNetHead>,
    /// The output scale (one value; NAM stores it as the last weight).
    pub head_scale: Vec<f64>,
}

impl WaveNet {
    /// Receptive field in samples: `1 + Σ (K - 1) d` over all layers.
    pub fn receptive_field(&self) -> usize {
        1 + self
            .layer_arrays
            .iter()
            .flat_map(|a| a.layers.iter())
            .map(|l| (l.conv.kernel_size - 1) * l.conv.dilation)
            .sum::<usize>()
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        let arrays: usize = self
            .layer_arrays
            .iter()
            .map(|a| {
                a.rechannel.num_params()
                    + a.head_rechannel.num_params()
                    + a.layers
                        .iter()
                        .map(|l| {
                            l.conv.num_params()
                                + l.input_mixer.num_params()
                                + l.one_by_one.num_params()
                        })
                        .sum::<usize>()
            })
            .sum();
        let head: usize = self
            .head
            .as_ref()
            .map_or(0, |h| h.layers.iter().map(Conv1d::num_params).sum());
        arrays + head + self.head_scale.len()
    }

    /// Visits parameters in NAM's export order: per array `rechannel`, per layer
    /// `conv (w, b), input_mixer (w), 1×1 (w, b)`, `head_rechannel (w, b)`; then the post-head's
    /// convolutions; then `head_scale`.
    pub fn visit_params(&mut self, f: &mut dyn FnMut(&mut Vec<f64>)) {
        for a in &mut self.layer_arrays {
            a.rechannel.visit_params(f);
            for l in &mut a.layers {
                l.conv.visit_params(f);
                l.input_mixer.visit_params(f);
                l.one_by_one.visit_params(f);
            }
            a.head_rechannel.visit_params(f);
        }
        if let Some(h) = &mut self.head {
            for c in &mut h.layers {
                c.visit_params(f);
            }
        }
        f(&mut self.head_scale);
    }

    /// Checks that the shapes chain; returns a message naming the first inconsistency.
    pub fn validate(&self) -> Result<(), String> {
        if self.layer_arrays.is_empty() {
            return Err("WaveNet has no layer arrays".into());
        }
        let conv_ok = |what: String, c: &Conv1d, i: usize, o: usize, k: usize| {
            if c.in_channels != i || c.out_channels != o || c.kernel_size != k {
                return Err(format!(
                    "{what}: shape {}→{} kernel {}, expected {i}→{o} kernel {k}",
                    c.in_channels, c.out_channels, c.kernel_size
                ));
            }
            if c.weight.len() != i * o * k || c.bias.as_ref().is_some_and(|b| b.len() != o) {
                return Err(format!("{what}: wrong number of weights"));
            }
            if c.dilation == 0 {
                return Err(format!("{what}: dilation 0"));
            }
            Ok(())
        };
        let mut prev_head: Option<usize> = None;
        let mut prev_channels = 1;
        for (ai, a) in self.layer_arrays.iter().enumerate() {
            if a.channels == 0 || a.kernel_size == 0 || a.layers.is_empty() {
                return Err(format!(
                    "layer array {ai}: empty (no channels, kernel or layers)"
                ));
            }
            if ai > 0 && a.input_size != prev_channels {
                return Err(format!(
                    "layer array {ai}: input_size {} but the previous array has {prev_channels} channels",
                    a.input_size
                ));
            }
            if let Some(h) = prev_head {
                if h != a.channels {
                    return Err(format!(
                        "layer array {ai}: {} channels but the previous head_size is {h}",
                        a.channels
                    ));
                }
            }
            let mid = if a.gated { 2 * a.channels } else { a.channels };
            conv_ok(
                format!("layer array {ai} rechannel"),
                &a.rechannel,
                a.input_size,
                a.channels,
                1,
            )?;
            for (li, l) in a.layers.iter().enumerate() {
                let w = format!("layer array {ai} layer {li}");
                conv_ok(format!("{w} conv"), &l.conv, a.channels, mid, a.kernel_size)?;
                conv_ok(
                    format!("{w} input mixer"),
                    &l.input_mixer,
                    a.condition_size,
                    mid,
                    1,
                )?;
                conv_ok(format!("{w} 1x1"), &l.one_by_one, a.channels, a.channels, 1)?;
            }
            conv_ok(
                format!("layer array {ai} head rechannel"),
                &a.head_rechannel,
                a.channels,
                a.head_size,
                1,
            )?;
            if a.condition_size != 1 {
                return Err(format!(
                    "layer array {ai}: condition_size {} (only the mono input, 1, is supported)",
                    a.condition_size
                ));
            }
            prev_head = Some(a.head_size);
            prev_channels = a.channels;
        }
        let mut out = prev_head.unwrap_or(1);
        if let Some(h) = &self.head {
            for (i, c) in h.layers.iter().enumerate() {
                if c.in_channels != out || c.kernel_size != 1 {
                    return Err(format!("post-head layer {i}: wrong shape"));
                }
                out = c.out_channels;
            }
        }
        if out != 1 {
            return Err(format!("the network has {out} output channels, expected 1"));
        }
        if self.head_scale.len() != 1 {
            return Err("head_scale must be one value".into());
        }
        Ok(())
    }
}

/// A convolution packed for evaluation: per tap, an `in × out` matrix so that each input
/// channel adds a contiguous row to the outputs (vectorisable axpy).
struct PackedConv<T> {
    in_ch: usize,
    out_ch: usize,
    kernel: usize,
    dilation: usize,
    /// `kernel × in × out`.
    w: Vec<T>,
    bias: Vec<T>,
}

impl<T: Real> PackedConv<T> {
    fn new(c: &Conv1d) -> Self {
        let (i_n, o_n, k_n) = (c.in_channels, c.out_channels, c.kernel_size);
        let mut w = vec![0.0; c.weight.len()];
        for o in 0..o_n {
            for i in 0..i_n {
                for k in 0..k_n {
                    w[(k * i_n + i) * o_n + o] = c.weight[(o * i_n + i) * k_n + k];
                }
            }
        }
        PackedConv {
            in_ch: i_n,
            out_ch: o_n,
            kernel: k_n,
            dilation: c.dilation,
            w: cast_vec(&w),
            bias: c
                .bias
                .as_ref()
                .map_or_else(|| vec![T::zero(); o_n], |b| cast_vec(b)),
        }
    }

    /// History (frames) the convolution needs before its first output.
    fn history(&self) -> usize {
        (self.kernel - 1) * self.dilation
    }

    /// `out[t] (+)= b + Σ_k W_k x[t + k d]` for `t < n`, time-major (`x` has `n + history`
    /// frames of `in_ch`, `out` has `n` frames of `out_ch`). `accumulate` adds to `out`
    /// instead of overwriting it.
    #[inline(always)]
    fn apply(&self, x: &[T], out: &mut [T], n: usize, accumulate: bool) {
        // Fixed output widths get fully unrolled, vectorised row updates.
        match self.out_ch {
            1 => self.apply_fixed::<1>(x, out, n, accumulate),
            2 => self.apply_fixed::<2>(x, out, n, accumulate),
            4 => self.apply_fixed::<4>(x, out, n, accumulate),
            8 => self.apply_fixed::<8>(x, out, n, accumulate),
            16 => self.apply_fixed::<16>(x, out, n, accumulate),
            32 => self.apply_fixed::<32>(x, out, n, accumulate),
            _ => self.apply_any(x, out, n, accumulate),
        }
    }

    /// [`PackedConv::apply`] for `out_ch == N`.
    #[inline(always)]
    fn apply_fixed<const N: usize>(&self, x: &[T], out: &mut [T], n: usize, accumulate: bool) {
        let ic = self.in_ch;
        let bias: &[T; N] = self.bias[..N].try_into().expect("N outputs");
        for (t, o) in out[..n * N].chunks_exact_mut(N).enumerate() {
            let o: &mut [T; N] = o.try_into().expect("N outputs");
            let mut acc = if accumulate { *o } else { [T::zero(); N] };
            for j in 0..N {
                acc[j] += bias[j];
            }
            for k in 0..self.kernel {
                let start = (t + k * self.dilation) * ic;
                let xt = &x[start..start + ic];
                let wk = &self.w[k * ic * N..(k + 1) * ic * N];
                for (&xv, row) in xt.iter().zip(wk.chunks_exact(N)) {
                    let row: &[T; N] = row.try_into().expect("N weights");
                    for j in 0..N {
                        acc[j] += xv * row[j];
                    }
                }
            }
            *o = acc;
        }
    }

    /// [`PackedConv::apply`] for any output width.
    #[inline(always)]
    fn apply_any(&self, x: &[T], out: &mut [T], n: usize, accumulate: bool) {
        let (ic, oc) = (self.in_ch, self.out_ch);
        for t in 0..n {
            let o = &mut out[t * oc..(t + 1) * oc];
            if accumulate {
                for (v, &b) in o.iter_mut().zip(&self.bias) {
                    *v += b;
                }
            } else {
                o.copy_from_slice(&self.bias);
            }
            for k in 0..self.kernel {
                let xt = &x[(t + k * self.dilation) * ic..(t + k * self.dilation + 1) * ic];
                let wk = &self.w[k * ic * oc..(k + 1) * ic * oc];
                for (i, &xv) in xt.iter().enumerate() {
                    super::rnn::axpy(o, xv, &wk[i * oc..(i + 1) * oc]);
                }
            }
        }
    }
}

struct PackedLayer<T> {
    conv: PackedConv<T>,
    mixer: PackedConv<T>,
    one_by_one: PackedConv<T>,
    /// Input frames `[history | block]`, time-major; the first `history` frames carry over.
    buf: Vec<T>,
}

struct PackedArray<T> {
    channels: usize,
    activation: Activation,
    gated: bool,
    rechannel: PackedConv<T>,
    layers: Vec<PackedLayer<T>>,
    head_rechannel: PackedConv<T>,
}

/// Streaming WaveNet evaluation.
///
/// The initial state is the one NAM's Python forward pass starts from: it pads the input with
/// `receptive_field - 1` zeros, so every layer's history holds that layer's (constant)
/// response to a zero input, *not* zeros — the convolution and 1×1 biases make the hidden
/// layers non-zero even for silence. [`WaveNetProcessor::new`] and `reset` build this state by
/// running `receptive_field - 1` zero samples through the zeroed buffers.
pub struct WaveNetProcessor<T: Real> {
    /// `receptive_field - 1`: zero samples run at reset to reach the initial state.
    warmup: usize,
    /// A block of zeros (warm-up input) and a block of discarded output.
    zeros: Vec<T>,
    discard: Vec<T>,
    arrays: Vec<PackedArray<T>>,
    head: Option<(Activation, Vec<PackedConv<T>>)>,
    head_scale: T,
    // Scratch buffers for one block.
    z: Vec<T>,
    act: Vec<T>,
    head_acc: Vec<T>,
    head_out: Vec<T>,
    residual: Vec<T>,
    post: Vec<T>,
    post2: Vec<T>,
}

/// Samples processed per internal block: large enough to amortise loop overhead, small enough
/// that a layer's buffers stay in cache.
const BLOCK: usize = 256;

impl<T: Real> WaveNetProcessor<T> {
    /// A processor in its initial state: the history after `receptive_field - 1` zero inputs
    /// (see the type's documentation), as NAM pads the input.
    pub fn new(net: &WaveNet) -> Self {
        let arrays: Vec<PackedArray<T>> = net
            .layer_arrays
            .iter()
            .map(|a| PackedArray {
                channels: a.channels,
                activation: a.activation,
                gated: a.gated,
                rechannel: PackedConv::new(&a.rechannel),
                layers: a
                    .layers
                    .iter()
                    .map(|l| {
                        let conv = PackedConv::new(&l.conv);
                        let buf = vec![T::zero(); (conv.history() + BLOCK) * a.channels];
                        PackedLayer {
                            conv,
                            mixer: PackedConv::new(&l.input_mixer),
                            one_by_one: PackedConv::new(&l.one_by_one),
                            buf,
                        }
                    })
                    .collect(),
                head_rechannel: PackedConv::new(&a.head_rechannel),
            })
            .collect();
        let max_ch = net
            .layer_arrays
            .iter()
            .map(|a| 2 * a.channels.max(a.head_size).max(a.input_size))
            .chain(
                net.head
                    .iter()
                    .flat_map(|h| h.layers.iter().map(|c| c.out_channels.max(c.in_channels))),
            )
            .max()
            .unwrap_or(1);
        let scratch = || vec![T::zero(); BLOCK * max_ch];
        let mut p = WaveNetProcessor {
            warmup: net.receptive_field() - 1,
            zeros: vec![T::zero(); BLOCK],
            discard: vec![T::zero(); BLOCK],
            arrays,
            head: net
                .head
                .as_ref()
                .map(|h| (h.activation, h.layers.iter().map(PackedConv::new).collect())),
            head_scale: T::from_f64_lossy(net.head_scale[0]),
            z: scratch(),
            act: scratch(),
            head_acc: scratch(),
            head_out: scratch(),
            residual: scratch(),
            post: scratch(),
            post2: scratch(),
        };
        p.reset();
        p
    }

    /// Processes one block of at most [`BLOCK`] samples.
    #[inline(always)]
    fn process_block(&mut self, input: &[T], output: &mut [T]) {
        let n = input.len();
        let mut head_size = 0;
        for (ai, a) in self.arrays.iter_mut().enumerate() {
            let c = a.channels;
            // Residual stream entering the array: the model input for the first array,
            // the previous array's residual output otherwise.
            let src: &[T] = if ai == 0 { input } else { &self.residual[..] };
            let first = &mut a.layers[0];
            let h0 = first.conv.history();
            a.rechannel
                .apply(src, &mut first.buf[h0 * c..(h0 + n) * c], n, false);
            // Head accumulator starts from the previous array's head output.
            if ai == 0 {
                self.head_acc[..n * c]
                    .iter_mut()
                    .for_each(|v| *v = T::zero());
            } else {
                self.head_acc[..n * c].copy_from_slice(&self.head_out[..n * c]);
            }
            let nl = a.layers.len();
            for li in 0..nl {
                let (cur_layers, next_layers) = a.layers.split_at_mut(li + 1);
                let l = &mut cur_layers[li];
                let hist = l.conv.history();
                let mid = l.conv.out_ch;
                let z = &mut self.z[..n * mid];
                l.conv.apply(&l.buf[..(hist + n) * c], z, n, false);
                l.mixer.apply(input, z, n, true);
                let act = &mut self.act[..n * c];
                if a.gated {
                    // NAM: act(z[:C]) · σ(z[C:]).
                    for (at, zt) in act.chunks_exact_mut(c).zip(z.chunks_exact(mid)) {
                        at.copy_from_slice(&zt[..c]);
                    }
                    a.activation.apply_slice(act);
                    for (at, zt) in act.chunks_exact_mut(c).zip(z.chunks_exact(mid)) {
                        for (v, &g) in at.iter_mut().zip(&zt[c..]) {
                            *v *= g.sigmoid_fwd();
                        }
                    }
                } else {
                    act.copy_from_slice(z);
                    a.activation.apply_slice(act);
                }
                for (h, &v) in self.head_acc[..n * c].iter_mut().zip(act.iter()) {
                    *h += v;
                }
                // Residual output: into the next layer's buffer, or the array's output.
                let dst: &mut [T] = match next_layers.first_mut() {
                    Some(nx) => {
                        let nh = nx.conv.history();
                        &mut nx.buf[nh * c..(nh + n) * c]
                    }
                    None => &mut self.residual[..n * c],
                };
                dst.copy_from_slice(&l.buf[hist * c..(hist + n) * c]);
                l.one_by_one.apply(act, dst, n, true);
                // Keep the last `hist` frames as the next block's history.
                l.buf.copy_within(n * c..(n + hist) * c, 0);
            }
            head_size = a.head_rechannel.out_ch;
            a.head_rechannel.apply(
                &self.head_acc[..n * c],
                &mut self.head_out[..n * head_size],
                n,
                false,
            );
        }
        let scaled = &mut self.head_out[..n * head_size];
        scaled.iter_mut().for_each(|v| *v *= self.head_scale);
        match &self.head {
            None => output.copy_from_slice(&scaled[..n]),
            Some((act, convs)) => {
                // NAM `_Head`: per block, activation then 1×1 convolution; ping-pong between
                // two scratch buffers (no allocation per block).
                let mut width = head_size;
                let (mut cur, mut next) = (&mut self.post, &mut self.post2);
                cur[..n * width].copy_from_slice(scaled);
                for conv in convs {
                    act.apply_slice(&mut cur[..n * width]);
                    conv.apply(&cur[..n * width], &mut next[..n * conv.out_ch], n, false);
                    width = conv.out_ch;
                    std::mem::swap(&mut cur, &mut next);
                }
                debug_assert_eq!(width, 1);
                output.copy_from_slice(&cur[..n]);
            }
        }
    }
}

impl<T: Real> WaveNetProcessor<T> {
    #[inline(always)]
    fn process_inner(&mut self, input: &[T], output: &mut [T]) {
        for (i, o) in input.chunks(BLOCK).zip(output.chunks_mut(BLOCK)) {
            self.process_block(i, o);
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

impl<T: Real> Processor<T> for WaveNetProcessor<T> {
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
        for a in &mut self.arrays {
            for l in &mut a.layers {
                l.buf.iter_mut().for_each(|v| *v = T::zero());
            }
        }
        // Run the padding zeros through (see the type's documentation).
        let zeros = std::mem::take(&mut self.zeros);
        let mut discard = std::mem::take(&mut self.discard);
        let mut left = self.warmup;
        while left > 0 {
            let n = left.min(BLOCK);
            self.process_block(&zeros[..n], &mut discard[..n]);
            left -= n;
        }
        self.zeros = zeros;
        self.discard = discard;
    }
}
