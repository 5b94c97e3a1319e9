//! Training engine for the NAM WaveNet: a batched forward pass that records what the backward
//! pass needs, and the exact reverse-mode gradient of the output with respect to every weight.
//!
//! # What is computed
//!
//! One call handles one training item: an input `x` of `n + context` samples, where
//! `context = receptive_field - 1`, gives `n` outputs `y[t]`, each computed from the
//! `receptive_field` input samples ending at `x[t + context]` (no zero padding: the frame is fed
//! with its preceding context, as in the fine-tuning schedule). This equals the streaming
//! processor run over `x` from its initial state, restricted to its last `n` outputs (the
//! first `receptive_field - 1` samples of `x` play the part of the processor's padding).
//!
//! Per layer array (channels `C`, `M = C`, or `2C` when gated), with `R₀ = rechannel(input)`
//! and `H` the head sum (zero for the first array, the previous array's `head_rechannel` output
//! otherwise):
//!
//! * `z = b + Σ_k W_k R_l[t - (K-1-k) d] + w_mix · x[t]` (dilated causal convolution plus the
//!   input mixer fed by the raw model input),
//! * `a = act(z)`, or gated `a = act(z[..C]) · σ(z[C..])`,
//! * `R_{l+1} = R_l + W₁ₓ₁ a + b₁ₓ₁`, `H += a`,
//! * the array's output is `head_rechannel(H)` (1×1, or with a single layer array a
//!   convolution of kernel `K_h` over the last `n + K_h - 1` frames of `H`: a convolutional
//!   head); the next array's input is the last `R`.
//!
//! The network output is `head_scale ·` the last array's head output, then the optional
//! post-head blocks (activation, 1×1 convolution), exactly as [`super::wavenet`] evaluates it.
//!
//! The backward pass runs the same steps in reverse: the residual stream's gradient `dR` flows
//! through the identity and `W₁ₓ₁ᵀ`, the head gradient `dH` is added to every layer's `da`,
//! `dz = da ⊙ act'(z)` (with the gate's product rule), and each convolution tap scatters
//! `W_kᵀ dz` back into `dR_l` at its shift. Weight gradients are `dzᵀ R` products.
//!
//! # How
//!
//! Activations are stored time-major (`T × C`, a frame's channels contiguous), so every layer
//! is a handful of matrix products over time: the dilated convolution is `K` products of a
//! shifted `T × C` view of `R` with a `C × M` tap matrix; the 1×1 convolutions are `T × C` by
//! `C × C`; in the backward pass the weight gradients are `(M × T)·(T × C)` products and the
//! input gradients the transposed ones. All of them go through `matrixmultiply` (packed,
//! register-blocked AVX2/FMA kernels, arbitrary strides), which lets the weights be read and
//! the gradients written in place in the file's `[out][in][tap]` layout by choosing strides,
//! without repacking. It was chosen over hand-written loops because it selects AVX2/AVX-512
//! FMA kernels at run time, while plain loops compile for baseline x86-64 (SSE2): the inference
//! processor's per-channel axpy loops run the same forward products at 1.6–2.6 GFLOP/s, the
//! trainer's products at 9–15 GFLOP/s (bench). With only 16 channels the packing of the
//! `T × C` operands costs about as much as the kernels; a register-blocked kernel for fixed
//! channel counts that reads the time-major data in place is the next step if more speed is
//! needed.
//!
//! Time is processed in blocks of [`BLOCK`] frames so that a block's pre-activations stay in
//! cache between the products and the activation; the forward pass stores, per layer, the
//! layer input `R_l`, the activation `a` and the local derivative `∂a/∂z` (so the backward
//! pass never re-evaluates `tanh`). A [`WaveNetTape`] holds these and all scratch space; it is
//! sized on first use and reused without allocation afterwards (matrixmultiply allocates its
//! small packing buffers internally per product).

use std::any::TypeId;
use std::cell::RefCell;

use super::activations::sigmoid;
use super::wavenet::{Conv1d, WaveNet};
use super::{cast_vec, Activation, Real};

/// Frames per block: a block's `z` (`BLOCK × 2C`) and the operands of its products stay in L1/L2.
const BLOCK: usize = 512;

