//! NAM WaveNet: layer arrays of dilated causal convolutions with a conditioning input mixer,
//! residual 1×1 convolutions and a summed head path, as in `nam.models.wavenet` (0.5 files
//! and the 0.6/0.7 layer-array vocabulary of neural-amp-modeler 0.13).
//!
//! Per layer, with input `x` (C channels) and condition `c` (the model input):
//! `z = conv_dilated(x) + mixer(c)` (`B` channels, or `2B` when paired), `a = act(z)`
//! (gated: `act(z₁) · sec(z₂)`; blended: `s · act(z₁) + (1 - s) · z₁`, `s = sec(z₂)`),
//! residual out `x + layer1x1(a)` (or `x + a` without it), head contribution `a` (or
//! `head1x1(a)`). Each layer array starts with a 1×1 `rechannel` and ends with a
//! `head_rechannel` (kernel 1, or longer: a convolutional head) of the summed head
//! contributions; the network output is `head_scale ·` the last head (through the optional
//! post-head). Grouped convolutions follow PyTorch's `groups`.
//!
//! FiLM (0.7 `*_film` slots): at up to eight points of a layer, a signal `x` becomes
//! `scale(c) · x + shift(c)`, `[scale; shift] = film_conv(c)` a 1×1 (with bias) of the
//! condition, as `nam.models.wavenet._film.FiLM` computes it.
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
    /// PyTorch `groups`: output channel `o` sees only the inputs of its group; the weight is
    /// `out × (in / groups) × kernel`.
    pub groups: usize,
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
            groups: 1,
        }
    }

    /// The weight as a dense `out × in × kernel` array (zeros outside the groups).
    pub fn dense_weight(&self) -> Vec<f64> {
        let (i_n, o_n, k_n) = (self.in_channels, self.out_channels, self.kernel_size);
        if self.groups == 1 {
            return self.weight.clone();
        }
        let (ig, og) = (i_n / self.groups, o_n / self.groups);
        let mut w = vec![0.0; i_n * o_n * k_n];
        for o in 0..o_n {
            let g = o / og;
            for il in 0..ig {
                let i = g * ig + il;
                for k in 0..k_n {
                    w[(o * i_n + i) * k_n + k] = self.weight[(o * ig + il) * k_n + k];
                }
            }
        }
        w
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

/// How a layer's activation combines the two halves of a paired (`2 × bottleneck`) output
/// (NAM `gating_mode`; `PairMultiply` / `PairBlend` in the Python package).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Gating {
    /// `act(z)` (`bottleneck` channels).
    None,
    /// `act(z₁) · secondary(z₂)` (0.5 `gated`: secondary = Sigmoid).
    Gated(Activation),
    /// `b · act(z₁) + (1 - b) · z₁` with `b = secondary(z₂)`.
    Blended(Activation),
}

impl Gating {
    /// Whether the convolution outputs two halves.
    pub fn paired(&self) -> bool {
        !matches!(self, Gating::None)
    }

    /// The NAM `gating_mode` name.
    pub fn name(&self) -> &'static str {
        match self {
            Gating::None => "none",
            Gating::Gated(_) => "gated",
            Gating::Blended(_) => "blended",
        }
    }
}

/// The points of a layer where a FiLM can modulate a signal (NAM's slot names and weight
/// order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilmSlot {
    /// The layer input, before the dilated convolution (`channels`).
    ConvPre,
    /// The dilated convolution's output (`mid`).
    ConvPost,
    /// The condition, before the input mixer (`condition_size`).
    InputMixinPre,
    /// The input mixer's output (`mid`).
    InputMixinPost,
    /// Their sum, before the activation (`mid`).
    ActivationPre,
    /// The activation's output (`bottleneck`).
    ActivationPost,
    /// The layer1x1's output (`channels`).
    Layer1x1Post,
    /// The head1x1's output (its `out_channels`).
    Head1x1Post,
}

impl FilmSlot {
    /// Every slot, in NAM's weight order.
    pub const ALL: [FilmSlot; 8] = [
        FilmSlot::ConvPre,
        FilmSlot::ConvPost,
        FilmSlot::InputMixinPre,
        FilmSlot::InputMixinPost,
        FilmSlot::ActivationPre,
        FilmSlot::ActivationPost,
        FilmSlot::Layer1x1Post,
        FilmSlot::Head1x1Post,
    ];

    /// Width of the signal the slot modulates, from the layer's widths: `channels`, `mid`
    /// (the dilated convolution's output: 2 · bottleneck when paired), `bottleneck`, the
    /// condition's and the head contribution's.
    pub fn width(
        self,
        channels: usize,
        mid: usize,
        bottleneck: usize,
        condition: usize,
        head: usize,
    ) -> usize {
        match self {
            FilmSlot::ConvPre | FilmSlot::Layer1x1Post => channels,
            FilmSlot::ConvPost | FilmSlot::InputMixinPost | FilmSlot::ActivationPre => mid,
            FilmSlot::InputMixinPre => condition,
            FilmSlot::ActivationPost => bottleneck,
            FilmSlot::Head1x1Post => head,
        }
    }

