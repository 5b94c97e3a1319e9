//! The built-in training signal of `dealias train`: seeded audio like the GuitarML training
//! file the paper pre-trained on (sec. 3.2: "chirps, noise bursts, and guitar and bass
//! playing"), for models of the reference devices.
//!
//! In this order, each part a fixed share of the length:
//! - 20 %: exponential sine sweeps from 20 Hz to 20 kHz (at most 0.45 fs), 2 s each, at
//!   levels from -40 to -1 dBFS, so that every level of the sine set (sec. 2.6) is covered;
//! - 15 %: noise bursts (white noise under an exponential decay, 50–500 ms, -40 to -3 dBFS,
//!   each followed by up to 200 ms of silence);
//! - 40 %: plucked guitar: single notes E2–E6 and strummed chords of 3–6 notes, peaks -30 to
//!   -3 dBFS;
//! - 25 %: plucked bass, E1–G3, darker and longer.
//!
//! The plucked strings are Karplus–Strong strings (Karplus & Strong, "Digital synthesis of
//! plucked-string and drum timbres", Computer Music Journal 7(2), 1983) with the extensions of
//! Jaffe & Smith (CMJ 7(2), 1983): a loop of a delay line and a two-point average, a loss factor
//! for the decay time, linear interpolation for fractional lengths, a one-pole low-pass on the
//! excitation for the pluck's brightness and a comb for the pick position. They are written
//! here because no crate synthesises them; the test checks their pitch.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

/// Shortest built-in signal: one sweep of each part needs a few seconds.
pub const MIN_SECONDS: f64 = 4.0;
/// Longest built-in signal (an hour).
pub const MAX_SECONDS: f64 = 3600.0;

fn db(x: f64) -> f64 {
    10f64.powf(x / 20.0)
}

/// The built-in training signal: `seconds` of audio at `fs` Hz from `seed` (peak below
/// 1.0, full scale).
pub fn training_signal(fs: f64, seconds: f64, seed: u64) -> Result<Vec<f64>> {
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds) {
        return Err(Error::InvalidArgument(format!(
            "the built-in training signal is {MIN_SECONDS}..={MAX_SECONDS} s long, not {seconds}"
        )));
    }
    if !(16_000.0..=384_000.0).contains(&fs) {
        return Err(Error::InvalidArgument(format!(
            "the built-in training signal is made at 16..=384 kHz, not {fs} Hz"
        )));
    }
    let n = (seconds * fs).round() as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let shares = [0.20, 0.15, 0.40, 0.25];
    let mut lens: Vec<usize> = shares.iter().map(|s| (s * n as f64) as usize).collect();
    lens[3] = n - lens[..3].iter().sum::<usize>();
    let mut out = Vec::with_capacity(n);
    out.extend(sweeps(fs, lens[0], &mut rng));
    out.extend(noise_bursts(fs, lens[1], &mut rng));
    out.extend(plucks(fs, lens[2], &GUITAR, &mut rng));
    out.extend(plucks(fs, lens[3], &BASS, &mut rng));
    Ok(out)
}

/// Seed of the built-in test clips: fixed, and not a seed `dealias train` uses by default, so
/// the clips are notes the built-in models were not trained on.
const TEST_CLIP_SEED: u64 = 23_943;
/// Length of each built-in test clip, seconds.
pub const TEST_CLIP_SECONDS: f64 = 5.0;

/// The built-in guitar-and-bass test clips for the G+B metrics when no recording is given
/// (paper sec. 2.6 uses a guitar and a bass DI clip): `("guitar", …)`, 5 s of plucked single
/// notes and chords E2–E6, and `("bass", …)`, 5 s of plucked bass notes E1–G3, at `fs` Hz,
/// the same for every call (peaks -30 to -3 dBFS, as the training signal's plucks).
pub fn test_clips(fs: f64) -> Result<[(&'static str, Vec<f64>); 2]> {
    // Any rate a model runs at: the top note (E6, 1.3 kHz) needs a loop of a few samples.
    if !(4_000.0..=384_000.0).contains(&fs) {
        return Err(Error::InvalidArgument(format!(
            "the built-in test clips are made at 4..=384 kHz, not {fs} Hz"
        )));
    }
    let n = (TEST_CLIP_SECONDS * fs).round() as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(TEST_CLIP_SEED);
    let guitar = plucks(fs, n, &GUITAR, &mut rng);
    let bass = plucks(fs, n, &BASS, &mut rng);
    Ok([("guitar", guitar), ("bass", bass)])
}

/// Exponential sweeps of 2 s (the last one shorter) at random levels.
fn sweeps(fs: f64, n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let (f1, f2) = (20.0, (0.45 * fs).min(20_000.0));
    let len = (2.0 * fs) as usize;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let m = len.min(n - out.len());
        let amp = db(rng.gen_range(-40.0..-1.0));
        let t_total = len as f64 / fs;
        let k = (f2 / f1).ln();
        let fade = (0.005 * fs) as usize;
        for i in 0..m {
            let t = i as f64 / fs;
            // Phase of an exponential sweep: 2π f1 T / k (e^{k t / T} - 1).
            let phase =
                2.0 * std::f64::consts::PI * f1 * t_total / k * ((k * t / t_total).exp() - 1.0);
            let env = (i.min(m - i) as f64 / fade as f64).min(1.0);
            out.push(amp * env * phase.sin());
        }
    }
    out
}