/// `c += a · b` for strided matrices: `a` is `m × k` (row stride `rsa`, column stride `csa`),
/// `b` is `k × n`, `c` is `m × n`. Slices start at element (0, 0); extents are checked.
#[allow(clippy::too_many_arguments)]
#[inline]
fn gemm<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    a: &[T],
    rsa: usize,
    csa: usize,
    b: &[T],
    rsb: usize,
    csb: usize,
    c: &mut [T],
    rsc: usize,
    csc: usize,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let extent = |r: usize, cl: usize, rs: usize, cs: usize| (r - 1) * rs + (cl - 1) * cs + 1;
    assert!(extent(m, k, rsa, csa) <= a.len(), "gemm: a out of bounds");
    assert!(extent(k, n, rsb, csb) <= b.len(), "gemm: b out of bounds");
    assert!(extent(m, n, rsc, csc) <= c.len(), "gemm: c out of bounds");
    let (rsa, csa, rsb, csb, rsc, csc) = (
        rsa as isize,
        csa as isize,
        rsb as isize,
        csb as isize,
        rsc as isize,
        csc as isize,
    );
    if TypeId::of::<T>() == TypeId::of::<f64>() {
        // SAFETY: T is f64 (same layout); the extents were checked above and `c` is a unique
        // borrow, so it cannot overlap `a` or `b`.
        unsafe {
            matrixmultiply::dgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr() as *const f64,
                rsa,
                csa,
                b.as_ptr() as *const f64,
                rsb,
                csb,
                1.0,
                c.as_mut_ptr() as *mut f64,
                rsc,
                csc,
            )
        }
    } else if TypeId::of::<T>() == TypeId::of::<f32>() {
        // SAFETY: as above, with T = f32.
        unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr() as *const f32,
                rsa,
                csa,
                b.as_ptr() as *const f32,
                rsb,
                csb,
                1.0,
                c.as_mut_ptr() as *mut f32,
                rsc,
                csc,
            )
        }
    } else {
        // Any other `Real` implementation: plain loops.
        let (rsa, csa, rsb, csb, rsc, csc) = (
            rsa as usize,
            csa as usize,
            rsb as usize,
            csb as usize,
            rsc as usize,
            csc as usize,
        );
        for i in 0..m {
            for j in 0..n {
                let mut s = T::zero();
                for p in 0..k {
                    s += a[i * rsa + p * csa] * b[p * rsb + j * csb];
                }
                c[i * rsc + j * csc] += s;
            }
        }
    }
}

/// Adds the column sums of the `rows × cols` row-major block `x` to `acc`.
#[inline]
fn add_col_sums<T: Real>(x: &[T], rows: usize, cols: usize, acc: &mut [T]) {
    for r in 0..rows {
        for (a, &v) in acc.iter_mut().zip(&x[r * cols..(r + 1) * cols]) {
            *a += v;
        }
    }
}

/// Fills each of `rows` rows of `out` with `bias` (zeros when absent).
#[inline]
fn fill_bias<T: Real>(out: &mut [T], rows: usize, width: usize, bias: Option<&[T]>) {
    let out = &mut out[..rows * width];
    match bias {
        Some(b) => out
            .chunks_exact_mut(width)
            .for_each(|o| o.copy_from_slice(b)),
        None => out.iter_mut().for_each(|v| *v = T::zero()),
    }
}

/// A convolution's weights in `T`, in the file's `[out][in][tap]` layout, and where its
/// weight and bias sit in the flat parameter (and gradient) vector.
struct TConv<T> {
    cin: usize,
    cout: usize,
    kernel: usize,
    dilation: usize,
    w: Vec<T>,
    b: Option<Vec<T>>,
    w_off: usize,
    b_off: Option<usize>,
}

impl<T: Real> TConv<T> {
    /// Packs `c`, taking its offsets from the running parameter count `at` (canonical order:
    /// weight, then bias).
    fn new(c: &Conv1d, at: &mut usize) -> Self {
        let w_off = *at;
        *at += c.weight.len();
        let b_off = c.bias.as_ref().map(|b| {
            let o = *at;
            *at += b.len();
            o
        });
        TConv {
            cin: c.in_channels,
            cout: c.out_channels,
            kernel: c.kernel_size,
            dilation: c.dilation,
            w: cast_vec(&c.weight),
            b: c.bias.as_deref().map(cast_vec),
            w_off,
            b_off,
        }
    }

    fn history(&self) -> usize {
        (self.kernel - 1) * self.dilation
    }

    /// Convolution over `rows` output frames: `out[r] = b + Σ_k W_k x[r + k d]` (`x` has
    /// `rows + history` frames; overwrites `out`). Kernel 1 is a 1×1: `out = b + x Wᵀ`.
    fn conv(&self, x: &[T], rows: usize, out: &mut [T]) {
        let (ci, co, kn) = (self.cin, self.cout, self.kernel);
        fill_bias(out, rows, co, self.b.as_deref());
        for k in 0..kn {
            let row = k * self.dilation;
            gemm(
                rows,
                ci,
                co,
                &x[row * ci..],
                ci,
                1,
                &self.w[k..],
                kn,
                ci * kn,
                out,
                co,
                1,
            );
        }
    }

