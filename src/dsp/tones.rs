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

/// How the training tones' amplitudes are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum ToneLevels {
    /// The paper's eq. 4: `A ~ U(0, 1)`, linear (half the tones above -6 dBFS, 1.6 % below
    /// -36 dBFS).
    #[default]
    Uniform,
    /// The level in dB uniform: `A = 10^(L / 20)`, `L ~ U(min_db, max_db)`, so that quiet
    /// tones are trained as often as loud ones (the evaluation's -36 dBFS tones are otherwise
    /// almost never seen).
    LogUniform { min_db: f64, max_db: f64 },
}

impl ToneLevels {
    /// The amplitude for a uniform draw `u` in `[0, 1)`.
    fn amplitude(&self, u: f64) -> f64 {
        match *self {
            ToneLevels::Uniform => u,
            ToneLevels::LogUniform { min_db, max_db } => {
                10f64.powf((min_db + u * (max_db - min_db)) / 20.0)
            }
        }
    }

    /// Checks the range; the message states the accepted one.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            ToneLevels::Uniform => Ok(()),
            ToneLevels::LogUniform { min_db, max_db } => {
                if min_db.is_finite() && max_db.is_finite() && min_db < max_db && max_db <= 0.0 {
                    Ok(())
                } else {
                    Err(format!(
                        "tone levels from {min_db} to {max_db} dBFS: give finite levels with \
                         min < max <= 0 dBFS"
                    ))
                }
            }
        }
    }
}

/// How the training tones' MIDI notes are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum ToneNotes {
    /// The paper's eq. 5: `l ~ U(21, 127)`.
    #[default]
    Uniform,
    /// A mixture: a share `fraction` of the tones from `U(from_midi, to_midi)`, the rest from
    /// the paper's range. The high notes of the sine set make most of its aliasing (for the
    /// Broadcast LSTM, MIDI 99–108 make 94 % of the mean linear NMR-S), and eq. 5 draws them
    /// for about 8 % of the tones.
    Focus {
        from_midi: f64,
        to_midi: f64,
        fraction: f64,
    },
}

impl ToneNotes {
    /// Checks the range; the message states the accepted one.
    pub fn check(&self) -> Result<(), String> {
        match *self {
            ToneNotes::Uniform => Ok(()),
            ToneNotes::Focus {
                from_midi,
                to_midi,
                fraction,
            } => {
                if from_midi.is_finite()
                    && to_midi.is_finite()
                    && (21.0..to_midi).contains(&from_midi)
                    && to_midi <= 127.0
                    && (0.0..=1.0).contains(&fraction)
                {
                    Ok(())
                } else {
                    Err(format!(
                        "focus notes {from_midi} to {to_midi}, share {fraction}: give MIDI notes \
                         21 <= from < to <= 127 and a share from 0 to 1"
                    ))
                }
            }
        }
    }

    /// The note for a uniform draw `u` in `[0, 1)` over the range `lo..hi`: the inverse of the
    /// mixture's piecewise-linear distribution function (one draw per note, whatever the
    /// distribution, so that a stream's position stays its tone count).
    fn note(&self, u: f64, lo: f64, hi: f64) -> f64 {
        let ToneNotes::Focus {
            from_midi,
            to_midi,
            fraction,
        } = *self
        else {
            return lo + u * (hi - lo);
        };
        let (a, b) = (from_midi.clamp(lo, hi), to_midi.clamp(lo, hi));
        if b <= a {
            return lo + u * (hi - lo);
        }
        // Density: (1 - fraction) / (hi - lo) everywhere, plus fraction / (b - a) on [a, b).
        let base = (1.0 - fraction) / (hi - lo);
        let segments = [
            (lo, a, base),
            (a, b, base + fraction / (b - a)),
            (b, hi, base),
        ];
        let mut left = u;
        for (x0, x1, d) in segments {
            let mass = d * (x1 - x0);
            if left < mass && d > 0.0 {
                return x0 + left / d;
            }
            left -= mass;
        }
        hi - f64::EPSILON * hi.abs()
    }
}

/// Seeded generator of training tones (eqs. 4–5): `A ~ U(0, 1)` (or another
/// [`ToneLevels`]), `phi ~ U(0, 2 pi)`, `l ~ U(21, 127)` real-valued,
/// `f0 = 440 * 2^((l - 69)/12)`. Every tone takes the same three draws whatever the level
/// distribution, so a stream's position is its tone count.
#[derive(Clone, Debug)]
pub struct ToneGenerator {
    rng: ChaCha8Rng,
    /// Range of the uniform MIDI note `l` (eq. 5: 21 to 127).
    midi: (f64, f64),
    levels: ToneLevels,
    notes: ToneNotes,
}