    /// The layer-array key of the slot in a `.nam` file.
    pub fn key(self) -> &'static str {
        match self {
            FilmSlot::ConvPre => "conv_pre_film",
            FilmSlot::ConvPost => "conv_post_film",
            FilmSlot::InputMixinPre => "input_mixin_pre_film",
            FilmSlot::InputMixinPost => "input_mixin_post_film",
            FilmSlot::ActivationPre => "activation_pre_film",
            FilmSlot::ActivationPost => "activation_post_film",
            FilmSlot::Layer1x1Post => "layer1x1_post_film",
            FilmSlot::Head1x1Post => "head1x1_post_film",
        }
    }
}

/// A feature-wise linear modulation: `x ← scale · x (+ shift)`, `[scale; shift]` the
/// output of `conv` (condition → `(1 + shift) · dim`, 1×1, with bias) on the condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Film {
    pub conv: Conv1d,
    pub shift: bool,
}

impl Film {
    /// Channels of the modulated signal.
    pub fn dim(&self) -> usize {
        if self.shift {
            self.conv.out_channels / 2
        } else {
            self.conv.out_channels
        }
    }
}

/// A layer's FiLMs, indexed by [`FilmSlot`] (`None`: the slot is inactive).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LayerFilms(pub [Option<Film>; 8]);

impl LayerFilms {
    /// The FiLM at `slot`, if active.
    pub fn get(&self, slot: FilmSlot) -> Option<&Film> {
        self.0[slot as usize].as_ref()
    }

    /// The active slots with their FiLMs, in weight order.
    pub fn active(&self) -> impl Iterator<Item = (FilmSlot, &Film)> {
        FilmSlot::ALL
            .into_iter()
            .zip(&self.0)
            .filter_map(|(slot, f)| f.as_ref().map(|f| (slot, f)))
    }
}

/// One dilated layer.
#[derive(Clone, Debug, PartialEq)]
pub struct WaveNetLayer {
    /// `channels → mid` (mid = bottleneck, 2·bottleneck when paired), kernel K, dilation d,
    /// with bias.
    pub conv: Conv1d,
    /// `condition_size → mid`, 1×1, no bias.
    pub input_mixer: Conv1d,
    pub activation: Activation,
    pub gating: Gating,
    /// `bottleneck → channels`, 1×1, with bias (NAM `layer1x1`); without it the activation
    /// output is added to the residual directly (then bottleneck = channels).
    pub one_by_one: Option<Conv1d>,
    /// `bottleneck → head1x1.out_channels`, 1×1, with bias (NAM `head1x1`); without it the
    /// activation output is the layer's head contribution.
    pub head1x1: Option<Conv1d>,
    /// FiLM modulations (0.7 files; usually none).
    pub films: LayerFilms,
}

impl WaveNetLayer {
    /// Channels after the activation.
    pub fn bottleneck(&self) -> usize {
        if self.gating.paired() {
            self.conv.out_channels / 2
        } else {
            self.conv.out_channels
        }
    }

    /// Width of the layer's head contribution.
    pub fn head_width(&self) -> usize {
        self.head1x1
            .as_ref()
            .map_or(self.bottleneck(), |h| h.out_channels)
    }
}

/// A layer array (NAM `_LayerArray`).
#[derive(Clone, Debug, PartialEq)]
pub struct WaveNetLayerArray {
    pub input_size: usize,
    pub condition_size: usize,
    pub head_size: usize,
    pub channels: usize,
    /// `input_size → channels`, 1×1, no bias.
    pub rechannel: Conv1d,
    pub layers: Vec<WaveNetLayer>,
    /// `head width → head_size`, bias when `head_bias`; kernel 1 in 0.5 files, longer in
    /// 0.7 ones (a convolutional head, dilation 1).
    pub head_rechannel: Conv1d,
}

impl WaveNetLayerArray {
    /// The array's dilations, layer by layer.
    pub fn dilations(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.conv.dilation).collect()
    }

    /// The layers' kernel sizes.
    pub fn kernel_sizes(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.conv.kernel_size).collect()
    }

    /// The layout the training engine differentiates: every layer with the same activation,
    /// plain or Sigmoid-gated, a 1×1 of `channels → channels`, no head 1×1, no groups (kernel
    /// sizes and dilations per layer, and the head rechannel's kernel, are free). Returns the
    /// activation and whether it is gated, or the first feature outside it.
    pub fn trainer_layout(&self) -> Result<(Activation, bool), String> {
        let first = &self.layers[0];
        for l in &self.layers {
            if let Some((slot, _)) = l.films.active().next() {
                return Err(format!("FiLM (\"{}\")", slot.key()));
            }
            if l.activation != first.activation || l.gating != first.gating {
                return Err("per-layer activations or gating modes".into());
            }
            if l.one_by_one.is_none() {
                return Err("layer1x1 inactive".into());
            }
            if l.head1x1.is_some() {
                return Err("head1x1".into());
            }
            if l.bottleneck() != self.channels {
                return Err("bottleneck different from channels".into());
            }
            let convs = [&l.conv, &l.input_mixer].into_iter().chain(&l.one_by_one);
            if convs.into_iter().any(|c| c.groups != 1) {
                return Err("grouped convolutions".into());
            }
        }
        let gated = match first.gating {
            Gating::None => false,
            Gating::Gated(Activation::Sigmoid) => true,
            Gating::Gated(_) => return Err("secondary activation other than Sigmoid".into()),
            Gating::Blended(_) => return Err("blended gating".into()),
        };
        Ok((first.activation, gated))
    }
}