/// Decaying white-noise bursts separated by short silences.
fn noise_bursts(fs: f64, n: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let len = (rng.gen_range(0.05..0.5) * fs) as usize;
        let amp = db(rng.gen_range(-40.0..-3.0));
        let tau = rng.gen_range(0.02..0.3) * fs;
        for i in 0..len {
            out.push(amp * (-(i as f64) / tau).exp() * rng.gen_range(-1.0..1.0));
        }
        let gap = (rng.gen_range(0.0..0.2) * fs) as usize;
        out.extend(std::iter::repeat_n(0.0, gap));
    }
    out.truncate(n);
    out
}

/// A plucked instrument's range and character.
struct Instrument {
    /// MIDI note range.
    notes: (u8, u8),
    /// Decay time (T60) range in seconds at 110 Hz; higher notes decay faster.
    t60: (f64, f64),
    /// Excitation brightness range (one-pole low-pass coefficient, 0 = brightest).
    darkness: (f64, f64),
    /// Chance that an event is a chord.
    chord_chance: f64,
    /// Time between events, seconds.
    gap: (f64, f64),
}

const GUITAR: Instrument = Instrument {
    notes: (40, 88),
    t60: (1.5, 4.0),
    darkness: (0.0, 0.6),
    chord_chance: 0.35,
    gap: (0.15, 0.9),
};

const BASS: Instrument = Instrument {
    notes: (28, 55),
    t60: (2.5, 6.0),
    darkness: (0.3, 0.85),
    chord_chance: 0.0,
    gap: (0.25, 1.2),
};

/// Plucked notes and chords of `inst`, events overlapping as on a played instrument.
fn plucks(fs: f64, n: usize, inst: &Instrument, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let mut out = vec![0.0; n];
    let mut t = 0usize;
    while t < n {
        let peak = db(rng.gen_range(-30.0..-3.0));
        let chord = rng.gen_bool(inst.chord_chance);
        let root = rng.gen_range(inst.notes.0..=inst.notes.1) as f64;
        let voices: Vec<f64> = if chord {
            // A major or minor triad stacked upwards, 3 to 6 strings.
            let third = if rng.gen_bool(0.5) { 4.0 } else { 3.0 };
            let steps = [0.0, 7.0, 12.0, 12.0 + third, 19.0, 24.0];
            let count = rng.gen_range(3..=6);
            steps[..count]
                .iter()
                .map(|s| (root - 12.0).max(inst.notes.0 as f64) + s)
                .collect()
        } else {
            vec![root]
        };
        let strum = (rng.gen_range(0.005..0.03) * fs) as usize;
        let t60 = rng.gen_range(inst.t60.0..inst.t60.1);
        let darkness = rng.gen_range(inst.darkness.0..inst.darkness.1);
        let pick = rng.gen_range(0.08..0.3);
        let amp = peak / (voices.len() as f64).sqrt();
        for (k, &m) in voices.iter().enumerate() {
            let start = t + k * strum;
            if start >= n {
                break;
            }
            let f0 = super::midi_to_hz(m);
            let len = ((t60 * (110.0 / f0).sqrt()).clamp(0.3, 8.0) * fs) as usize;
            let note = pluck(
                fs,
                f0,
                len.min(n - start),
                t60 * (110.0 / f0).sqrt(),
                darkness,
                pick,
                rng,
            );
            for (o, v) in out[start..].iter_mut().zip(note) {
                *o += amp * v;
            }
        }
        t += (rng.gen_range(inst.gap.0..inst.gap.1) * fs) as usize;
    }
    // Keep the peak below full scale whatever overlapped.
    let peak = out.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if peak > 0.89 {
        out.iter_mut().for_each(|v| *v *= 0.89 / peak);
    }
    out
}