impl ToneGenerator {
    /// A generator with the given seed.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            midi: (21.0, 127.0),
            levels: ToneLevels::Uniform,
            notes: ToneNotes::Uniform,
        }
    }

    /// A generator continuing from `rng`'s position (to resume a run).
    pub fn from_rng(rng: ChaCha8Rng) -> Self {
        Self {
            rng,
            midi: (21.0, 127.0),
            levels: ToneLevels::Uniform,
            notes: ToneNotes::Uniform,
        }
    }

    /// Draws the amplitudes from `levels` instead of eq. 4's `U(0, 1)`.
    pub fn with_levels(mut self, levels: ToneLevels) -> Self {
        self.levels = levels;
        self
    }

    /// Draws the notes from `notes` instead of eq. 5's `U(21, 127)`.
    pub fn with_notes(mut self, notes: ToneNotes) -> Self {
        self.notes = notes;
        self
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
        let amplitude = self.levels.amplitude(self.rng.gen_range(0.0..1.0));
        let phase = self.rng.gen_range(0.0..2.0 * PI);
        let l = match self.notes {
            // The paper's draw, as it always was (seeded runs stay bit for bit the same).
            ToneNotes::Uniform => self.rng.gen_range(self.midi.0..self.midi.1),
            notes => notes.note(self.rng.gen_range(0.0..1.0), self.midi.0, self.midi.1),
        };
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

impl EvalTone {
    /// A number identifying the tone within the sine set, independent of which other tones are
    /// measured: `midi * 10000 + round(-100 dbfs)` (the noise stream of the tone).
    pub fn id(&self) -> u64 {
        self.midi as u64 * 10_000 + (-100.0 * self.dbfs).round().max(0.0) as u64
    }

    /// `len` samples of the tone at `fs`, plus `noise` when given (stream [`EvalTone::id`]).
    pub fn render(&self, fs: f64, len: usize, noise: Option<&InputNoise>) -> Vec<f64> {
        let mut x = self.tone.render(fs, len);
        if let Some(n) = noise {
            n.add_to(&mut x, self.id());
        }
        x
    }
}

/// A seeded white Gaussian noise floor added to input tones. The paper's sine tones were
/// recorded signals (their evaluation loads recorded inputs), whose noise floor is about
/// -102 dBFS RMS, flat above 200 Hz: measured on the quiet passages of the authors' recorded DI
/// clips; a model's quiet-tone aliasing metrics depend on it (see `eval::table1`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InputNoise {
    /// RMS of the noise (linear, full scale 1).
    pub rms: f64,
    /// Seed: with a stream number, fixes the noise of one tone on every platform.
    pub seed: u64,
}

impl InputNoise {
    /// Noise of RMS `dbfs` dB re full scale (`10^(dbfs/20)`), seeded.
    pub fn from_dbfs(dbfs: f64, seed: u64) -> Self {
        Self {
            rms: 10f64.powf(dbfs / 20.0),
            seed,
        }
    }