/// The optional post-head (NAM `_Head`): blocks of activation → convolution (kernel 1 in
/// 0.5 files; 0.7 files give each block a kernel size, dilation 1).
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
    /// Receptive field in samples: `1 + Σ (K - 1) d` over all convolutions in series (the
    /// layers, the head rechannels and the post-head).
    pub fn receptive_field(&self) -> usize {
        let head = self
            .head
            .iter()
            .flat_map(|h| &h.layers)
            .chain(self.layer_arrays.iter().map(|a| &a.head_rechannel));
        1 + self
            .layer_arrays
            .iter()
            .flat_map(|a| a.layers.iter().map(|l| &l.conv))
            .chain(head)
            .map(|c| (c.kernel_size - 1) * c.dilation)
            .sum::<usize>()
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        let mut n = 0;
        self.clone().visit_params(&mut |w| n += w.len());
        n
    }

    /// Visits parameters in NAM's export order: per array `rechannel`, per layer
    /// `conv (w, b), input_mixer (w), [layer1x1 (w, b)], [head1x1 (w, b)]`,
    /// `[FiLM convs (w, b) in slot order]`, `head_rechannel (w[, b])`; then the post-head's
    /// convolutions; then `head_scale`.
    pub fn visit_params(&mut self, f: &mut dyn FnMut(&mut Vec<f64>)) {
        self.visit_convs(&mut |c| c.visit_params(f));
        f(&mut self.head_scale);
    }

    /// Visits every convolution in the order of [`WaveNet::visit_params`].
    pub fn visit_convs(&mut self, f: &mut dyn FnMut(&mut Conv1d)) {
        for a in &mut self.layer_arrays {
            f(&mut a.rechannel);
            for l in &mut a.layers {
                f(&mut l.conv);
                f(&mut l.input_mixer);
                if let Some(c) = &mut l.one_by_one {
                    f(c);
                }
                if let Some(c) = &mut l.head1x1 {
                    f(c);
                }
                for film in l.films.0.iter_mut().flatten() {
                    f(&mut film.conv);
                }
            }
            f(&mut a.head_rechannel);
        }
        if let Some(h) = &mut self.head {
            for c in &mut h.layers {
                f(c);
            }
        }
    }

    /// Checks that the shapes chain; returns a message naming the first inconsistency.
    pub fn validate(&self) -> Result<(), String> {
        if self.layer_arrays.is_empty() {
            return Err("WaveNet has no layer arrays".into());
        }
        let conv_ok = |what: String, c: &Conv1d, i: usize, o: usize| {
            if c.in_channels != i || c.out_channels != o {
                return Err(format!(
                    "{what}: shape {}→{}, expected {i}→{o}",
                    c.in_channels, c.out_channels
                ));
            }
            let g = c.groups;
            if g == 0 || !i.is_multiple_of(g) || !o.is_multiple_of(g) {
                return Err(format!("{what}: {g} groups do not divide {i}→{o}"));
            }
            if c.kernel_size == 0
                || c.weight.len() != i / g * o * c.kernel_size
                || c.bias.as_ref().is_some_and(|b| b.len() != o)
            {
                return Err(format!("{what}: wrong number of weights"));
            }
            if c.dilation == 0 {
                return Err(format!("{what}: dilation 0"));
            }
            Ok(())
        };
        let pointwise = |what: String, c: &Conv1d| {
            if c.kernel_size != 1 {
                return Err(format!("{what}: kernel {}, expected 1", c.kernel_size));
            }
            Ok(())
        };
        let mut prev_head: Option<usize> = None;
        let mut prev_channels = 1;
        for (ai, a) in self.layer_arrays.iter().enumerate() {
            if a.channels == 0 || a.layers.is_empty() {
                return Err(format!("layer array {ai}: empty (no channels or layers)"));
            }
            if ai > 0 && a.input_size != prev_channels {
                return Err(format!(
                    "layer array {ai}: input_size {} but the previous array has {prev_channels} channels",
                    a.input_size
                ));
            }
            conv_ok(
                format!("layer array {ai} rechannel"),
                &a.rechannel,
                a.input_size,
                a.channels,
            )?;
            pointwise(format!("layer array {ai} rechannel"), &a.rechannel)?;
            let head_width = a.layers[0].head_width();
            if let Some(h) = prev_head {
                if h != head_width {
                    return Err(format!(
                        "layer array {ai}: head width {head_width} but the previous head_size is {h}"
                    ));
                }
            }
            for (li, l) in a.layers.iter().enumerate() {
                let w = format!("layer array {ai} layer {li}");
                let b = l.bottleneck();
                let mid = if l.gating.paired() { 2 * b } else { b };
                if b == 0 || l.conv.out_channels != mid {
                    return Err(format!("{w}: bad bottleneck"));
                }
                conv_ok(format!("{w} conv"), &l.conv, a.channels, mid)?;
                conv_ok(
                    format!("{w} input mixer"),
                    &l.input_mixer,
                    a.condition_size,
                    mid,
                )?;
                pointwise(format!("{w} input mixer"), &l.input_mixer)?;
                match &l.one_by_one {
                    Some(c) => {
                        conv_ok(format!("{w} 1x1"), c, b, a.channels)?;
                        pointwise(format!("{w} 1x1"), c)?;
                    }
                    None if b != a.channels => {
                        return Err(format!(
                        "{w}: without layer1x1 the bottleneck ({b}) must equal the channels ({})",
                        a.channels
                    ))
                    }
                    None => {}
                }
                if let Some(c) = &l.head1x1 {
                    conv_ok(format!("{w} head1x1"), c, b, c.out_channels)?;
                    pointwise(format!("{w} head1x1"), c)?;
                }
                if l.head_width() != head_width {
                    return Err(format!("{w}: head width differs from the first layer's"));
                }
                for (slot, film) in l.films.active() {
                    let dim = slot.width(a.channels, mid, b, a.condition_size, l.head_width());
                    let needs = match slot {
                        FilmSlot::Layer1x1Post => l.one_by_one.is_some(),
                        FilmSlot::Head1x1Post => l.head1x1.is_some(),
                        _ => true,
                    };
                    let fw = format!("{w} {}", slot.key());
                    if !needs {
                        return Err(format!("{fw}: active without its 1x1"));
                    }
                    let out = if film.shift { 2 * dim } else { dim };
                    conv_ok(fw.clone(), &film.conv, a.condition_size, out)?;
                    pointwise(fw.clone(), &film.conv)?;
                    if film.conv.bias.is_none() {
                        return Err(format!("{fw}: no bias"));
                    }
                }
            }
            conv_ok(
                format!("layer array {ai} head rechannel"),
                &a.head_rechannel,
                head_width,
                a.head_size,
            )?;
            if a.head_rechannel.groups != 1 {
                return Err(format!(
                    "layer array {ai} head rechannel: groups other than 1"
                ));
            }
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
                conv_ok(format!("post-head layer {i}"), c, out, c.out_channels)?;
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

    /// Whether the training engine differentiates the network: every layer array in
    /// [`WaveNetLayerArray::trainer_layout`], a convolutional head only with a single layer
    /// array, a pointwise post-head; otherwise the first feature outside it.
    pub fn trainer_layout(&self) -> Result<(), String> {
        for a in &self.layer_arrays {
            a.trainer_layout()?;
        }
        if self.layer_arrays.len() > 1
            && self
                .layer_arrays
                .iter()
                .any(|a| a.head_rechannel.kernel_size != 1 || a.head_rechannel.dilation != 1)
        {
            return Err("convolutional head in a WaveNet of several layer arrays".into());
        }
        if let Some(h) = &self.head {
            if h.layers.iter().any(|c| c.kernel_size != 1) {
                return Err("post-head with kernel sizes above 1".into());
            }
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
        // Grouped convolutions run dense, with exact zeros outside the groups.
        let dense = c.dense_weight();
        let mut w = vec![0.0; dense.len()];
        for o in 0..o_n {
            for i in 0..i_n {
                for k in 0..k_n {
                    w[(k * i_n + i) * o_n + o] = dense[(o * i_n + i) * k_n + k];
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
    ///
    /// One out-of-line copy per precision and instruction set (not one per call site): the
    /// unrolled widths below are large, and inlining them into every call of the block loop
    /// tripled the build time.
    #[inline(always)]
    fn apply(&self, x: &[T], out: &mut [T], n: usize, accumulate: bool) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { self.apply_avx2(x, out, n, accumulate) };
        }
        self.apply_portable(x, out, n, accumulate)
    }

    #[inline(never)]
    fn apply_portable(&self, x: &[T], out: &mut [T], n: usize, accumulate: bool) {
        self.apply_any_width(x, out, n, accumulate)
    }

    /// [`PackedConv::apply_any_width`] compiled for AVX2 (no FMA: results are those of the
    /// portable build).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    #[inline(never)]
    unsafe fn apply_avx2(&self, x: &[T], out: &mut [T], n: usize, accumulate: bool) {
        self.apply_any_width(x, out, n, accumulate)
    }

    #[inline(always)]
    fn apply_any_width(&self, x: &[T], out: &mut [T], n: usize, accumulate: bool) {
        // Widths 1, 2, 4, 8, 16 and 32 get one pass with all accumulators in registers and
        // unrolled, vectorised row updates; other widths run in tiles of those widths
        // (12 = 8 + 4, 20 = 16 + 4), which keeps them near the same rate per weight. (More
        // fixed widths cost minutes of compile time for little: each is inlined in the
        // whole block loop, for f32 and f64, portable and AVX2.)
        match self.out_ch {
            1 => self.apply_fixed::<1>(x, out, n, accumulate),
            2 => self.apply_fixed::<2>(x, out, n, accumulate),
            3 => self.apply_fixed::<3>(x, out, n, accumulate),
            4 => self.apply_fixed::<4>(x, out, n, accumulate),
            6 => self.apply_fixed::<6>(x, out, n, accumulate),
            8 => self.apply_fixed::<8>(x, out, n, accumulate),
            12 => self.apply_fixed::<12>(x, out, n, accumulate),
            16 => self.apply_fixed::<16>(x, out, n, accumulate),
            24 => self.apply_fixed::<24>(x, out, n, accumulate),
            32 => self.apply_fixed::<32>(x, out, n, accumulate),
            _ => {
                let mut o0 = 0;
                while o0 < self.out_ch {
                    o0 += match self.out_ch - o0 {
                        32.. => self.apply_tile::<32>(x, out, n, accumulate, o0),
                        16.. => self.apply_tile::<16>(x, out, n, accumulate, o0),
                        8.. => self.apply_tile::<8>(x, out, n, accumulate, o0),
                        4.. => self.apply_tile::<4>(x, out, n, accumulate, o0),
                        2.. => self.apply_tile::<2>(x, out, n, accumulate, o0),
                        _ => self.apply_tile::<1>(x, out, n, accumulate, o0),
                    };
                }
            }
        }
    }

    /// [`PackedConv::apply`] for `out_ch == N`. Narrow widths compute several frames at once:
    /// one frame's sum is a chain of dependent additions (k · in of them) that would leave
    /// the adders waiting on their own latency; `B` frames are `B` independent chains. Each
    /// output's additions keep their order, so the result does not depend on `B`.
    #[inline(always)]
    fn apply_fixed<const N: usize>(&self, x: &[T], out: &mut [T], n: usize, accumulate: bool) {
        if N <= 8 {
            self.apply_frames::<N, 4>(x, out, n, accumulate)
        } else if N <= 16 {
            self.apply_frames::<N, 2>(x, out, n, accumulate)
        } else {
            self.apply_frames::<N, 1>(x, out, n, accumulate)
        }
    }

    /// [`PackedConv::apply_fixed`] in blocks of `B` frames, then the remaining frames one by
    /// one.
    #[inline(always)]
    fn apply_frames<const N: usize, const B: usize>(
        &self,
        x: &[T],
        out: &mut [T],
        n: usize,
        accumulate: bool,
    ) {
        let ic = self.in_ch;
        let bias: &[T; N] = self.bias[..N].try_into().expect("N outputs");
        let blocked = n / B * B;
        let mut t = 0;
        while t < n {
            let frames = if t < blocked { B } else { 1 };
            let mut acc = [[T::zero(); N]; B];
            for (f, a) in acc.iter_mut().enumerate().take(frames) {
                if accumulate {
                    a.copy_from_slice(&out[(t + f) * N..(t + f + 1) * N]);
                }
                for j in 0..N {
                    a[j] += bias[j];
                }
            }
            for k in 0..self.kernel {
                let wk = &self.w[k * ic * N..(k + 1) * ic * N];
                let start = (t + k * self.dilation) * ic;
                for (i, row) in wk.chunks_exact(N).enumerate() {
                    let row: &[T; N] = row.try_into().expect("N weights");
                    if frames == B {
                        for (f, a) in acc.iter_mut().enumerate() {
                            let xv = x[start + f * ic + i];
                            for j in 0..N {
                                a[j] += xv * row[j];
                            }
                        }
                    } else {
                        let xv = x[start + i];
                        for j in 0..N {
                            acc[0][j] += xv * row[j];
                        }
                    }
                }
            }
            for (f, a) in acc.iter().enumerate().take(frames) {
                out[(t + f) * N..(t + f + 1) * N].copy_from_slice(a);
            }
            t += frames;
        }
    }

    /// Outputs `o0 .. o0 + N` of [`PackedConv::apply`]; returns `N`.
    #[inline(always)]
    fn apply_tile<const N: usize>(
        &self,
        x: &[T],
        out: &mut [T],
        n: usize,
        accumulate: bool,
        o0: usize,
    ) -> usize {
        let (ic, oc) = (self.in_ch, self.out_ch);
        let bias: &[T; N] = self.bias[o0..o0 + N].try_into().expect("N outputs");
        for t in 0..n {
            let o: &mut [T; N] = (&mut out[t * oc + o0..t * oc + o0 + N])
                .try_into()
                .expect("N outputs");
            let mut acc = if accumulate { *o } else { [T::zero(); N] };
            for j in 0..N {
                acc[j] += bias[j];
            }
            for k in 0..self.kernel {
                let start = (t + k * self.dilation) * ic;
                let xt = &x[start..start + ic];
                let wk = &self.w[k * ic * oc..(k + 1) * ic * oc];
                for (&xv, row) in xt.iter().zip(wk.chunks_exact(oc)) {
                    let row: &[T; N] = row[o0..o0 + N].try_into().expect("N weights");
                    for j in 0..N {
                        acc[j] += xv * row[j];
                    }
                }
            }
            *o = acc;
        }
        N
    }
}

/// A [`Film`] packed for evaluation.
struct PackedFilm<T> {
    conv: PackedConv<T>,
    dim: usize,
    shift: bool,
}

impl<T: Real> PackedFilm<T> {
    fn new(f: &Film) -> Self {
        PackedFilm {
            conv: PackedConv::new(&f.conv),
            dim: f.dim(),
            shift: f.shift,
        }
    }

    /// `x ← scale · x (+ shift)` over `n` frames of `dim` channels; `ss` is scratch for the
    /// `[scale; shift]` frames computed from `cond`.
    #[inline(always)]
    fn apply(&self, cond: &[T], x: &mut [T], n: usize, ss: &mut [T]) {
        let (d, w) = (self.dim, self.conv.out_ch);
        let ss = &mut ss[..n * w];
        self.conv.apply(cond, ss, n, false);
        for (xt, st) in x[..n * d].chunks_exact_mut(d).zip(ss.chunks_exact(w)) {
            for (c, v) in xt.iter_mut().enumerate() {
                *v *= st[c];
                if self.shift {
                    *v += st[d + c];
                }
            }
        }
    }
}

/// `dst += conv(src)`, through the FiLM at `slot` when there is one (then the product goes
/// through `fx`, scratch of `conv.out_ch` frames).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn add_conv_filmed<T: Real>(
    conv: &PackedConv<T>,
    src: &[T],
    dst: &mut [T],
    n: usize,
    films: &[Option<PackedFilm<T>>; 8],
    slot: FilmSlot,
    cond: &[T],
    (fx, ss): (&mut [T], &mut [T]),
) {
    if films[slot as usize].is_none() {
        return conv.apply(src, dst, n, true);
    }
    let y = &mut fx[..n * conv.out_ch];
    conv.apply(src, y, n, false);
    film_at(films, slot, cond, y, n, ss);
    dst.iter_mut().zip(y.iter()).for_each(|(v, &w)| *v += w);
}

/// Applies the FiLM at `slot`, if any.
#[inline(always)]
fn film_at<T: Real>(
    films: &[Option<PackedFilm<T>>; 8],
    slot: FilmSlot,
    cond: &[T],
    x: &mut [T],
    n: usize,
    ss: &mut [T],
) {
    if let Some(f) = &films[slot as usize] {
        f.apply(cond, x, n, ss);
    }
}

struct PackedLayer<T> {
    conv: PackedConv<T>,
    mixer: PackedConv<T>,
    activation: Activation,
    gating: Gating,
    one_by_one: Option<PackedConv<T>>,
    head1x1: Option<PackedConv<T>>,
    films: [Option<PackedFilm<T>>; 8],
    /// With a `conv_pre_film`: the modulated input frames `[history | block]` the dilated
    /// convolution reads (`buf` keeps the unmodulated ones for the residual).
    pre_buf: Vec<T>,
    /// Input frames `[history | block]`, time-major; the first `history` frames carry over.
    buf: Vec<T>,
}

struct PackedArray<T> {
    channels: usize,
    rechannel: PackedConv<T>,
    layers: Vec<PackedLayer<T>>,
    /// Width of the layers' head contributions.
    head_width: usize,
    head_rechannel: PackedConv<T>,
    /// The head sum `[history | block]` (history for a convolutional head rechannel).
    head_buf: Vec<T>,
}

/// A post-head convolution with its input history.
struct PackedHeadLayer<T> {
    conv: PackedConv<T>,
    buf: Vec<T>,
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
    head: Option<(Activation, Vec<PackedHeadLayer<T>>)>,
    head_scale: T,
    // Scratch buffers for one block.
    z: Vec<T>,
    act: Vec<T>,
    head_out: Vec<T>,
    residual: Vec<T>,
    /// FiLM scratch: a modulated signal and the `[scale; shift]` frames.
    film_x: Vec<T>,
    film_ss: Vec<T>,
    /// The condition through an `input_mixin_pre_film`.
    film_cond: Vec<T>,
}

/// Samples processed per internal block: large enough to amortise loop overhead, small enough
/// that a layer's buffers stay in cache.
const BLOCK: usize = 256;

/// A buffer of `history + BLOCK` frames of `width` channels.
fn history_buf<T: Real>(conv: &PackedConv<T>, width: usize) -> Vec<T> {
    vec![T::zero(); (conv.history() + BLOCK) * width]
}

impl<T: Real> WaveNetProcessor<T> {
    /// A processor in its initial state: the history after `receptive_field - 1` zero inputs
    /// (see the type's documentation), as NAM pads the input.
    pub fn new(net: &WaveNet) -> Self {
        let arrays: Vec<PackedArray<T>> = net
            .layer_arrays
            .iter()
            .map(|a| {
                let head_rechannel = PackedConv::new(&a.head_rechannel);
                let head_width = a.layers[0].head_width();
                PackedArray {
                    channels: a.channels,
                    rechannel: PackedConv::new(&a.rechannel),
                    layers: a
                        .layers
                        .iter()
                        .map(|l| {
                            let conv = PackedConv::new(&l.conv);
                            PackedLayer {
                                buf: history_buf(&conv, a.channels),
                                pre_buf: if l.films.get(FilmSlot::ConvPre).is_some() {
                                    history_buf(&conv, a.channels)
                                } else {
                                    Vec::new()
                                },
                                conv,
                                mixer: PackedConv::new(&l.input_mixer),
                                activation: l.activation,
                                gating: l.gating,
                                one_by_one: l.one_by_one.as_ref().map(PackedConv::new),
                                head1x1: l.head1x1.as_ref().map(PackedConv::new),
                                films: std::array::from_fn(|i| {
                                    l.films.0[i].as_ref().map(PackedFilm::new)
                                }),
                            }
                        })
                        .collect(),
                    head_width,
                    head_buf: history_buf(&head_rechannel, head_width),
                    head_rechannel,
                }
            })
            .collect();
        let head = net.head.as_ref().map(|h| {
            let layers = h
                .layers
                .iter()
                .map(|c| {
                    let conv = PackedConv::new(c);
                    PackedHeadLayer {
                        buf: history_buf(&conv, c.in_channels),
                        conv,
                    }
                })
                .collect();
            (h.activation, layers)
        });
        let max_ch = net
            .layer_arrays
            .iter()
            .flat_map(|a| {
                a.layers
                    .iter()
                    .flat_map(|l| {
                        [&l.conv, &l.input_mixer]
                            .into_iter()
                            .chain(l.films.0.iter().flatten().map(|f| &f.conv))
                    })
                    .chain([&a.rechannel, &a.head_rechannel])
            })
            .chain(net.head.iter().flat_map(|h| &h.layers))
            .map(|c| c.out_channels.max(c.in_channels))
            .max()
            .unwrap_or(1);
        let scratch = || vec![T::zero(); BLOCK * max_ch];
        let mut p = WaveNetProcessor {
            warmup: net.receptive_field() - 1,
            zeros: vec![T::zero(); BLOCK],
            discard: vec![T::zero(); BLOCK],
            arrays,
            head,
            head_scale: T::from_f64_lossy(net.head_scale[0]),
            z: scratch(),
            act: scratch(),
            head_out: scratch(),
            residual: scratch(),
            film_x: scratch(),
            film_ss: scratch(),
            film_cond: scratch(),
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
            let hw = a.head_width;
            // Residual stream entering the array: the model input for the first array,
            // the previous array's residual output otherwise.
            let src: &[T] = if ai == 0 { input } else { &self.residual[..] };
            let first = &mut a.layers[0];
            let h0 = first.conv.history();
            a.rechannel
                .apply(src, &mut first.buf[h0 * c..(h0 + n) * c], n, false);
            // Head accumulator starts from the previous array's head output.
            let hh = a.head_rechannel.history();
            let head_acc = &mut a.head_buf[hh * hw..(hh + n) * hw];
            if ai == 0 {
                head_acc.iter_mut().for_each(|v| *v = T::zero());
            } else {
                head_acc.copy_from_slice(&self.head_out[..n * hw]);
            }
            let nl = a.layers.len();
            for li in 0..nl {
                let (cur_layers, next_layers) = a.layers.split_at_mut(li + 1);
                let l = &mut cur_layers[li];
                let hist = l.conv.history();
                let mid = l.conv.out_ch;
                let z = &mut self.z[..n * mid];
                let (fx, ss) = (&mut self.film_x, &mut self.film_ss);
                let films = &l.films;
                if films[FilmSlot::ConvPre as usize].is_some() {
                    let new = hist * c..(hist + n) * c;
                    l.pre_buf[new.clone()].copy_from_slice(&l.buf[new.clone()]);
                    film_at(films, FilmSlot::ConvPre, input, &mut l.pre_buf[new], n, ss);
                    l.conv.apply(&l.pre_buf[..(hist + n) * c], z, n, false);
                    l.pre_buf.copy_within(n * c..(n + hist) * c, 0);
                } else {
                    l.conv.apply(&l.buf[..(hist + n) * c], z, n, false);
                }
                film_at(films, FilmSlot::ConvPost, input, z, n, ss);
                let mix_in = if films[FilmSlot::InputMixinPre as usize].is_some() {
                    let cs = l.mixer.in_ch;
                    let m = &mut self.film_cond[..n * cs];
                    m.copy_from_slice(&input[..n * cs]);
                    film_at(films, FilmSlot::InputMixinPre, input, m, n, ss);
                    &self.film_cond[..n * cs]
                } else {
                    input
                };
                let scratch = (&mut fx[..], &mut ss[..]);
                add_conv_filmed(
                    &l.mixer,
                    mix_in,
                    z,
                    n,
                    films,
                    FilmSlot::InputMixinPost,
                    input,
                    scratch,
                );
                film_at(films, FilmSlot::ActivationPre, input, z, n, ss);
                let b = match l.gating {
                    Gating::None => mid,
                    _ => mid / 2,
                };
                let act = &mut self.act[..n * b];
                match l.gating {
                    Gating::None => {
                        act.copy_from_slice(z);
                        l.activation.apply_slice(act);
                    }
                    Gating::Gated(sec) => {
                        // NAM: act(z[:B]) · sec(z[B:]).
                        for (at, zt) in act.chunks_exact_mut(b).zip(z.chunks_exact(mid)) {
                            at.copy_from_slice(&zt[..b]);
                        }
                        l.activation.apply_slice(act);
                        for (at, zt) in act.chunks_exact_mut(b).zip(z.chunks_exact(mid)) {
                            for (v, &g) in at.iter_mut().zip(&zt[b..]) {
                                *v *= sec.apply(g);
                            }
                        }
                    }
                    Gating::Blended(sec) => {
                        // NAM: s · act(z[:B]) + (1 - s) · z[:B], s = sec(z[B:]).
                        for (at, zt) in act.chunks_exact_mut(b).zip(z.chunks_exact(mid)) {
                            for (v, (&x, &g)) in at.iter_mut().zip(zt[..b].iter().zip(&zt[b..])) {
                                let s = sec.apply(g);
                                *v = s * l.activation.apply(x) + (T::one() - s) * x;
                            }
                        }
                    }
                }
                film_at(films, FilmSlot::ActivationPost, input, act, n, ss);
                let head_acc = &mut a.head_buf[hh * hw..(hh + n) * hw];
                match &l.head1x1 {
                    Some(h) => {
                        let scratch = (&mut fx[..], &mut ss[..]);
                        let slot = FilmSlot::Head1x1Post;
                        add_conv_filmed(h, act, head_acc, n, films, slot, input, scratch);
                    }
                    None => {
                        for (h, &v) in head_acc.iter_mut().zip(act.iter()) {
                            *h += v;
                        }
                    }
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
                match &l.one_by_one {
                    Some(o) => {
                        let scratch = (&mut fx[..], &mut ss[..]);
                        let slot = FilmSlot::Layer1x1Post;
                        add_conv_filmed(o, act, dst, n, films, slot, input, scratch);
                    }
                    None => {
                        for (d, &v) in dst.iter_mut().zip(act.iter()) {
                            *d += v;
                        }
                    }
                }
                // Keep the last `hist` frames as the next block's history.
                l.buf.copy_within(n * c..(n + hist) * c, 0);
            }
            head_size = a.head_rechannel.out_ch;
            a.head_rechannel.apply(
                &a.head_buf[..(hh + n) * hw],
                &mut self.head_out[..n * head_size],
                n,
                false,
            );
            a.head_buf.copy_within(n * hw..(n + hh) * hw, 0);
        }
        let scaled = &mut self.head_out[..n * head_size];
        scaled.iter_mut().for_each(|v| *v *= self.head_scale);
        match &mut self.head {
            None => output.copy_from_slice(&scaled[..n]),
            Some((act, layers)) => {
                // NAM `_Head`: per block, activation then convolution.
                let mut width = head_size;
                for (i, hl) in layers.iter_mut().enumerate() {
                    let hist = hl.conv.history();
                    let x = &mut hl.buf[hist * width..(hist + n) * width];
                    if i == 0 {
                        x.copy_from_slice(&scaled[..n * width]);
                    } else {
                        x.copy_from_slice(&self.z[..n * width]);
                    }
                    act.apply_slice(x);
                    let out_ch = hl.conv.out_ch;
                    hl.conv.apply(
                        &hl.buf[..(hist + n) * width],
                        &mut self.z[..n * out_ch],
                        n,
                        false,
                    );
                    hl.buf.copy_within(n * width..(n + hist) * width, 0);
                    width = out_ch;
                }
                debug_assert_eq!(width, 1);
                output.copy_from_slice(&self.z[..n]);
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
                l.pre_buf.iter_mut().for_each(|v| *v = T::zero());
            }
            a.head_buf.iter_mut().for_each(|v| *v = T::zero());
        }
        if let Some((_, layers)) = &mut self.head {
            for l in layers {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every output width (the fixed ones and the tiled ones between them), with and without
    /// accumulation, against the convolution sum written out directly in f64.
    #[test]
    fn packed_convolution_matches_the_direct_sum_at_every_width() {
        let (ic, k, d, n) = (5, 3, 2, 9);
        let value = |i: usize| ((i * 7919) % 113) as f64 / 56.0 - 1.0;
        let x: Vec<f64> = (0..(n + (k - 1) * d) * ic).map(|i| value(i + 3)).collect();
        for oc in 1..=40 {
            let mut c = Conv1d::zeros(ic, oc, k, d, true);
            c.weight
                .iter_mut()
                .enumerate()
                .for_each(|(i, w)| *w = value(i));
            let bias: Vec<f64> = (0..oc).map(|o| value(o + 1000)).collect();
            c.bias = Some(bias.clone());
            let packed = PackedConv::<f64>::new(&c);
            for accumulate in [false, true] {
                let start: Vec<f64> = (0..n * oc).map(|i| value(i + 77)).collect();
                let mut out = start.clone();
                packed.apply(&x, &mut out, n, accumulate);
                for t in 0..n {
                    for o in 0..oc {
                        // Tap k of the PyTorch weight reads the input k·d frames after t.
                        let mut want = bias[o] + if accumulate { start[t * oc + o] } else { 0.0 };
                        for i in 0..ic {
                            for j in 0..k {
                                want += c.weight[(o * ic + i) * k + j] * x[(t + j * d) * ic + i];
                            }
                        }
                        let got = out[t * oc + o];
                        assert!(
                            (got - want).abs() <= 1e-13,
                            "width {oc}, t {t}, o {o}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
