//! The sine-set evaluation of a model (paper sec. 2.6, Table 1, Fig. 4; spec sec. 7): the 264
//! tones of [`eval_sine_set`] (MIDI 21..=108 at -36/-18/-6 dBFS, zero phase, 1.2 s) are run
//! through a network in f64 from its initial state, optionally 2x (or M x) oversampled as the
//! paper's baseline (sec. 4.4, [`process_oversampled`]), and the last second of each output is
//! analysed with the existing metric code ([`SineSetAnalyzer::tone_metrics`], [`aggregate`]).
//!
//! Tones are independent, so they run in parallel on rayon's pool, each task rendering one tone
//! and computing its metrics (memory stays at a few tones per thread). With
//! [`Playback::Scale`] the tones of each level are instead played back to back as one signal,
//! the levels in parallel. The library never prints: a progress callback receives the number
//! of tones finished so far.

use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

use crate::dsp::tones::{eval_sine_set, eval_tone_len, EvalTone, InputNoise, Tone};
use crate::eval::oversample::process_oversampled;
use crate::loss::metrics::{aggregate, Aggregate, AnalysedTone, SineSetAnalyzer, ToneMetrics};
use crate::models::Network;
use crate::{Error, Result};

/// Progress callback: called with the number of tones finished so far (from any thread).
pub type Progress<'a> = &'a (dyn Fn(usize) + Sync);

/// A progress callback that does nothing.
pub fn no_progress(_: usize) {}

/// How to run the network over the tones and measure them. The default is the method
/// specification's sine set (clean tones, NMR on the signals as they are); `eval::table1`
/// gives the paper's Table 1 conditions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunOptions {
    /// Oversampling factor (1 = native rate; 2 = the paper's OS2 baseline, sec. 4.4).
    pub oversample: usize,
    /// Noise floor added to every input tone at the native rate (`None`: clean tones).
    pub input_noise: Option<InputNoise>,
    /// Gain of both signals in the NMR (1: as they are; see [`crate::loss::nmr::Nmr::with_gain`]).
    pub nmr_gain: f64,
    /// How the tones are played to the model.
    pub playback: Playback,
}

/// How the sine-set tones are played to a model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Playback {
    /// Each tone on its own, the model starting from its initial state (spec sec. 7).
    #[default]
    Separate,
    /// The consecutive tones of one input level back to back as one signal, in the order
    /// given, as a recorded scale: the model runs over it without a reset (and, oversampled,
    /// the whole scale is resampled), so a recurrent model enters each tone from the previous
    /// note instead of from rest. Each tone is still analysed on its own last second.
    Scale,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            oversample: 1,
            input_noise: None,
            nmr_gain: 1.0,
            playback: Playback::Separate,
        }
    }
}

impl RunOptions {
    /// The same conditions at oversampling factor `m`.
    pub fn oversampled(self, m: usize) -> Self {
        Self {
            oversample: m,
            ..self
        }
    }
}

/// Checks, before any work, that evaluating `tones` tones at `fs` Hz, oversampled per `opts`,
/// with `models` models side by side fits in the machine's memory: the tones run together
/// ([`tones_at_once`]) are held at once, each as input and output at the oversampled rate.
pub fn check_memory(fs: f64, opts: RunOptions, tones: usize, models: usize) -> Result<()> {
    let m = opts.oversample.max(1) as f64;
    let bytes = tones_at_once(tones, opts) as f64
        * crate::dsp::tones::EVAL_DURATION_S
        * fs
        * m
        * 16.0
        * models as f64;
    let os = if opts.oversample > 1 {
        format!(", {}x oversampled,", opts.oversample)
    } else {
        String::new()
    };
    crate::limits::ensure_fits(bytes, &format!("the sine-set evaluation at {fs} Hz{os}"))
}

/// Output of `net` for input `x` at its native rate, oversampled by `opts.oversample`.
pub fn run_network(net: &Network, x: &[f64], opts: RunOptions) -> Result<Vec<f64>> {
    // The up-sampled input and output, and the result.
    crate::limits::ensure_fits(
        x.len() as f64 * (2.0 * opts.oversample.max(1) as f64 + 1.0) * 8.0,
        &format!(
            "running a model over {} samples, {}x oversampled,",
            x.len(),
            opts.oversample
        ),
    )?;
    let y = if opts.oversample <= 1 {
        net.process::<f64>(x)
    } else {
        process_oversampled(net, x, opts.oversample)?
    };
    if let Some(i) = y.iter().position(|v| !v.is_finite()) {
        return Err(Error::InvalidArgument(format!(
            "the model's output is not finite at sample {i}"
        )));
    }
    Ok(y)
}

