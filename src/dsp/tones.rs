//! Input tones: the randomised training sines of paper eqs. 3–5 (spec sec. 1) and the
//! evaluation sine set of paper sec. 2.6 (spec sec. 7).
//!
//! The generator is a seeded ChaCha8 stream (`rand_chacha`), so a seed fixes an epoch's tones on
//! every platform.

use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::f64::consts::PI;

/// Frequency of a (real-valued) MIDI note: `440 * 2^((l - 69) / 12)` (eq. 5).
pub fn midi_to_hz(l: f64) -> f64 {
    440.0 * 2f64.powf((l - 69.0) / 12.0)
}

/// One sine tone `A sin(2 pi f0 n / fs + phi)` (eq. 3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tone {
    /// Fundamental frequency in Hz.
    pub f0: f64,
    /// Linear amplitude.
    pub amplitude: f64,
    /// Initial phase in radians.
    pub phase: f64,
}

impl Tone {
    /// `len` samples of the tone at sample rate `fs`.
    pub fn render(&self, fs: f64, len: usize) -> Vec<f64> {
        let mut out = vec![0.0; len];
        self.render_into(fs, &mut out);
        out
    }

    /// Writes the tone into `out` (the phase is reduced modulo one period per sample, so long
    /// tones keep full precision).
    pub fn render_into(&self, fs: f64, out: &mut [f64]) {
        let r = self.f0 / fs;
        for (n, o) in out.iter_mut().enumerate() {
            let cycles = (r * n as f64).fract();
            *o = self.amplitude * (2.0 * PI * cycles + self.phase).sin();
        }
    }
}

/// Seeded generator of training tones (eqs. 4–5): `A ~ U(0, 1)`, `phi ~ U(0, 2 pi)`,
/// `l ~ U(21, 127)` real-valued, `f0 = 440 * 2^((l - 69)/12)`.
#[derive(Clone, Debug)]
pub struct ToneGenerator {
    rng: ChaCha8Rng,
    /// Range of the uniform MIDI note `l` (eq. 5: 21 to 127).
    midi: (f64, f64),
}

impl ToneGenerator {
    /// A generator with the given seed.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            midi: (21.0, 127.0),
        }
    }

    /// A generator continuing from `rng`'s position (to resume a run).
    pub fn from_rng(rng: ChaCha8Rng) -> Self {
        Self {
            rng,
            midi: (21.0, 127.0),
        }
    }

    /// Keeps the notes below `max_hz` (for sample rates where eq. 5's upper note, 12.5 kHz,
    /// would be above Nyquist); the paper's range is kept where it fits.
    pub fn below(mut self, max_hz: f64) -> Self {
        let top = 69.0 + 12.0 * (max_hz / 440.0).log2();
        self.midi.1 = self.midi.1.min(top).max(self.midi.0 + 1.0);
        self
    }

    /// The underlying random stream (its position is saved in checkpoints).
    pub fn rng(&self) -> &ChaCha8Rng {
        &self.rng
    }

    /// The next random tone.
    pub fn next_tone(&mut self) -> Tone {
        let amplitude = self.rng.gen_range(0.0..1.0);
        let phase = self.rng.gen_range(0.0..2.0 * PI);
        let l = self.rng.gen_range(self.midi.0..self.midi.1);
        Tone {
            f0: midi_to_hz(l),
            amplitude,
            phase,
        }
    }

    /// The next `count` random tones.
    pub fn tones(&mut self, count: usize) -> Vec<Tone> {
        (0..count).map(|_| self.next_tone()).collect()
    }

    /// `count` random knob values `U(0, 1)` (the plugins' knob range) for a conditioned
    /// model, from the same stream, so that checkpoints capture them too.
    pub fn knobs(&mut self, count: usize) -> Vec<f64> {
        (0..count).map(|_| self.rng.gen_range(0.0..1.0)).collect()
    }
}

/// One tone of the evaluation sine set.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EvalTone {
    /// MIDI note number (21..=108).
    pub midi: u8,
    /// Level in dBFS (peak amplitude `10^(dbfs/20)`).
    pub dbfs: f64,
    /// The tone (zero phase).
    pub tone: Tone,
}

/// Levels of the evaluation sine set in dBFS.
pub const EVAL_LEVELS_DBFS: [f64; 3] = [-36.0, -18.0, -6.0];
/// Lowest sample rate at which the whole evaluation sine set (up to MIDI 108, 4186.01 Hz) lies
/// below Nyquist, rounded up to a round even number.
pub const EVAL_MIN_RATE: f64 = 8400.0;
/// Duration of every evaluation tone in seconds (the last second is analysed).
pub const EVAL_DURATION_S: f64 = 1.2;

/// The evaluation sine set (spec sec. 7): chromatic MIDI notes 21..=108 (27.5–4186 Hz), each at
/// -36, -18 and -6 dBFS, zero phase; 264 tones ordered by level, then note.
pub fn eval_sine_set() -> Vec<EvalTone> {
    let mut v = Vec::with_capacity(264);
    for &dbfs in &EVAL_LEVELS_DBFS {
        for midi in 21u8..=108 {
            v.push(EvalTone {
                midi,
                dbfs,
                tone: Tone {
                    f0: midi_to_hz(midi as f64),
                    amplitude: 10f64.powf(dbfs / 20.0),
                    phase: 0.0,
                },
            });
        }
    }
    v
}

/// Number of samples of an evaluation tone at `fs` (`round(1.2 fs)`).
pub fn eval_tone_len(fs: f64) -> usize {
    (EVAL_DURATION_S * fs).round() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eval_set_has_264_tones_with_the_right_frequencies() {
        let s = eval_sine_set();
        assert_eq!(s.len(), 264);
        assert!((s[0].tone.f0 - 27.5).abs() < 1e-12);
        assert!((s[87].tone.f0 - 4_186.009_044_809_578).abs() < 1e-9);
        assert!((s[48].tone.f0 - 440.0).abs() < 1e-12);
        assert!((s[0].tone.amplitude - 10f64.powf(-36.0 / 20.0)).abs() < 1e-15);
        assert_eq!(eval_tone_len(44_100.0), 52_920);
        let x = s[48].tone.render(44_100.0, 100);
        assert_eq!(x[0], 0.0);
        let expect = s[48].tone.amplitude * (2.0 * PI * 440.0 * 7.0 / 44_100.0).sin();
        assert!((x[7] - expect).abs() < 1e-15);
    }

    #[test]
    fn training_tones_are_seeded_and_in_range() {
        let a = ToneGenerator::new(7).tones(2000);
        let b = ToneGenerator::new(7).tones(2000);
        assert_eq!(a, b);
        assert_ne!(a, ToneGenerator::new(8).tones(2000));
        let (lo, hi) = (midi_to_hz(21.0), midi_to_hz(127.0));
        for t in &a {
            assert!((0.0..1.0).contains(&t.amplitude));
            assert!((0.0..2.0 * PI).contains(&t.phase));
            assert!(t.f0 >= lo && t.f0 < hi);
        }
        // Uniform in l: the mean note is close to 74 (std of the mean ~ 0.7).
        let mean_l: f64 = a
            .iter()
            .map(|t| 69.0 + 12.0 * (t.f0 / 440.0).log2())
            .sum::<f64>()
            / a.len() as f64;
        assert!((mean_l - 74.0).abs() < 3.0, "mean note {mean_l}");
    }
}