    /// Backward of [`TConv::conv`]: `dW_k += doutᵀ x(shifted)`, `db += Σ dout`, and
    /// `dx(shifted) += dout W_k` when `dx` is given.
    fn conv_backward(
        &self,
        dout: &[T],
        x: &[T],
        rows: usize,
        grad: &mut [T],
        mut dx: Option<&mut [T]>,
    ) {
        let (ci, co, kn) = (self.cin, self.cout, self.kernel);
        for k in 0..kn {
            let row = k * self.dilation;
            gemm(
                co,
                rows,
                ci,
                dout,
                1,
                co,
                &x[row * ci..],
                ci,
                1,
                &mut grad[self.w_off + k..],
                ci * kn,
                kn,
            );
            if let Some(dx) = dx.as_deref_mut() {
                gemm(
                    rows,
                    co,
                    ci,
                    dout,
                    co,
                    1,
                    &self.w[k..],
                    ci * kn,
                    kn,
                    &mut dx[row * ci..],
                    ci,
                    1,
                );
            }
        }
        if let Some(bo) = self.b_off {
            add_col_sums(dout, rows, co, &mut grad[bo..bo + co]);
        }
    }
}

struct TLayer<T> {
    conv: TConv<T>,
    mixer: TConv<T>,
    one_by_one: TConv<T>,
    /// Absolute index of the first frame of this layer's input `R_l`.
    start: usize,
}

struct TArray<T> {
    in_ch: usize,
    channels: usize,
    mid: usize,
    activation: Activation,
    gated: bool,
    rechannel: TConv<T>,
    layers: Vec<TLayer<T>>,
    head_rechannel: TConv<T>,
    /// Frames of head sum before the first output that a convolutional head rechannel needs
    /// (`kernel - 1`; 0 for a 1×1).
    head_ctx: usize,
    /// Absolute index of the first frame of the array's input.
    start: usize,
}

impl<T> TArray<T> {
    /// Absolute index of the first frame of the array's residual output.
    fn end(&self) -> usize {
        self.layers.last().map_or(self.start, |l| {
            l.start + (l.conv.kernel - 1) * l.conv.dilation
        })
    }
}

/// The weights of a [`WaveNet`] packed for training in precision `T`. Build one per optimiser
/// step (after the weights change); it is read-only during forward and backward, so one
/// trainer serves all the threads of a batch.
pub struct WaveNetTrainer<T: Real> {
    arrays: Vec<TArray<T>>,
    post: Option<(Activation, Vec<TConv<T>>)>,
    head_scale: T,
    head_scale_off: usize,
    num_params: usize,
    context: usize,
}

/// What a forward pass leaves for the backward pass (per layer: its input, activation and
/// local derivative), plus scratch space. Sized on first use, then reused without allocation.
/// One tape per thread.
#[derive(Default)]
pub struct WaveNetTape<T: Real> {
    n: usize,
    x: Vec<T>,
    arrays: Vec<ArrayTape<T>>,
    /// The last array's `head_rechannel` output (before `head_scale`), `n × head_size`.
    head_out: Vec<T>,
    /// Post-head: the input of block `j` before its activation (`post[0]` is the scaled head
    /// output); the last entry is the network output.
    post: Vec<Vec<T>>,
    /// Forward scratch: one block of pre-activations.
    z: Vec<T>,
    scratch: RefCell<Scratch<T>>,
}

#[derive(Default)]
struct ArrayTape<T> {
    /// `R_l` for l = 0..=L (the last one is the array's residual output), each covering the
    /// frames from the layer's start to the end of the item, `C` channels.
    res: Vec<Vec<T>>,
    /// Per layer: `a`, over the layer's output frames, `C` channels.
    act: Vec<Vec<T>>,
    /// Per layer: `∂a/∂z` (gated: `[act'(z₁) σ(z₂) | act(z₁) σ'(z₂)]`), `M` channels.
    gain: Vec<Vec<T>>,
    /// The head sum `H` entering `head_rechannel`, `n × C`.
    head: Vec<T>,
}

#[derive(Default)]
struct Scratch<T> {
    /// Residual-stream gradients, ping-pong between a layer's output and input.
    dres: [Vec<T>; 2],
    /// Gradient of the head sum `H` (`n × C`) and of the array's head output.
    dhead: Vec<T>,
    dhead_out: Vec<T>,
    /// One block of `da` and `dz`.
    da: Vec<T>,
    dz: Vec<T>,
    /// Post-head gradient and activation buffers.
    dpost: [Vec<T>; 2],
    vpost: Vec<T>,
}