/// A tone's metrics with its harmonic amplitudes `2 |C_m|`.
fn tone_result(
    an: &SineSetAnalyzer,
    a: &AnalysedTone,
    teacher: Option<&AnalysedTone>,
) -> Result<ToneResult0> {
    Ok(ToneResult0 {
        metrics: an.metrics(a, teacher)?,
        harmonic_amplitudes: a.harmonics.magnitudes().iter().map(|c| 2.0 * c).collect(),
    })
}

/// A tone's metrics before the tone is attached.
struct ToneResult0 {
    metrics: ToneMetrics,
    harmonic_amplitudes: Vec<f64>,
}

impl ToneResult0 {
    fn with(self, tone: EvalTone) -> ToneResult {
        ToneResult {
            tone,
            metrics: self.metrics,
            harmonic_amplitudes: self.harmonic_amplitudes,
        }
    }
}

/// The metrics of one tone of the set, with its harmonic amplitudes.
#[derive(Clone, Debug, PartialEq)]
pub struct ToneResult {
    /// The tone (MIDI note, level, f0).
    pub tone: EvalTone,
    /// Linear metric values (ESR-S, NMR-S, and the -T ones when a teacher was given).
    pub metrics: ToneMetrics,
    /// Peak amplitudes `2 |C_m|` of harmonics `m = 1..=M` of the analysed output (eqs. 10–11).
    pub harmonic_amplitudes: Vec<f64>,
}

/// Sine-set results for one model: per tone, and aggregated over all tones both as
/// `10 log10(mean of linear)` and as the mean of per-tone dB (spec sec. 7), labelled in
/// [`Aggregate`].
#[derive(Clone, Debug, PartialEq)]
pub struct SineSetReport {
    /// Sample rate of the analysis (the model's rate).
    pub fs: f64,
    /// Oversampling factor the network ran at.
    pub oversample: usize,
    /// The conditions of the measurement (oversampling, input noise, NMR gain).
    pub options: RunOptions,
    /// One entry per tone, in [`eval_sine_set`] order.
    pub tones: Vec<ToneResult>,
    /// ESR-S aggregate.
    pub esr_s: Aggregate,
    /// NMR-S aggregate.
    pub nmr_s: Aggregate,
    /// ESR-T aggregate (with a teacher).
    pub esr_t: Option<Aggregate>,
    /// NMR-T aggregate (with a teacher).
    pub nmr_t: Option<Aggregate>,
    /// HESR-T aggregate (with a teacher).
    pub hesr_t: Option<Aggregate>,
    /// ESR-R aggregate (with a reference: the device's recordings, or the teacher as it is).
    pub esr_r: Option<Aggregate>,
    /// NMR-R aggregate (with a reference).
    pub nmr_r: Option<Aggregate>,
    /// HESR-R aggregate (with a reference).
    pub hesr_r: Option<Aggregate>,
}

impl SineSetReport {
    /// Builds the aggregates from per-tone results.
    pub fn from_tones(fs: f64, options: RunOptions, tones: Vec<ToneResult>) -> Result<Self> {
        if tones.is_empty() {
            return Err(Error::InvalidArgument("no tones".into()));
        }
        let agg = |f: &dyn Fn(&ToneMetrics) -> Option<f64>| -> Option<Aggregate> {
            let v: Option<Vec<f64>> = tones.iter().map(|t| f(&t.metrics)).collect();
            v.map(|v| aggregate(&v))
        };
        Ok(Self {
            fs,
            oversample: options.oversample,
            options,
            esr_s: agg(&|m| Some(m.esr_s)).expect("always present"),
            nmr_s: agg(&|m| Some(m.nmr_s)).expect("always present"),
            esr_t: agg(&|m| m.esr_t),
            nmr_t: agg(&|m| m.nmr_t),
            hesr_t: agg(&|m| m.hesr_t),
            esr_r: agg(&|m| m.esr_r),
            nmr_r: agg(&|m| m.nmr_r),
            hesr_r: agg(&|m| m.hesr_r),
            tones,
        })
    }

