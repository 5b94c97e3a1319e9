//! NAM `Linear`: a single FIR filter (a `Conv1d(1, 1, receptive_field)` in PyTorch, i.e. a
//! correlation: `y[t] = b + Σ_k w[k] x[t - (N-1) + k]`).

use super::{cast_vec, Processor, Real};

/// A plain FIR model.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// Taps in PyTorch order (`weights[N-1]` multiplies the newest sample).
    pub weights: Vec<f64>,
    /// Optional bias (one value).
    pub bias: Option<Vec<f64>>,
}

impl Linear {
    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.weights.len() + self.bias.as_ref().map_or(0, Vec::len)
    }

    /// Visits parameters in canonical order: weights, bias.
    pub fn visit_params(&mut self, f: &mut dyn FnMut(&mut Vec<f64>)) {
        f(&mut self.weights);
        if let Some(b) = &mut self.bias {
            f(b);
        }
    }
}

/// Samples per inner block: the buffer holds the history plus one block, sized once, so that
/// processing allocates nothing whatever the caller's block sizes.
const BLOCK: usize = 256;

/// Streaming FIR evaluation with a history of the last `N - 1` inputs.
pub struct LinearProcessor<T: Real> {
    w: Vec<T>,
    b: T,
    /// The last `N - 1` inputs, oldest first, followed by room for one block.
    buf: Vec<T>,
}

impl<T: Real> LinearProcessor<T> {
    pub fn new(m: &Linear) -> Self {
        let hist = m.weights.len().saturating_sub(1);
        let mut buf = Vec::with_capacity(hist + BLOCK);
        buf.resize(hist, T::zero());
        LinearProcessor {
            w: cast_vec(&m.weights),
            b: T::from_f64_lossy(m.bias.as_ref().map_or(0.0, |b| b[0])),
            buf,
        }
    }
}

impl<T: Real> Processor<T> for LinearProcessor<T> {
    fn process(&mut self, input: &[T], output: &mut [T]) {
        assert_eq!(input.len(), output.len(), "input and output lengths differ");
        let hist = self.w.len().saturating_sub(1);
        for (xs, ys) in input.chunks(BLOCK).zip(output.chunks_mut(BLOCK)) {
            self.buf.extend_from_slice(xs);
            for (t, o) in ys.iter_mut().enumerate() {
                let window = &self.buf[t..t + self.w.len()];
                *o = self.b + window.iter().zip(&self.w).map(|(&x, &w)| x * w).sum::<T>();
            }
            let len = self.buf.len();
            self.buf.drain(..len - hist);
        }
    }

    fn reset(&mut self) {
        self.buf.iter_mut().for_each(|v| *v = T::zero());
    }
}