    /// Adds the noise of stream `stream` (one per tone) to `x`: ChaCha8 seeded with `seed`,
    /// the stream selected with `set_stream`, normal deviates by the Box–Muller transform.
    pub fn add_to(&self, x: &mut [f64], stream: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(stream);
        for pair in x.chunks_mut(2) {
            // u1 in (0, 1] keeps the logarithm finite.
            let u1: f64 = 1.0 - rng.gen::<f64>();
            let u2: f64 = rng.gen::<f64>();
            let r = self.rms * (-2.0 * u1.ln()).sqrt();
            let (s, c) = (2.0 * PI * u2).sin_cos();
            pair[0] += r * c;
            if let Some(v) = pair.get_mut(1) {
                *v += r * s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Focused notes: the quantile inverts the mixture's distribution function exactly
    /// (`F(note(u)) = u` at breakpoints and between them, F in closed form), and 100,000
    /// draws put the closed-form share in the focus range (0.5 + 0.5 * 12.5 / 106 = 0.5590,
    /// within 0.005, over 3 standard errors) while the amplitudes and phases stay the
    /// paper generator's for the same seed.
    #[test]
    fn focused_notes_follow_the_mixture() {
        let focus = ToneNotes::Focus {
            from_midi: 96.0,
            to_midi: 108.5,
            fraction: 0.5,
        };
        let (lo, hi) = (21.0, 127.0);
        let cdf = |l: f64| {
            let base = 0.5 * (l - lo) / (hi - lo);
            base + 0.5 * ((l.clamp(96.0, 108.5) - 96.0) / 12.5)
        };
        for k in 0..=1000 {
            let u = k as f64 / 1000.0 * (1.0 - 1e-12);
            let l = focus.note(u, lo, hi);
            assert!((lo..hi).contains(&l), "{u}: {l}");
            assert!((cdf(l) - u).abs() < 1e-12, "{u}: F({l}) = {}", cdf(l));
        }
        let mut paper = ToneGenerator::new(3);
        let mut g = ToneGenerator::new(3).with_notes(focus);
        let n = 100_000;
        let mut inside = 0;
        for _ in 0..n {
            let (p, t) = (paper.next_tone(), g.next_tone());
            assert_eq!((p.amplitude, p.phase), (t.amplitude, t.phase));
            let l = 69.0 + 12.0 * (t.f0 / 440.0).log2();
            inside += usize::from((96.0..108.5).contains(&l));
        }
        let share = inside as f64 / n as f64;
        assert!(
            (share - (0.5 + 0.5 * 12.5 / 106.0)).abs() < 0.005,
            "{share}"
        );
        assert!(focus.check().is_ok());
        assert!(ToneNotes::Focus {
            from_midi: 100.0,
            to_midi: 90.0,
            fraction: 0.5
        }
        .check()
        .is_err());
    }

    /// Log-uniform levels: the dB values of 20,000 draws are uniform on [-40, 0] (their mean
    /// -20 within 0.3 dB, 4.5 standard errors of the mean of U(-40, 0); a quarter below -30
    /// within 1.5 %), the phases and notes are the paper generator's draws for the same seed
    /// (the stream advances by the same three draws per tone) and the amplitude is the same
    /// uniform number mapped through 10^(L/20).
    #[test]
    fn log_uniform_levels_keep_the_stream_and_spread_the_levels() {
        let levels = ToneLevels::LogUniform {
            min_db: -40.0,
            max_db: 0.0,
        };
        let mut paper = ToneGenerator::new(7);
        let mut log = ToneGenerator::new(7).with_levels(levels);
        let n = 20_000;
        let (mut sum_db, mut below) = (0.0, 0);
        for _ in 0..n {
            let (a, b) = (paper.next_tone(), log.next_tone());
            assert_eq!((a.f0, a.phase), (b.f0, b.phase));
            let db = 20.0 * b.amplitude.log10();
            assert!(
                (db - (-40.0 + 40.0 * a.amplitude)).abs() < 1e-9,
                "{db} vs {}",
                a.amplitude
            );
            sum_db += db;
            below += usize::from(db < -30.0);
        }
        assert!((sum_db / n as f64 + 20.0).abs() < 0.3);
        assert!((below as f64 / n as f64 - 0.25).abs() < 0.015);
        assert!(ToneLevels::LogUniform {
            min_db: -10.0,
            max_db: 3.0
        }
        .check()
        .is_err());
        assert!(ToneLevels::LogUniform {
            min_db: -10.0,
            max_db: -20.0
        }
        .check()
        .is_err());
        assert!(levels.check().is_ok());
    }

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

    /// The noise floor is seeded per tone, has the requested RMS (within 1 % on 52,920
    /// samples: the sample RMS of Gaussian noise has a relative spread of 1/sqrt(2n) = 0.3 %),
    /// zero mean, a Gaussian kurtosis (3 within 0.1) and no correlation between neighbours.
    #[test]
    fn input_noise_is_seeded_white_and_gaussian() {
        let s = eval_sine_set();
        let noise = InputNoise::from_dbfs(-102.0, 1);
        let fs = 44_100.0;
        let a = s[10].render(fs, 52_920, Some(&noise));
        assert_eq!(a, s[10].render(fs, 52_920, Some(&noise)));
        assert_ne!(a, s[11].render(fs, 52_920, Some(&noise)));
        assert_ne!(
            a,
            s[10].render(fs, 52_920, Some(&InputNoise::from_dbfs(-102.0, 2)))
        );
        let clean = s[10].render(fs, 52_920, None);
        let n: Vec<f64> = a.iter().zip(&clean).map(|(x, c)| x - c).collect();
        let len = n.len() as f64;
        let mean = n.iter().sum::<f64>() / len;
        let var = n.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / len;
        let rms_db = 10.0 * var.log10();
        assert!((rms_db + 102.0).abs() < 0.09, "RMS {rms_db} dBFS");
        assert!(mean.abs() < 5.0 * noise.rms / len.sqrt(), "mean {mean}");
        let kurt = n.iter().map(|v| (v - mean).powi(4)).sum::<f64>() / len / (var * var);
        assert!((kurt - 3.0).abs() < 0.1, "kurtosis {kurt}");
        let lag1 = n.windows(2).map(|w| w[0] * w[1]).sum::<f64>() / len / var;
        assert!(lag1.abs() < 0.02, "lag-1 correlation {lag1}");
        let ids: std::collections::HashSet<u64> = s.iter().map(|t| t.id()).collect();
        assert_eq!(ids.len(), s.len());
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