fn resize<T: Real>(v: &mut Vec<T>, len: usize) {
    v.resize(len, T::zero());
}

/// `act(z)` and `act'(z)` together; for tanh and sigmoid the derivative comes from the value.
#[inline(always)]
fn value_and_slope<T: Real>(act: Activation, z: T) -> (T, T) {
    match act {
        Activation::Tanh => {
            let a = act.apply(z);
            (a, T::one() - a * a)
        }
        Activation::Sigmoid => {
            let s = act.apply(z);
            (s, s * (T::one() - s))
        }
        Activation::Identity => (z, T::one()),
        _ => (act.apply(z), act.derivative(z)),
    }
}

/// Activation of one block: `z` (`rows × mid`) → `a` (`rows × c`) and `gain` (`rows × mid`).
fn activate_block<T: Real>(
    act: Activation,
    gated: bool,
    c: usize,
    z: &[T],
    a: &mut [T],
    gain: &mut [T],
    rows: usize,
) {
    if gated {
        let mid = 2 * c;
        for r in 0..rows {
            let zr = &z[r * mid..(r + 1) * mid];
            let ar = &mut a[r * c..(r + 1) * c];
            let (g1, g2) = gain[r * mid..(r + 1) * mid].split_at_mut(c);
            for i in 0..c {
                let (v, dv) = value_and_slope(act, zr[i]);
                let s = sigmoid(zr[c + i]);
                ar[i] = v * s;
                g1[i] = dv * s;
                g2[i] = v * s * (T::one() - s);
            }
        }
    } else {
        // One match per block, so that each loop is a straight per-element kernel.
        let (z, a, gain) = (&z[..rows * c], &mut a[..rows * c], &mut gain[..rows * c]);
        macro_rules! run {
            ($f:expr) => {
                for ((zv, av), gv) in z.iter().zip(a.iter_mut()).zip(gain.iter_mut()) {
                    let (v, d) = $f(*zv);
                    *av = v;
                    *gv = d;
                }
            };
        }
        match act {
            Activation::Tanh => tanh_block(z, a, gain),
            Activation::Identity => run!(|x: T| (x, T::one())),
            other => run!(|x: T| value_and_slope(other, x)),
        }
    }
}