    /// The tones at level `dbfs`.
    pub fn at_level(&self, dbfs: f64) -> impl Iterator<Item = &ToneResult> {
        self.tones.iter().filter(move |t| t.tone.dbfs == dbfs)
    }
}

/// Runs the sine set through `net` at sample rate `fs` and measures ESR-S/NMR-S per tone
/// (paper sec. 2.6). With `teacher`, the same tones through the teacher (at the same
/// oversampling) give ESR-T, NMR-T and HESR-T against the teacher's alias-free output.
pub fn measure_sine_set(
    net: &Network,
    fs: f64,
    opts: RunOptions,
    teacher: Option<&Network>,
    progress: Progress,
) -> Result<SineSetReport> {
    measure_tones(net, fs, opts, teacher, &eval_sine_set(), progress)
}

/// [`measure_sine_set`] over a given list of tones (each of [`eval_tone_len`] samples).
pub fn measure_tones(
    net: &Network,
    fs: f64,
    opts: RunOptions,
    teacher: Option<&Network>,
    tones: &[EvalTone],
    progress: Progress,
) -> Result<SineSetReport> {
    measure_tones_against(net, fs, opts, teacher, tones, None, progress)
}

/// [`measure_tones`] with the -R metrics (ESR-R, NMR-R, HESR-R) against `recordings` of the
/// same tones through the device the model imitates (one per tone, in the order of `tones`;
/// e.g. [`device_recordings`]).
pub fn measure_tones_against(
    net: &Network,
    fs: f64,
    opts: RunOptions,
    teacher: Option<&Network>,
    tones: &[EvalTone],
    recordings: Option<&[Vec<f64>]>,
    progress: Progress,
) -> Result<SineSetReport> {
    if let Some(r) = recordings {
        if r.len() != tones.len() {
            return Err(Error::InvalidArgument(format!(
                "{} reference recordings for {} tones",
                r.len(),
                tones.len()
            )));
        }
    }
    check_memory(fs, opts, tones.len(), 1 + teacher.is_some() as usize)?;
    let an = SineSetAnalyzer::with_nmr_gain(fs, opts.nmr_gain)?;
    let done = AtomicUsize::new(0);
    let mut results = Vec::with_capacity(tones.len());
    let at_once = tones_at_once(tones.len(), opts);
    for (ci, chunk) in tones.chunks(at_once).enumerate() {
        let ys = run_tones(net, chunk, fs, opts)?;
        let yts = teacher.map(|t| run_tones(t, chunk, fs, opts)).transpose()?;
        let part = chunk
            .par_iter()
            .enumerate()
            .map(|(i, t)| {
                let a = an.analyse_tone(&ys[i], t.tone.f0)?;
                let at = match &yts {
                    Some(yts) => Some(an.analyse_tone(&yts[i], t.tone.f0)?),
                    None => None,
                };
                let mut r = tone_result(&an, &a, at.as_ref())?;
                if let Some(rec) = recordings {
                    let reference = an.analyse_tone(&rec[ci * at_once + i], t.tone.f0)?;
                    let raw = an.raw_reference(&reference)?;
                    an.add_reference_metrics(&mut r.metrics, &a, &reference, &raw)?;
                }
                progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                Ok(r.with(*t))
            })
            .collect::<Result<Vec<_>>>()?;
        results.extend(part);
    }
    SineSetReport::from_tones(fs, opts, results)
}

/// Tones run through a network per chunk: enough to keep every core busy (recurrent networks
/// advance a chunk's tones together, see [`Network::process_batch`]) while the progress bar
/// still moves.
const CHUNK: usize = 24;

/// How many of `tones` tones run together: a chunk, or with [`Playback::Scale`] all of them
/// (a scale cannot be cut).
fn tones_at_once(tones: usize, opts: RunOptions) -> usize {
    match opts.playback {
        Playback::Separate => CHUNK,
        Playback::Scale => tones.max(1),
    }
}