/// One Karplus–Strong string at `f0` Hz, `len` samples, decaying to -60 dB in `t60` s.
fn pluck(
    fs: f64,
    f0: f64,
    len: usize,
    t60: f64,
    darkness: f64,
    pick: f64,
    rng: &mut ChaCha8Rng,
) -> Vec<f64> {
    // The loop is a delay of D samples and a two-point average (half a sample of delay), so
    // D = fs / f0 - 0.5; D's fraction is a linear interpolation between taps.
    let d = (fs / f0 - 0.5).max(2.0);
    let taps = d.floor() as usize;
    let frac = d - taps as f64;
    // Loss per period for a decay of 60 dB in t60 seconds.
    let loss = db(-60.0 / (t60 * f0));
    // Excitation: one period of low-passed noise, minus its copy delayed by the pick position.
    let p = taps + 2;
    let mut exc = vec![0.0; p];
    let mut lp = 0.0;
    for e in exc.iter_mut() {
        lp = (1.0 - darkness) * rng.gen_range(-1.0..1.0) + darkness * lp;
        *e = lp;
    }
    let pick_delay = ((pick * d) as usize).max(1);
    let exc: Vec<f64> = (0..p)
        .map(|i| {
            exc[i]
                - if i >= pick_delay {
                    exc[i - pick_delay]
                } else {
                    0.0
                }
        })
        .collect();
    // Without DC: the loop's gain at DC is `loss`, close to 1, so any offset would linger.
    let mean = exc.iter().sum::<f64>() / p as f64;
    let exc: Vec<f64> = exc.iter().map(|e| e - mean).collect();
    let mut y = vec![0.0; len];
    for i in 0..len {
        let x = if i < p { exc[i] } else { 0.0 };
        // y[i - D] and y[i - D - 1] by linear interpolation.
        let at = |k: usize| -> f64 {
            let a = if i >= k { y[i - k] } else { 0.0 };
            let b = if i > k { y[i - k - 1] } else { 0.0 };
            (1.0 - frac) * a + frac * b
        };
        y[i] = x + loss * 0.5 * (at(taps) + at(taps + 1));
    }
    let fade = ((0.01 * fs) as usize).min(len);
    for k in 0..fade {
        y[len - 1 - k] *= k as f64 / fade as f64;
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustfft::{num_complex::Complex64, FftPlanner};

    #[test]
    fn signal_is_seeded_bounded_and_covers_the_levels() {
        let fs = 44_100.0;
        let a = training_signal(fs, 20.0, 7).unwrap();
        assert_eq!(a.len(), 882_000);
        assert_eq!(a, training_signal(fs, 20.0, 7).unwrap());
        assert_ne!(a, training_signal(fs, 20.0, 8).unwrap());
        let peak = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(peak < 1.0 && peak > db(-6.0), "{peak}");
        // Quiet and loud passages both occur: 50 ms windows with RMS below -40 dBFS and
        // above -12 dBFS.
        let w = (0.05 * fs) as usize;
        let rms: Vec<f64> = a
            .chunks(w)
            .map(|c| (c.iter().map(|v| v * v).sum::<f64>() / c.len() as f64).sqrt())
            .collect();
        assert!(rms.iter().any(|&r| r > 0.0 && r < db(-40.0)));
        assert!(rms.iter().any(|&r| r > db(-12.0)));
        assert!(training_signal(fs, 1.0, 1).is_err());
    }

    /// The test clips are fixed, of their stated length, not silent, below full scale, and
    /// not a part of the default training signal (seed 1), whose plucks start at 35 %.
    #[test]
    fn test_clips_are_fixed_and_playable() {
        let fs = 44_100.0;
        let a = test_clips(fs).unwrap();
        assert_eq!(a, test_clips(fs).unwrap());
        let train = training_signal(fs, 60.0, 1).unwrap();
        for (name, x) in &a {
            assert_eq!(x.len(), 220_500, "{name}");
            let peak = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(peak > db(-20.0) && peak < 1.0, "{name}: peak {peak}");
            assert!(!train.windows(64).take(10_000).any(|w| w == &x[..64]));
        }
        assert!(test_clips(8_400.0).is_ok());
        assert!(test_clips(2_000.0).is_err());
    }

    /// A Karplus–Strong string sounds at its f0: the strongest spectral peak of a 1 s note
    /// below 1.5 f0 is within 0.5 % of f0, which the loop's delay of fs/f0 sets; and the note
    /// has no DC (its mean is below 1e-3 of its RMS).
    #[test]
    fn plucked_string_is_in_tune() {
        let fs = 48_000.0;
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for f0 in [82.41, 196.0, 440.0, 1318.5] {
            let y = pluck(fs, f0, 48_000, 3.0, 0.3, 0.13, &mut rng);
            let mut buf: Vec<Complex64> = y.iter().map(|&v| Complex64::new(v, 0.0)).collect();
            buf.resize(1 << 18, Complex64::new(0.0, 0.0));
            FftPlanner::new()
                .plan_fft_forward(buf.len())
                .process(&mut buf);
            let hz = |k: usize| k as f64 * fs / buf.len() as f64;
            let top = (1..buf.len() / 2)
                .filter(|&k| hz(k) < 1.5 * f0)
                .max_by(|&i, &j| buf[i].norm().total_cmp(&buf[j].norm()))
                .unwrap();
            assert!((hz(top) / f0 - 1.0).abs() < 0.005, "{f0}: {}", hz(top));
            let mean = y.iter().sum::<f64>() / y.len() as f64;
            let rms = (y.iter().map(|v| v * v).sum::<f64>() / y.len() as f64).sqrt();
            assert!(mean.abs() < 1e-3 * rms, "{f0}: mean {mean}, rms {rms}");
        }
    }
}