/// Tanh of a block and its derivative `1 - a²`, computed in f64.
fn tanh_block<T: Real>(z: &[T], a: &mut [T], gain: &mut [T]) {
    #[inline(always)]
    fn body<T: Real>(z: &[T], a: &mut [T], gain: &mut [T]) {
        for ((zv, av), gv) in z.iter().zip(a.iter_mut()).zip(gain.iter_mut()) {
            let t = super::fastmath::tanh::<f64, false>(zv.to_f64_exact());
            *av = T::from_f64_lossy(t);
            *gv = T::from_f64_lossy(1.0 - t * t);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn wide<T: Real>(z: &[T], a: &mut [T], gain: &mut [T]) {
            body(z, a, gain)
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features `wide` is compiled for.
            return unsafe { wide(z, a, gain) };
        }
    }
    body(z, a, gain)
}

impl<T: Real> WaveNetTrainer<T> {
    /// Whether the trainer can differentiate `net`; otherwise an error naming the first
    /// feature it cannot.
    pub fn supports(net: &WaveNet) -> Result<(), String> {
        net.trainer_layout()
            .map_err(|e| format!("fine-tuning does not support the WaveNet feature {e}"))
    }

    /// Packs the weights of `net` (which must pass [`WaveNet::validate`]).
    pub fn new(net: &WaveNet) -> Self {
        if let Err(e) = net.validate() {
            panic!("WaveNetTrainer::new: invalid WaveNet: {e}");
        }
        let mut at = 0;
        let mut start = 0;
        let mut arrays = Vec::with_capacity(net.layer_arrays.len());
        if let Err(e) = net.trainer_layout() {
            panic!("WaveNetTrainer::new: unsupported WaveNet feature {e} (check WaveNetTrainer::supports first)");
        }
        for a in &net.layer_arrays {
            let (activation, gated) = a.trainer_layout().expect("checked above");
            let rechannel = TConv::new(&a.rechannel, &mut at);
            let array_start = start;
            let layers = a
                .layers
                .iter()
                .map(|l| {
                    let conv = TConv::new(&l.conv, &mut at);
                    let mixer = TConv::new(&l.input_mixer, &mut at);
                    let one_by_one =
                        TConv::new(l.one_by_one.as_ref().expect("classic layout"), &mut at);
                    let layer = TLayer {
                        start,
                        conv,
                        mixer,
                        one_by_one,
                    };
                    start += layer.conv.history();
                    layer
                })
                .collect();
            let head_rechannel = TConv::new(&a.head_rechannel, &mut at);
            arrays.push(TArray {
                in_ch: a.input_size,
                channels: a.channels,
                mid: if gated { 2 * a.channels } else { a.channels },
                activation,
                gated,
                rechannel,
                layers,
                head_ctx: head_rechannel.history(),
                head_rechannel,
                start: array_start,
            });
        }
        let post = net.head.as_ref().map(|h| {
            (
                h.activation,
                h.layers
                    .iter()
                    .map(|c| TConv::new(c, &mut at))
                    .collect::<Vec<_>>(),
            )
        });
        let head_scale_off = at;
        at += 1;
        debug_assert_eq!(at, net.num_params());
        // A convolutional head (single layer array only, see `trainer_layout`) reads its
        // history of the head sum before the first output.
        let context = start + arrays.last().map_or(0, |a| a.head_ctx);
        debug_assert_eq!(context + 1, net.receptive_field());
        WaveNetTrainer {
            arrays,
            post,
            head_scale: T::from_f64_lossy(net.head_scale[0]),
            head_scale_off,
            num_params: at,
            context,
        }
    }

    /// Number of parameters (the length of the gradient).
    pub fn num_params(&self) -> usize {
        self.num_params
    }

    /// Input samples needed before the first output: `receptive_field - 1`.
    pub fn context(&self) -> usize {
        self.context
    }

    /// An empty tape (sized by the first [`WaveNetTrainer::forward`]).
    pub fn tape(&self) -> WaveNetTape<T> {
        WaveNetTape::default()
    }

    /// Floating-point operations of the matrix products of one forward plus backward pass
    /// over `n` outputs (2 per multiply-add; elementwise work not counted).
    pub fn flops(&self, n: usize) -> f64 {
        let len = |s: usize| (n + self.context - s) as f64;
        let mut macs = 0.0;
        for (ai, a) in self.arrays.iter().enumerate() {
            let (c, m) = (a.channels as f64, a.mid as f64);
            // Rechannel: forward, weight gradient, input gradient (not for the model input).
            let r = len(a.start) * a.in_ch as f64 * c;
            macs += if ai == 0 { 2.0 * r } else { 3.0 * r };
            for l in &a.layers {
                let t = len(l.start + l.conv.history());
                let k = l.conv.kernel as f64;
                // conv and 1×1: forward, dW, dx; mixer: forward, dW.
                macs += 3.0 * t * (k * c * m + c * c) + 2.0 * t * m;
            }
            macs += 3.0 * (n * a.head_rechannel.kernel) as f64 * c * a.head_rechannel.cout as f64;
        }
        2.0 * macs
    }

    fn ensure(&self, tape: &mut WaveNetTape<T>, n: usize) {
        let total = n + self.context;
        tape.n = n;
        resize(&mut tape.x, total);
        tape.arrays.resize_with(self.arrays.len(), Default::default);
        let mut max_c = 1;
        let mut max_mid = 1;
        let mut max_len = 0;
        for (a, at) in self.arrays.iter().zip(&mut tape.arrays) {
            let c = a.channels;
            max_c = max_c.max(c).max(a.in_ch).max(a.head_rechannel.cout);
            max_mid = max_mid.max(a.mid);
            max_len = max_len.max(total - a.start);
            let nl = a.layers.len();
            at.res.resize_with(nl + 1, Vec::new);
            at.act.resize_with(nl, Vec::new);
            at.gain.resize_with(nl, Vec::new);
            for (li, l) in a.layers.iter().enumerate() {
                let out_len = total - l.start - l.conv.history();
                resize(&mut at.res[li], (total - l.start) * c);
                resize(&mut at.act[li], out_len * c);
                resize(&mut at.gain[li], out_len * a.mid);
            }
            resize(&mut at.res[nl], (total - a.end()) * c);
            resize(&mut at.head, (n + a.head_ctx) * c);
        }
        let last_w = self.arrays.last().map_or(1, |a| a.head_rechannel.cout);
        resize(&mut tape.head_out, n * max_c);
        let mut widths = vec![last_w];
        if let Some((_, convs)) = &self.post {
            widths.extend(convs.iter().map(|c| c.cout));
        }
        let max_w = widths.iter().copied().max().unwrap_or(1);
        tape.post.resize_with(widths.len(), Vec::new);
        for (p, &w) in tape.post.iter_mut().zip(&widths) {
            resize(p, n * w);
        }
        resize(&mut tape.z, BLOCK * max_mid);
        let s = tape.scratch.get_mut();
        for d in &mut s.dres {
            resize(d, max_len * max_c);
        }
        let head_ctx = self.arrays.iter().map(|a| a.head_ctx).max().unwrap_or(0);
        resize(&mut s.dhead, (n + head_ctx) * max_c);
        resize(&mut s.dhead_out, n * max_c);
        resize(&mut s.da, BLOCK * max_c);
        resize(&mut s.dz, BLOCK * max_mid);
        for d in &mut s.dpost {
            resize(d, n * max_w);
        }
        resize(&mut s.vpost, n * max_w);
    }

    /// Runs the network on `x` (`y.len() + context()` samples) into `y`, recording the tape.
    pub fn forward(&self, x: &[T], tape: &mut WaveNetTape<T>, y: &mut [T]) {
        let n = y.len();
        let total = n + self.context;
        assert_eq!(
            x.len(),
            total,
            "WaveNetTrainer::forward: x must have y.len() + context() samples"
        );
        self.ensure(tape, n);
        tape.x.copy_from_slice(x);
        let ctx = self.context;
        let WaveNetTape {
            x,
            arrays: tapes,
            head_out,
            post,
            z: zbuf,
            scratch,
            ..
        } = tape;
        let vpost = &mut scratch.get_mut().vpost;
        let x = &x[..];
        let last = self.arrays.len() - 1;
        for ai in 0..self.arrays.len() {
            let a = &self.arrays[ai];
            let c = a.channels;
            let mid = a.mid;
            let (done, rest) = tapes.split_at_mut(ai);
            let at = &mut rest[0];
            // R₀ = rechannel(input): the model input, or the previous array's residual output.
            let src: &[T] = if ai == 0 {
                x
            } else {
                &done[ai - 1].res[self.arrays[ai - 1].layers.len()]
            };
            a.rechannel.conv(src, total - a.start, &mut at.res[0]);
            // The head sum starts from the previous array's head output.
            if ai == 0 {
                at.head.iter_mut().for_each(|v| *v = T::zero());
            } else {
                at.head.copy_from_slice(&head_out[..n * c]);
            }
            let nl = a.layers.len();
            for (li, l) in a.layers.iter().enumerate() {
                let hist = l.conv.history();
                let (k_n, d) = (l.conv.kernel, l.conv.dilation);
                let out_start = l.start + hist;
                let out_len = total - out_start;
                // The last layer's residual output of the last array feeds nothing.
                let residual = !(ai == last && li + 1 == nl);
                let (ins, outs) = at.res.split_at_mut(li + 1);
                let rin = &ins[li][..];
                let rout = &mut outs[0][..];
                let abuf = &mut at.act[li][..];
                let gbuf = &mut at.gain[li][..];
                let mut r0 = 0;
                while r0 < out_len {
                    let rows = BLOCK.min(out_len - r0);
                    let z = &mut zbuf[..rows * mid];
                    fill_bias(z, rows, mid, l.conv.b.as_deref());
                    for k in 0..k_n {
                        let row = r0 + hist - (k_n - 1 - k) * d;
                        gemm(
                            rows,
                            c,
                            mid,
                            &rin[row * c..],
                            c,
                            1,
                            &l.conv.w[k..],
                            k_n,
                            c * k_n,
                            z,
                            mid,
                            1,
                        );
                    }
                    // Input mixer (condition = the mono model input).
                    let wm = &l.mixer.w;
                    for (r, zr) in z.chunks_exact_mut(mid).enumerate() {
                        let xv = x[out_start + r0 + r];
                        for (zv, &w) in zr.iter_mut().zip(wm) {
                            *zv += w * xv;
                        }
                    }
                    let ab = &mut abuf[r0 * c..(r0 + rows) * c];
                    activate_block(
                        a.activation,
                        a.gated,
                        c,
                        z,
                        ab,
                        &mut gbuf[r0 * mid..(r0 + rows) * mid],
                        rows,
                    );
                    if residual {
                        let ro = &mut rout[r0 * c..(r0 + rows) * c];
                        ro.copy_from_slice(&rin[(r0 + hist) * c..(r0 + hist + rows) * c]);
                        if let Some(b) = &l.one_by_one.b {
                            ro.chunks_exact_mut(c)
                                .for_each(|o| o.iter_mut().zip(b).for_each(|(v, &bv)| *v += bv));
                        }
                        gemm(rows, c, c, ab, c, 1, &l.one_by_one.w, 1, c, ro, c, 1);
                    }
                    // Head sum over the frames that are outputs (and the head's history).
                    let hs = ctx - a.head_ctx;
                    let first = (out_start + r0).max(hs);
                    let end = out_start + r0 + rows;
                    if first < end {
                        let src = &ab[(first - out_start - r0) * c..];
                        let dst = &mut at.head[(first - hs) * c..(end - hs) * c];
                        dst.iter_mut().zip(src).for_each(|(h, &v)| *h += v);
                    }
                    r0 += rows;
                }
            }
            let hw = a.head_rechannel.cout;
            a.head_rechannel.conv(&at.head, n, &mut head_out[..n * hw]);
        }
        // Output: head_scale · head, then the optional post-head.
        let hw = self.arrays[last].head_rechannel.cout;
        for (p, &h) in post[0].iter_mut().zip(&head_out[..n * hw]) {
            *p = self.head_scale * h;
        }
        if let Some((act, convs)) = &self.post {
            for (j, conv) in convs.iter().enumerate() {
                let (before, after) = post.split_at_mut(j + 1);
                let v = &mut vpost[..before[j].len()];
                v.copy_from_slice(&before[j]);
                act.apply_slice(v);
                conv.conv(v, n, &mut after[0]);
            }
        }
        y.copy_from_slice(&post[post.len() - 1][..n]);
    }

    /// Accumulates into `grad` (canonical parameter order, `num_params()` values) the gradient
    /// of a loss whose gradient with respect to the outputs of the last
    /// [`WaveNetTrainer::forward`] on `tape` is `dy`.
    pub fn backward(&self, tape: &WaveNetTape<T>, dy: &[T], grad: &mut [T]) {
        let n = tape.n;
        assert_eq!(dy.len(), n, "WaveNetTrainer::backward: dy length");
        assert_eq!(
            grad.len(),
            self.num_params,
            "WaveNetTrainer::backward: grad length"
        );
        assert_eq!(
            tape.arrays.len(),
            self.arrays.len(),
            "tape from another network"
        );
        let total = n + self.context;
        let ctx = self.context;
        let x = &tape.x[..];
        let mut guard = tape.scratch.borrow_mut();
        let Scratch {
            dres,
            dhead,
            dhead_out,
            da: dabuf,
            dz: dzbuf,
            dpost,
            vpost,
        } = &mut *guard;
        let last = self.arrays.len() - 1;
        let hw = self.arrays[last].head_rechannel.cout;

        // Post-head, in reverse: du_j = (du_{j+1} W_j) ⊙ act'(u_j).
        let [dp_a, dp_b] = dpost;
        dp_a[..n].copy_from_slice(dy);
        if let Some((act, convs)) = &self.post {
            for (j, conv) in convs.iter().enumerate().rev() {
                let u = &tape.post[j];
                let v = &mut vpost[..u.len()];
                v.copy_from_slice(u);
                act.apply_slice(v);
                let dv = &mut dp_b[..u.len()];
                dv.iter_mut().for_each(|e| *e = T::zero());
                conv.conv_backward(&dp_a[..n * conv.cout], v, n, grad, Some(dv));
                for (e, &uv) in dv.iter_mut().zip(u.iter()) {
                    *e *= act.derivative(uv);
                }
                std::mem::swap(dp_a, dp_b);
            }
        }
        // head_scale and the last head output.
        let du0 = &dp_a[..n * hw];
        let mut gs = T::zero();
        for (&g, &h) in du0.iter().zip(&tape.head_out[..n * hw]) {
            gs += g * h;
        }
        grad[self.head_scale_off] += gs;
        for (o, &g) in dhead_out[..n * hw].iter_mut().zip(du0) {
            *o = self.head_scale * g;
        }

        let [dcur, dnext] = dres;
        for ai in (0..self.arrays.len()).rev() {
            let a = &self.arrays[ai];
            let at = &tape.arrays[ai];
            let c = a.channels;
            let mid = a.mid;
            let hw = a.head_rechannel.cout;
            // head_rechannel: dW += dHOᵀ H, dH = dHO W.
            let hs = ctx - a.head_ctx;
            let dh = &mut dhead[..(n + a.head_ctx) * c];
            dh.iter_mut().for_each(|v| *v = T::zero());
            a.head_rechannel
                .conv_backward(&dhead_out[..n * hw], &at.head, n, grad, Some(dh));
            let dh = &dhead[..(n + a.head_ctx) * c];
            let nl = a.layers.len();
            // dcur holds dR for the array's residual output (from the next array), or
            // nothing for the last array.
            for (li, l) in a.layers.iter().enumerate().rev() {
                let hist = l.conv.history();
                let (k_n, d) = (l.conv.kernel, l.conv.dilation);
                let out_start = l.start + hist;
                let out_len = total - out_start;
                let residual = !(ai == last && li + 1 == nl);
                let rin = &at.res[li][..];
                let abuf = &at.act[li][..];
                let gbuf = &at.gain[li][..];
                // dR_l = dR_{l+1} (identity path) + the taps' scatter, added below.
                let din = &mut dnext[..(total - l.start) * c];
                din[..hist * c].iter_mut().for_each(|v| *v = T::zero());
                if residual {
                    din[hist * c..].copy_from_slice(&dcur[..out_len * c]);
                } else {
                    din[hist * c..].iter_mut().for_each(|v| *v = T::zero());
                }
                let dout = &dcur[..if residual { out_len * c } else { 0 }];
                let mut r0 = 0;
                while r0 < out_len {
                    let rows = BLOCK.min(out_len - r0);
                    let ab = &abuf[r0 * c..(r0 + rows) * c];
                    let da = &mut dabuf[..rows * c];
                    da.iter_mut().for_each(|v| *v = T::zero());
                    // Head path: the frames that are outputs (and the head's history).
                    let first = (out_start + r0).max(hs);
                    let end = out_start + r0 + rows;
                    if first < end {
                        let dst = &mut da[(first - out_start - r0) * c..];
                        let src = &dh[(first - hs) * c..(end - hs) * c];
                        dst.iter_mut().zip(src).for_each(|(v, &g)| *v = g);
                    }
                    if residual {
                        let dob = &dout[r0 * c..(r0 + rows) * c];
                        l.one_by_one.conv_backward(dob, ab, rows, grad, Some(da));
                    }
                    // dz = da ⊙ ∂a/∂z.
                    let dz = &mut dzbuf[..rows * mid];
                    let gb = &gbuf[r0 * mid..(r0 + rows) * mid];
                    if a.gated {
                        for r in 0..rows {
                            for i in 0..c {
                                let g = da[r * c + i];
                                dz[r * mid + i] = g * gb[r * mid + i];
                                dz[r * mid + c + i] = g * gb[r * mid + c + i];
                            }
                        }
                    } else {
                        for ((o, &g), &s) in dz.iter_mut().zip(da.iter()).zip(gb) {
                            *o = g * s;
                        }
                    }
                    if let Some(bo) = l.conv.b_off {
                        add_col_sums(dz, rows, mid, &mut grad[bo..bo + mid]);
                    }
                    // Input mixer: dW_mix += Σ_t dz[t] x[t].
                    let mo = l.mixer.w_off;
                    for (r, dzr) in dz.chunks_exact(mid).enumerate() {
                        let xv = x[out_start + r0 + r];
                        for (gv, &g) in grad[mo..mo + mid].iter_mut().zip(dzr) {
                            *gv += g * xv;
                        }
                    }
                    for k in 0..k_n {
                        let row = r0 + hist - (k_n - 1 - k) * d;
                        // dW_k += dzᵀ R_l(shifted), written in place in [out][in][tap] order.
                        gemm(
                            mid,
                            rows,
                            c,
                            dz,
                            1,
                            mid,
                            &rin[row * c..],
                            c,
                            1,
                            &mut grad[l.conv.w_off + k..],
                            c * k_n,
                            k_n,
                        );
                        // dR_l(shifted) += dz W_k.
                        gemm(
                            rows,
                            mid,
                            c,
                            dz,
                            mid,
                            1,
                            &l.conv.w[k..],
                            c * k_n,
                            k_n,
                            &mut din[row * c..],
                            c,
                            1,
                        );
                    }
                    r0 += rows;
                }
                std::mem::swap(dcur, dnext);
            }
            // dcur = dR₀. Rechannel: dW += dR₀ᵀ input; the previous array gets dR₀ W.
            let rows = total - a.start;
            if ai == 0 {
                a.rechannel
                    .conv_backward(&dcur[..rows * c], x, rows, grad, None);
            } else {
                let prev = &tape.arrays[ai - 1];
                let src = &prev.res[self.arrays[ai - 1].layers.len()];
                let dsrc = &mut dnext[..rows * a.in_ch];
                dsrc.iter_mut().for_each(|v| *v = T::zero());
                a.rechannel
                    .conv_backward(&dcur[..rows * c], src, rows, grad, Some(dsrc));
                std::mem::swap(dcur, dnext);
                // The previous array's head output started this array's head sum.
                dhead_out[..n * c].copy_from_slice(&dhead[..n * c]);
            }
        }
    }
}