/// Outputs of `net` for `tones` (1.2 s each at `fs`, with the input noise of `opts`),
/// oversampled per `opts`.
pub(crate) fn run_tones(
    net: &Network,
    tones: &[EvalTone],
    fs: f64,
    opts: RunOptions,
) -> Result<Vec<Vec<f64>>> {
    let len = eval_tone_len(fs);
    // One signal per tone, or with a scale one per run of tones at the same level.
    let groups: Vec<&[EvalTone]> = match opts.playback {
        Playback::Separate => tones.chunks(1).collect(),
        Playback::Scale => tones.chunk_by(|a, b| a.dbfs == b.dbfs).collect(),
    };
    let signals: Vec<Vec<f64>> = groups
        .iter()
        .map(|g| {
            let render = |t: &EvalTone| t.render(fs, len, opts.input_noise.as_ref());
            match g {
                [t] => render(t),
                _ => g.iter().flat_map(render).collect(),
            }
        })
        .collect();
    let outputs = if opts.oversample <= 1 {
        net.process_batch(&signals)
    } else {
        signals
            .par_iter()
            .map(|x| process_oversampled(net, x, opts.oversample))
            .collect::<Result<Vec<_>>>()?
    };
    let mut ys = Vec::with_capacity(tones.len());
    for (g, y) in groups.iter().zip(outputs) {
        if g.len() == 1 {
            ys.push(y);
        } else {
            ys.extend(split_recording(&y, fs, g.len())?);
        }
    }
    for y in &ys {
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "the model's output is not finite at sample {i}"
            )));
        }
    }
    Ok(ys)
}

/// Splits a recording of consecutive sine-set tones (each [`eval_tone_len`] samples at `fs`,
/// in the order of the tones) into `n` tones.
pub fn split_recording(x: &[f64], fs: f64, n: usize) -> Result<Vec<Vec<f64>>> {
    let len = eval_tone_len(fs);
    if x.len() != n * len {
        return Err(Error::InvalidArgument(format!(
            "a recording of the {n} tones needs {} samples ({n} x {len}), it has {}",
            n * len,
            x.len()
        )));
    }
    Ok(x.chunks_exact(len).map(|c| c.to_vec()).collect())
}

/// Metrics of a recorded or rendered tone `y` (at least `fs` samples; the last second is
/// analysed) of fundamental `f0`: ESR-S and NMR-S with the harmonic amplitudes.
pub fn analyze_tone(y: &[f64], fs: f64, f0: f64) -> Result<(ToneMetrics, Vec<f64>)> {
    let an = SineSetAnalyzer::new(fs)?;
    let n = an.analyzer().len();
    if y.len() < n {
        return Err(Error::InvalidArgument(format!(
            "the tone has {} samples; the analysis needs one second ({n} samples at {fs} Hz)",
            y.len()
        )));
    }
    let r = tone_result(&an, &an.analyse_tone(y, f0)?, None)?;
    Ok((r.metrics, r.harmonic_amplitudes))
}

/// The tone of the paper's spectrum figures (Figs. 2–3): 2394.3 Hz at -6 dBFS, zero phase.
pub const SPECTRUM_TONE: Tone = Tone {
    f0: 2394.3,
    amplitude: 0.501_187_233_627_272_3, // 10^(-6/20)
    phase: 0.0,
};

/// The output of `net` for the spectrum-figure tone (1.2 s at `fs`).
pub fn spectrum_tone_output(net: &Network, fs: f64, opts: RunOptions) -> Result<Vec<f64>> {
    let x = SPECTRUM_TONE.render(fs, eval_tone_len(fs));
    run_network(net, &x, opts)
}

/// Teacher and student over the sine set, each network run once per tone: the teacher's
/// report (its -T metrics are against itself: ESR-T = ESR-S, HESR-T = 0) and the student's
/// with ESR-T, NMR-T and HESR-T against the teacher's alias-free output (Table 1 rows).
pub fn compare_sine_set(
    teacher: &Network,
    student: &Network,
    fs: f64,
    opts: RunOptions,
    tones: &[EvalTone],
    progress: Progress,
) -> Result<(SineSetReport, SineSetReport)> {
    compare_sine_set_with(
        teacher,
        student,
        fs,
        opts,
        tones,
        SineReference::None,
        progress,
    )
}

/// What the -R metrics (paper sec. 2.6) are measured against.
#[derive(Clone, Copy, Debug)]
pub enum SineReference<'a> {
    /// No -R metrics.
    None,
    /// The teacher's output as it is (Table 1's rows for models without a device).
    Teacher,
    /// Recordings of the tones through the device, one per tone in the order of the tones
    /// (at least one second each; the last second is analysed).
    Recordings(&'a [Vec<f64>]),
}

impl SineReference<'_> {
    /// What the -R metrics are against, in words (`None`: no -R metrics).
    pub fn describe(&self) -> Option<&'static str> {
        match self {
            SineReference::None => None,
            SineReference::Teacher => Some("the teacher's output"),
            SineReference::Recordings(_) => Some("the device recordings"),
        }
    }
}

/// The tones rendered through a reference device (each [`eval_tone_len`] samples, from rest),
/// in the order of `tones`: the recordings of [`SineReference::Recordings`] for a device that
/// is simulated rather than recorded.
pub fn device_recordings(
    device: &crate::device::Device,
    tones: &[EvalTone],
    fs: f64,
) -> Result<Vec<Vec<f64>>> {
    tones
        .par_iter()
        .map(|t| device.render(&t.tone.render(fs, eval_tone_len(fs)), fs))
        .collect()
}

/// [`compare_sine_set`] with the -R metrics of both models against `reference`.
pub fn compare_sine_set_with(
    teacher: &Network,
    student: &Network,
    fs: f64,
    opts: RunOptions,
    tones: &[EvalTone],
    reference: SineReference,
    progress: Progress,
) -> Result<(SineSetReport, SineSetReport)> {
    if let SineReference::Recordings(r) = reference {
        if r.len() != tones.len() {
            return Err(Error::InvalidArgument(format!(
                "{} reference recordings for {} tones",
                r.len(),
                tones.len()
            )));
        }
    }
    check_memory(fs, opts, tones.len(), 2)?;
    let an = SineSetAnalyzer::with_nmr_gain(fs, opts.nmr_gain)?;
    let done = AtomicUsize::new(0);
    let (mut t, mut s) = (Vec::new(), Vec::new());
    let at_once = tones_at_once(tones.len(), opts);
    for (ci, chunk) in tones.chunks(at_once).enumerate() {
        let yts = run_tones(teacher, chunk, fs, opts)?;
        let yss = run_tones(student, chunk, fs, opts)?;
        let pairs = chunk
            .par_iter()
            .enumerate()
            .map(|(i, tone)| {
                let f0 = tone.tone.f0;
                let at = an.analyse_tone(&yts[i], f0)?;
                let as_ = an.analyse_tone(&yss[i], f0)?;
                let mut rt = tone_result(&an, &at, Some(&at))?;
                let mut rs = tone_result(&an, &as_, Some(&at))?;
                let rec = match reference {
                    SineReference::Recordings(r) => {
                        Some(an.analyse_tone(&r[ci * at_once + i], f0)?)
                    }
                    _ => None,
                };
                let r = match reference {
                    SineReference::None => None,
                    SineReference::Teacher => Some(&at),
                    SineReference::Recordings(_) => rec.as_ref(),
                };
                if let Some(r) = r {
                    let raw = an.raw_reference(r)?;
                    an.add_reference_metrics(&mut rt.metrics, &at, r, &raw)?;
                    an.add_reference_metrics(&mut rs.metrics, &as_, r, &raw)?;
                }
                progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                Ok((rt.with(*tone), rs.with(*tone)))
            })
            .collect::<Result<Vec<_>>>()?;
        for (a, b) in pairs {
            t.push(a);
            s.push(b);
        }
    }
    Ok((
        SineSetReport::from_tones(fs, opts, t)?,
        SineSetReport::from_tones(fs, opts, s)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Analysing each output once gives exactly the metrics of
    /// [`SineSetAnalyzer::tone_metrics`].
    #[test]
    fn analysing_once_matches_tone_metrics() {
        let fs = 44_100.0;
        let f0 = 1234.5;
        let clip = |g: f64| -> Vec<f64> {
            (0..52_920)
                .map(|n| (g * (2.0 * std::f64::consts::PI * f0 * n as f64 / fs).sin()).tanh())
                .collect()
        };
        let (y, yt) = (clip(4.0), clip(3.0));
        let an = SineSetAnalyzer::new(fs).unwrap();
        let want = an.tone_metrics(&y, f0, Some(&yt)).unwrap();
        let a = an.analyse_tone(&y, f0).unwrap();
        let at = an.analyse_tone(&yt, f0).unwrap();
        let got = tone_result(&an, &a, Some(&at)).unwrap();
        assert_eq!(got.metrics, want);
        let (m, h) = analyze_tone(&y, fs, f0).unwrap();
        assert_eq!(m.esr_s, want.esr_s);
        assert_eq!(m.nmr_s, want.nmr_s);
        assert_eq!(h.len(), (fs / (2.0 * f0)) as usize);
    }
}
