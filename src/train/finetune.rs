//! The teacher–student fine-tuning loop (paper sec. 2, Fig. 1; spec secs. 1, 4, 6).
//!
//! Each batch: draw random sine tones (eqs. 3–5), run them through the frozen teacher (f64,
//! from zero state), keep the last second and remove its aliasing by harmonic analysis and
//! resynthesis (eqs. 6–12) to get the targets. The student then plays the same tones:
//! - recurrent networks warm their state on the first 0.2 s without gradient, then truncated
//!   BPTT over frames of 0.1 s, one loss/backward/Adam step per frame, the state carried
//!   (detached) into the next frame;
//! - WaveNets process the analysed second in frames of 0.5 s, each fed with the receptive
//!   field of input that precedes it.
//!
//! The loss is eq. 17 as published (spec sec. 4): `w_esr ESR + w_nmr NMR_lin + w_dc DC` on
//! low-passed signals. Batch items run in parallel: the batch is split into one sub-batch per
//! thread and the gradients are summed in sub-batch order, so a run is deterministic for a
//! given seed and thread count.
//!
//! After every epoch a validation pass over a subset of the evaluation sine set (sec. 2.6)
//! keeps the best student and stops early when it has not improved for `patience` epochs.
//! Checkpoints are taken between batches, so a resumed run continues exactly as an
//! uninterrupted one would.
//!
//! Knob-conditioned models are fine-tuned across their knob range: every training tone gets
//! its own random knob setting `U(0, 1)` per knob (teacher and student play it at that
//! setting), and validation runs every validation tone at every point of a grid of knob
//! values, so that the student is chosen for being alias-reduced at every setting.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use super::adam::{Adam, AdamConfig};
use super::checkpoint::{Checkpoint, RngState, CHECKPOINT_VERSION};
use super::clip::NormClip;
use super::lr::{LrDecay, LrSchedule};
use super::{split, sum_in_order};
use crate::dsp::harmonics::HarmonicAnalyzer;
use crate::dsp::tones::{
    eval_sine_set, eval_tone_len, EvalTone, Tone, ToneGenerator, ToneLevels, ToneNotes,
    EVAL_MIN_RATE,
};
use crate::loss::metrics::{AnalysedTone, SineSetAnalyzer};
use crate::loss::{
    BatchLoss, EsrPooling, FineTuneLoss, ItemWork, LossWeights, NmrPooling, PreEmphasis,
};
use crate::models::rnn_train::{RnnState, RnnTape, RnnTrainer};
use crate::models::wavenet_train::{WaveNetTape, WaveNetTrainer};
use crate::models::{cast_vec, Network, Real};
use crate::{Error, ModelFile, Result};

/// Arithmetic of the student's and the teacher's engines during training; the alias removal,
/// the loss and its gradient (and every reported measurement) are f64 either way. f32 runs
/// the kernels at twice the vector width; its targets differ from f64's by -80 dB at worst
/// (-100 dB typical, Broadcast LSTM), far below the aliasing being removed (-15 to -35 dB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F64,
    F32,
}

/// What chooses the best student (and what early stopping waits on): among the validated
/// students within the tone guard, the one with the lowest value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Selection {
    /// The paper's validation objective, `w_esr ESR-T + w_nmr 10^(mean dB NMR-T / 10)`
    /// (its NMR term is the mean of per-tone dB, which the clean majority of tones dominates).
    #[default]
    Objective,
    /// The validation NMR-S as Table 1 aggregates it (10·log10 of the mean of the linear
    /// values, which the aliasing tones dominate); the tone is guarded by `max_esr_t_db`.
    NmrS,
}

/// Settings of a fine-tuning run. `None` fields take the architecture's default (paper /
/// published runs): batch 40 (RNN) or 32 (WaveNet), tones of 1.2 s (RNN) or 1.05 s (WaveNet),
/// frames of 0.1 s (RNN) or 0.5 s (WaveNet).
#[derive(Clone, Debug)]
pub struct FinetuneConfig {
    pub seed: u64,
    pub tones_per_epoch: usize,
    pub batch_size: Option<usize>,
    pub tone_seconds: Option<f64>,
    pub frame_seconds: Option<f64>,
    pub weights: LossWeights,
    /// How the ESR term pools the batch (paper: over the whole batch frame).
    pub esr_pooling: EsrPooling,
    /// How the NMR term pools the batch (paper: the geometric mean).
    pub nmr_pooling: NmrPooling,
    /// How the training tones' amplitudes are drawn (paper eq. 4: `U(0, 1)`).
    pub tone_levels: ToneLevels,
    /// How the training tones' notes are drawn (paper eq. 5: `U(21, 127)`).
    pub tone_notes: ToneNotes,
    pub pre_emphasis: PreEmphasis,
    /// Adam's settings; `adam.lr` is the peak rate of `lr_schedule`.
    pub adam: AdamConfig,
    pub lr_schedule: LrSchedule,
    /// Weight averaging: validate (and keep) an exponential moving average of the student's
    /// weights with this decay per step instead of the last weights (`None`: off). Averaging
    /// smooths the noise of small batches and high learning rates (Polyak & Juditsky, 1992).
    pub weight_average: Option<f64>,
    /// Gradient-norm clipping: no step's gradient norm exceeds this many times the moving
    /// average of the previous steps' norms ([`NormClip`]; `None`: off).
    pub clip_gradient: Option<f64>,
    pub precision: Precision,
    /// Sub-batches run in parallel (and the unit of determinism).
    pub threads: usize,
    pub max_steps: Option<u64>,
    pub max_epochs: Option<usize>,
    pub max_duration: Option<Duration>,
    /// Stop after this many validations without improvement (`None`: never).
    pub patience: Option<usize>,
    /// The tone guard: a student whose validation ESR-T (dB, 10·log10 of the mean) is above
    /// this is never chosen as the best, whatever its aliasing; if no validated student meets
    /// it, the outcome keeps the teacher (`None`: no guard).
    pub max_esr_t_db: Option<f64>,
    /// What chooses the best student and drives early stopping.
    pub selection: Selection,
    /// Validate after this many batches (`None`: once per epoch).
    pub validate_every_batches: Option<usize>,
    /// Every how many semitones of the evaluation sine set the validation uses.
    pub validation_stride: usize,
    /// Knob-conditioned models: values per knob of the validation grid (evenly over 0..1).
    pub validation_knob_points: usize,
    pub checkpoint_path: Option<PathBuf>,
    pub checkpoint_interval: Duration,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            seed: 0,
            tones_per_epoch: 1600,
            batch_size: None,
            tone_seconds: None,
            frame_seconds: None,
            weights: LossWeights::default(),
            esr_pooling: EsrPooling::Batch,
            nmr_pooling: NmrPooling::Geometric,
            tone_levels: ToneLevels::Uniform,
            tone_notes: ToneNotes::Uniform,
            pre_emphasis: PreEmphasis::Lowpass,
            adam: AdamConfig::default(),
            lr_schedule: LrSchedule::CONSTANT,
            weight_average: None,
            clip_gradient: None,
            precision: Precision::F64,
            threads: rayon::current_num_threads(),
            max_steps: None,
            max_epochs: Some(100),
            max_duration: None,
            patience: Some(5),
            max_esr_t_db: None,
            selection: Selection::Objective,
            validate_every_batches: None,
            validation_stride: 3,
            validation_knob_points: 3,
            checkpoint_path: None,
            checkpoint_interval: Duration::from_secs(300),
        }
    }
}

/// Named sets of settings for [`FinetuneConfig::preset`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Preset {
    /// A result in minutes on a laptop: a higher learning rate (recurrent models) with a
    /// warm-up and a cosine decay over the budget, validation every 400 tones, the tone
    /// guard, and a time budget per architecture (see the README's "Presets and budget").
    #[default]
    Fast,
    /// The paper's procedure exactly (sec. 2.5): Adam at a constant 5e-4, batches of 40
    /// (recurrent) or 32 (WaveNet) tones, 100 epochs of 1600 tones, validation once per epoch,
    /// no tone guard and no time limit.
    Paper,
}

/// The fast preset's settings per architecture, chosen by the measurements in the README.
struct FastSettings {
    batch: usize,
    lr: f64,
    clip_gradient: Option<f64>,
    warmup_steps: u64,
    minutes: f64,
}

impl FinetuneConfig {
    /// The settings of `preset` for fine-tuning `net`; fields left `None` resolve to the
    /// architecture's paper default in [`Schedule::new`].
    pub fn preset(preset: Preset, net: &Network) -> Self {
        let paper = FinetuneConfig::default();
        match preset {
            Preset::Paper => paper,
            Preset::Fast => {
                let f = match net {
                    // Not yet measured against alternatives: the paper's batch and rate, with
                    // the warm-up and decay that only soften the first and last steps.
                    Network::WaveNet(_) => FastSettings {
                        batch: 32,
                        lr: 5e-4,
                        clip_gradient: None,
                        warmup_steps: 100,
                        minutes: 60.0,
                    },
                    // Batches of 10 at 1e-3 or 2e-3 lost the tone (ESR-T -10 to -2 dB) even
                    // with weight averaging; 40 at 2e-3 kept it (README). Without clipping, 2e-3
                    // lost the tone after a few hundred steps and early stopping ended the run
                    // at step 1400; clipped to 2x the recent norm it kept improving for 3000
                    // steps (NMR-S 17.1 -> 5.1 dB, ESR-T -19.3 dB; README).
                    _ => FastSettings {
                        batch: 40,
                        lr: 2e-3,
                        clip_gradient: Some(2.0),
                        warmup_steps: 100,
                        minutes: 15.0,
                    },
                };
                FinetuneConfig {
                    batch_size: Some(f.batch),
                    adam: AdamConfig {
                        lr: f.lr,
                        ..paper.adam
                    },
                    lr_schedule: LrSchedule {
                        warmup_steps: f.warmup_steps,
                        decay: LrDecay::Cosine { floor: 0.05 },
                    },
                    clip_gradient: f.clip_gradient,
                    // Twice the steps per minute; convergence per step as f64's (README).
                    precision: Precision::F32,
                    max_duration: Some(Duration::from_secs_f64(f.minutes * 60.0)),
                    max_epochs: None,
                    // About 400 tones between validations, as one paper epoch of 1600 tones
                    // has 4 of them at batch 40 every 10 batches.
                    validate_every_batches: Some(400usize.div_ceil(f.batch)),
                    patience: Some(10),
                    max_esr_t_db: Some(FAST_TONE_GUARD_DB),
                    // The objective's mean-of-dB NMR barely moves while the aliasing tones
                    // are reduced: with it, a 15-minute run stopped at step 1,600 with
                    // validation NMR-S still falling (README).
                    selection: Selection::NmrS,
                    ..paper
                }
            }
        }
    }
}

/// The fast preset's tone guard: validation ESR-T at most -15 dB (the published TCN student,
/// which listeners heard as "low-passed", has -11.1 dB; the LSTM student -18.1 dB).
pub const FAST_TONE_GUARD_DB: f64 = -15.0;

/// The sample counts a configuration resolves to for one network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub batch: usize,
    /// Samples per training tone.
    pub tone_len: usize,
    /// Samples analysed (the last `analysed` of the tone; `N = fs`).
    pub analysed: usize,
    /// Samples per TBPTT frame / WaveNet frame (one optimiser step each).
    pub frame_len: usize,
    /// Frames (steps) per batch.
    pub frames: usize,
    pub batches_per_epoch: usize,
}

/// A setting out of range (see [`Error::Setting`]).
fn bad(name: &'static str, message: String) -> Error {
    Error::Setting { name, message }
}

/// Checks the settings that do not depend on the network (finite values, ranges), so that a
/// bad one is refused before any work with a message stating the accepted range.
fn check_settings(c: &FinetuneConfig) -> Result<()> {
    let a = &c.adam;
    if !(a.lr > 0.0 && a.lr.is_finite()) {
        return Err(bad(
            "adam.lr",
            format!("the learning rate {} must be a finite number above 0", a.lr),
        ));
    }
    for (name, b) in [("adam.beta1", a.beta1), ("adam.beta2", a.beta2)] {
        if !(0.0..1.0).contains(&b) {
            return Err(bad(name, format!("{b} must be in [0, 1)")));
        }
    }
    if !(a.eps > 0.0 && a.eps.is_finite()) {
        return Err(bad(
            "adam.eps",
            format!("{} must be a finite number above 0", a.eps),
        ));
    }
    c.lr_schedule.check().map_err(|m| bad("lr_schedule", m))?;
    c.tone_levels.check().map_err(|m| bad("tone_levels", m))?;
    c.tone_notes.check().map_err(|m| bad("tone_notes", m))?;
    if c.weight_average.is_some_and(|b| !(0.0..1.0).contains(&b)) {
        return Err(bad(
            "weight_average",
            "the weight average's decay must be in [0, 1)".into(),
        ));
    }
    if c.clip_gradient
        .is_some_and(|k| !(k >= 1.0 && k.is_finite()))
    {
        return Err(bad(
            "clip_gradient",
            "the clipping factor must be a finite number of at least 1 (times the average norm)"
                .into(),
        ));
    }
    if c.max_esr_t_db.is_some_and(|g| !g.is_finite()) {
        return Err(bad(
            "max_esr_t_db",
            "the tone guard must be a finite number of dB".into(),
        ));
    }
    let w = &c.weights;
    for (name, v) in [
        ("weights.esr", w.esr),
        ("weights.nmr", w.nmr),
        ("weights.dc", w.dc),
    ] {
        if !(v >= 0.0 && v.is_finite()) {
            return Err(bad(
                name,
                format!("the loss weight {v} must be a finite number of at least 0"),
            ));
        }
    }
    if w.esr + w.nmr + w.dc == 0.0 {
        return Err(bad(
            "weights.esr",
            "the loss weights are all 0: there is nothing to minimise".into(),
        ));
    }
    if !(1..=88).contains(&c.validation_stride) {
        return Err(bad(
            "validation_stride",
            format!(
                "{} must be from 1 to 88 semitones (the sine set has 88 notes)",
                c.validation_stride
            ),
        ));
    }
    if c.validate_every_batches == Some(0) {
        return Err(bad(
            "validate_every_batches",
            "must be at least 1 batch".into(),
        ));
    }
    if c.max_epochs == Some(0) {
        return Err(bad("max_epochs", "must be at least 1".into()));
    }
    if c.patience == Some(0) {
        return Err(bad(
            "patience",
            "must be at least 1 validation (or none)".into(),
        ));
    }
    Ok(())
}

impl Schedule {
    /// Resolves `config` for `net` at sample rate `fs`, checking every setting first (ranges,
    /// and the memory a batch needs against the machine's).
    pub fn new(net: &Network, fs: f64, config: &FinetuneConfig) -> Result<Self> {
        check_settings(config)?;
        if !(fs.is_finite()
            && fs.fract() == 0.0
            && fs >= EVAL_MIN_RATE
            && (fs as u64).is_multiple_of(2))
        {
            return Err(bad(
                "sample_rate",
                format!(
                    "fine-tuning needs an even whole number of Hz (the analysis length is fs) of at \
                     least {EVAL_MIN_RATE} Hz (the sine set reaches 4186 Hz), got {fs}"
                ),
            ));
        }
        let recurrent = matches!(net, Network::Rnn(_));
        if matches!(net, Network::Linear(_)) {
            return Err(Error::InvalidArgument(
                "a Linear (FIR) model cannot alias; there is nothing to fine-tune".into(),
            ));
        }
        let batch = config.batch_size.unwrap_or(if recurrent { 40 } else { 32 });
        let tone_s = config
            .tone_seconds
            .unwrap_or(if recurrent { 1.2 } else { 1.05 });
        let frame_s = config
            .frame_seconds
            .unwrap_or(if recurrent { 0.1 } else { 0.5 });
        if !(tone_s >= 1.0 && tone_s.is_finite()) {
            return Err(bad(
                "tone_seconds",
                format!("tones of {tone_s} s: a tone must be a finite length of at least the analysed second (1 s)"),
            ));
        }
        if !(frame_s > 0.0 && frame_s <= 1.0) {
            return Err(bad(
                "frame_seconds",
                format!("frames of {frame_s} s: a frame must be longer than 0 s and at most the analysed second (1 s)"),
            ));
        }
        if batch == 0 || config.tones_per_epoch < batch {
            return Err(bad(
                "batch_size",
                format!(
                    "batch size {batch} must be between 1 and the tones per epoch ({})",
                    config.tones_per_epoch
                ),
            ));
        }
        // Inputs, teacher outputs and targets of a batch (f64), before the student's tapes.
        let batch_bytes = 8.0 * batch as f64 * (2.0 * tone_s * fs + fs);
        crate::limits::ensure_fits(
            batch_bytes,
            &format!("a batch of {batch} tones of {tone_s} s at {fs} Hz"),
        )
        .map_err(|e| bad("batch_size/tone_seconds", e.to_string()))?;
        let analysed = fs as usize;
        let tone_len = (tone_s * fs).round() as usize;
        let frame_len = (frame_s * fs).round() as usize;
        if frame_len == 0 || !analysed.is_multiple_of(frame_len) {
            return Err(bad(
                "frame_seconds",
                format!(
                    "the frame length ({frame_s} s = {frame_len} samples) must divide the analysed second ({analysed} samples)"
                ),
            ));
        }
        if config.weights.nmr > 0.0 && frame_len < crate::loss::nmr::NMR_FFT_LEN {
            return Err(bad(
                "frame_seconds",
                format!(
                    "frames of {frame_len} samples are shorter than the NMR's analysis frame ({} samples)",
                    crate::loss::nmr::NMR_FFT_LEN
                ),
            ));
        }
        Ok(Schedule {
            batch,
            tone_len,
            analysed,
            frame_len,
            frames: analysed / frame_len,
            batches_per_epoch: config.tones_per_epoch / batch,
        })
    }

    /// Index of the first analysed sample in a tone.
    pub fn analysis_start(&self) -> usize {
        self.tone_len - self.analysed
    }
}

/// Something that happened during training, for progress display.
#[derive(Clone, Debug)]
pub enum Event {
    /// An optimiser step finished.
    Step {
        step: u64,
        epoch: usize,
        loss: BatchLoss,
        steps_per_second: f64,
    },
    /// A validation pass finished.
    Validation(ValidationResult),
    /// A checkpoint was written.
    Checkpoint { path: PathBuf, step: u64 },
}

/// Validation metrics of the student (means over the validation tones).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValidationResult {
    pub epoch: usize,
    pub step: u64,
    /// NMR-S, 10·log10 of the mean of the per-tone values.
    pub nmr_s_db: f64,
    /// ESR-T, 10·log10 of the mean of the per-tone values.
    pub esr_t_db: f64,
    /// The training objective on the validation tones (lower is better):
    /// `w_esr mean(ESR-T) + w_nmr 10^(mean dB NMR-T / 10)`.
    pub score: f64,
    pub improved: bool,
    /// Training time when it was taken (wall clock, validations included).
    pub seconds: f64,
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    MaxSteps,
    MaxEpochs,
    TimeBudget,
    EarlyStopping,
    Interrupted,
}

/// The outcome of a run.
#[derive(Clone, Debug)]
pub struct FinetuneOutcome {
    /// The best student by validation score among those that met the tone guard; the last
    /// one if never validated; the teacher if no validated student met the guard.
    pub best: Network,
    /// Whether `best` is a fine-tuned student (false: no validated student met the tone
    /// guard, and `best` is the teacher).
    pub student_found: bool,
    /// The student after the last step.
    pub last: Network,
    pub steps: u64,
    pub epochs: usize,
    pub elapsed: Duration,
    pub stop: StopReason,
    pub history: Vec<ValidationResult>,
}

/// How a batch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BatchEnd {
    Complete,
    Interrupted,
    StepLimit,
}

/// Validation set: a subset of the evaluation sine set (each tone at every knob setting of
/// the grid, for conditioned models) and the teacher's outputs on it, analysed once (its
/// alias-free outputs are the references of every validation).
struct Validation {
    tones: Vec<EvalTone>,
    knobs: Vec<Vec<f64>>,
    teacher: Vec<AnalysedTone>,
    analyzer: SineSetAnalyzer,
    fs: f64,
}

impl Validation {
    fn new(teacher: &Network, fs: f64, stride: usize, knob_points: usize) -> Result<Self> {
        let (tones, knobs): (Vec<EvalTone>, Vec<Vec<f64>>) = eval_sine_set()
            .into_iter()
            .filter(|t| (t.midi as usize - 21).is_multiple_of(stride.max(1)))
            .flat_map(|t| {
                teacher
                    .knob_grid(knob_points.max(1))
                    .into_iter()
                    .map(move |k| (t, k))
            })
            .unzip();
        let len = eval_tone_len(fs);
        let inputs: Vec<Vec<f64>> = tones.iter().map(|t| t.tone.render(fs, len)).collect();
        let analyzer = SineSetAnalyzer::new(fs)?;
        let teacher = tones
            .par_iter()
            .zip(teacher.process_batch_with_knobs(&inputs, &knobs))
            .map(|(t, y)| analyzer.analyse_tone(&y, t.tone.f0))
            .collect::<Result<_>>()?;
        Ok(Validation {
            tones,
            knobs,
            teacher,
            analyzer,
            fs,
        })
    }

    fn evaluate<T: Real>(&self, student: &Network, w: LossWeights) -> Result<(f64, f64, f64)> {
        let len = eval_tone_len(self.fs);
        let inputs: Vec<Vec<f64>> = self
            .tones
            .iter()
            .map(|t| t.tone.render(self.fs, len))
            .collect();
        let outputs = student.process_batch_in::<T>(&inputs, &self.knobs);
        let per_tone: Vec<_> = self
            .tones
            .par_iter()
            .zip(&self.teacher)
            .zip(&outputs)
            .map(|((t, at), y)| {
                let a = self.analyzer.analyse_tone(y, t.tone.f0)?;
                self.analyzer.metrics(&a, Some(at))
            })
            .collect::<Result<_>>()?;
        let n = per_tone.len() as f64;
        let db = |v: f64| 10.0 * v.max(1e-30).log10();
        let mean = |f: &dyn Fn(&crate::loss::metrics::ToneMetrics) -> f64| {
            per_tone.iter().map(f).sum::<f64>() / n
        };
        let nmr_s_db = db(mean(&|m| m.nmr_s));
        let esr_t_mean = mean(&|m| m.esr_t.unwrap_or(0.0));
        let esr_t_db = db(esr_t_mean);
        // The paper's validation objective averages the NMR in dB (spec sec. 4).
        let nmr_t_db = mean(&|m| db(m.nmr_t.unwrap_or(0.0)));
        let score = w.esr * esr_t_mean + w.nmr * 10f64.powf(nmr_t_db / 10.0);
        Ok((nmr_s_db, esr_t_db, score))
    }
}

/// The random draws of one batch: its tones, then (conditioned models, `knobs > 0`) every
/// tone's own random knob setting.
fn draw_batch(g: &mut ToneGenerator, batch: usize, knobs: usize) -> (Vec<Tone>, Vec<Vec<f64>>) {
    let tones = g.tones(batch);
    let settings = if knobs > 0 {
        tones.iter().map(|_| g.knobs(knobs)).collect()
    } else {
        vec![]
    };
    (tones, settings)
}

/// The training tones of a run at rate `fs` from generator `g` (fresh or resumed): notes
/// below 0.45 fs, levels as `config` says.
fn training_tones(g: ToneGenerator, fs: f64, config: &FinetuneConfig) -> ToneGenerator {
    g.below(0.45 * fs)
        .with_levels(config.tone_levels)
        .with_notes(config.tone_notes)
}

/// One batch of training data: the tones, their input signals, knob settings (conditioned
/// models) and alias-free targets (the last `analysed` samples).
struct Batch {
    inputs: Vec<Vec<f64>>,
    knobs: Vec<Vec<f64>>,
    targets: Vec<Vec<f64>>,
}

/// A fine-tuning run in progress.
pub struct Finetuner {
    /// The rate the teacher was trained at; tones, analysis and the loss use it.
    sample_rate: f64,
    teacher: Network,
    student: Network,
    config: FinetuneConfig,
    schedule: Schedule,
    loss: FineTuneLoss,
    analyzer: HarmonicAnalyzer,
    validation: Validation,
    adam: Adam,
    tones: ToneGenerator,
    step: u64,
    epoch: usize,
    batch_in_epoch: usize,
    best_score: Option<f64>,
    best_params: Option<Vec<f64>>,
    since_improvement: usize,
    history: Vec<ValidationResult>,
    elapsed_before: Duration,
    /// Steps the run is expected to take, for the learning-rate decay: `max_steps`, or
    /// estimated from the time budget and the measured step rate.
    horizon: Option<u64>,
    /// The moving average of the student's weights (with `weight_average`).
    average: Option<Vec<f64>>,
    /// The gradient-norm clipping state (with `clip_gradient`).
    clip: NormClip,
}

impl Finetuner {
    /// Starts a run on a model file: the student is a copy of its network, trained at the
    /// rate the file states or, when it states none, its format's plugins' rate
    /// ([`ModelFile::rate_or_default`]).
    pub fn for_file(teacher: &ModelFile, config: FinetuneConfig) -> Result<Self> {
        Self::new(&teacher.network, teacher.rate_or_default().0, config)
    }

    /// Starts a run at sample rate `sample_rate` (the rate the teacher was trained at): the
    /// student is a copy of `teacher`.
    pub fn new(teacher: &Network, sample_rate: f64, config: FinetuneConfig) -> Result<Self> {
        teacher.check_finite()?;
        teacher.check_trainable()?;
        let fs = sample_rate;
        let schedule = Schedule::new(teacher, fs, &config)?;
        Ok(Finetuner {
            sample_rate: fs,
            student: teacher.clone(),
            loss: FineTuneLoss::new(fs, config.weights, config.pre_emphasis)?
                .with_esr_pooling(config.esr_pooling)
                .with_nmr_pooling(config.nmr_pooling),
            analyzer: HarmonicAnalyzer::new(schedule.analysed, fs)?,
            validation: Validation::new(
                teacher,
                fs,
                config.validation_stride,
                config.validation_knob_points,
            )?,
            adam: Adam::new(teacher.num_params(), config.adam),
            tones: training_tones(ToneGenerator::new(config.seed), fs, &config),
            teacher: teacher.clone(),
            schedule,
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            best_score: None,
            best_params: None,
            since_improvement: 0,
            history: Vec::new(),
            elapsed_before: Duration::ZERO,
            horizon: config.max_steps,
            average: config.weight_average.map(|_| teacher.params()),
            clip: NormClip::default(),
            config,
        })
    }

    /// The resolved sample counts.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// Optimiser steps taken so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// A fingerprint of everything that determines the result, to refuse resuming a
    /// checkpoint of another run.
    fn fingerprint(&self) -> String {
        let c = &self.config;
        let teacher_sum: f64 = self
            .teacher
            .params()
            .iter()
            .enumerate()
            .map(|(i, v)| v * (1.0 + (i % 97) as f64))
            .sum();
        format!(
            "seed={} fs={} tones={} sched={:?} w={:?} esr={:?} nmr={:?} levels={:?} notes={:?} pre={:?} adam={:?} lr={:?} avg={:?} guard={:?} prec={:?} threads={} val={}{}{}{} teacher={:e}/{}",
            c.seed,
            self.sample_rate,
            c.tones_per_epoch,
            self.schedule,
            c.weights,
            c.esr_pooling,
            c.nmr_pooling,
            c.tone_levels,
            c.tone_notes,
            c.pre_emphasis,
            c.adam,
            c.lr_schedule,
            c.weight_average,
            c.max_esr_t_db,
            c.precision,
            c.threads,
            c.validation_stride,
            if self.teacher.num_knobs() > 0 {
                format!(" knob-grid={}", c.validation_knob_points)
            } else {
                String::new()
            },
            // Only when set, so that checkpoints of runs without it stay resumable.
            c.clip_gradient
                .map_or(String::new(), |k| format!(" clip={k:?}")),
            // Likewise only when not the paper's.
            if c.selection == Selection::Objective {
                String::new()
            } else {
                format!(" select={:?}", c.selection)
            },
            teacher_sum,
            self.teacher.num_params()
        )
    }

    /// The resumable state at the current batch boundary.
    pub fn checkpoint(&self, elapsed: Duration) -> Checkpoint {
        Checkpoint {
            version: CHECKPOINT_VERSION,
            config_fingerprint: self.fingerprint(),
            params: self.student.params(),
            adam: self.adam.clone(),
            rng: RngState::capture(self.tones.rng()),
            step: self.step,
            batch_in_epoch: self.batch_in_epoch,
            epoch: self.epoch,
            best_score: self.best_score,
            best_params: self.best_params.clone(),
            epochs_without_improvement: self.since_improvement,
            history: self
                .history
                .iter()
                .map(|v| {
                    (
                        v.epoch, v.step, v.nmr_s_db, v.esr_t_db, v.score, v.improved, v.seconds,
                    )
                })
                .collect(),
            elapsed_seconds: elapsed.as_secs_f64(),
            average: self.average.clone(),
            grad_clip: self.clip,
        }
    }

    /// Continues from a checkpoint of the same run (same teacher and settings).
    pub fn resume(&mut self, ck: &Checkpoint) -> Result<()> {
        if ck.config_fingerprint != self.fingerprint() {
            return Err(Error::InvalidArgument(format!(
                "the checkpoint belongs to another run (different model or settings):\n  checkpoint: {}\n  this run:   {}",
                ck.config_fingerprint,
                self.fingerprint()
            )));
        }
        self.check_checkpoint(ck)?;
        self.student.set_params(&ck.params)?;
        self.adam = ck.adam.clone();
        self.tones = training_tones(
            ToneGenerator::from_rng(ck.rng.restore()),
            self.sample_rate,
            &self.config,
        );
        self.step = ck.step;
        self.epoch = ck.epoch;
        self.batch_in_epoch = ck.batch_in_epoch;
        self.best_score = ck.best_score;
        self.best_params = ck.best_params.clone();
        self.since_improvement = ck.epochs_without_improvement;
        self.history = ck
            .history
            .iter()
            .map(
                |&(epoch, step, nmr_s_db, esr_t_db, score, improved, seconds)| ValidationResult {
                    epoch,
                    step,
                    nmr_s_db,
                    esr_t_db,
                    score,
                    improved,
                    seconds,
                },
            )
            .collect();
        self.elapsed_before = Duration::from_secs_f64(ck.elapsed_seconds);
        if self.config.weight_average.is_some() != ck.average.is_some() {
            return Err(Error::Checkpoint(
                "the checkpoint's weight average does not match this run's setting".into(),
            ));
        }
        self.average = ck.average.clone();
        self.clip = ck.grad_clip;
        self.estimate_horizon(self.elapsed_before);
        Ok(())
    }

    /// A fresh tone generator of this run.
    fn tone_generator(&self) -> ToneGenerator {
        training_tones(
            ToneGenerator::new(self.config.seed),
            self.sample_rate,
            &self.config,
        )
    }

    /// Checks a checkpoint's fields against each other and against this run: the network's
    /// parameter count, the Adam settings, the step count at a batch boundary of this schedule,
    /// and the tone generator at exactly the position those batches leave it.
    fn check_checkpoint(&self, ck: &Checkpoint) -> Result<()> {
        let fail = |m: String| Err(Error::Checkpoint(m));
        ck.check().map_err(Error::Checkpoint)?;
        let np = self.student.num_params();
        if ck.params.len() != np {
            return fail(format!(
                "the checkpoint holds {} parameters but the model has {np}",
                ck.params.len()
            ));
        }
        if ck.adam.config != self.config.adam {
            return fail(format!(
                "the checkpoint's Adam settings {:?} differ from this run's {:?}",
                ck.adam.config, self.config.adam
            ));
        }
        let s = self.schedule;
        if ck.batch_in_epoch >= s.batches_per_epoch {
            return fail(format!(
                "the checkpoint is at batch {} of an epoch of {} batches",
                ck.batch_in_epoch, s.batches_per_epoch
            ));
        }
        let batches = ck.epoch as u128 * s.batches_per_epoch as u128 + ck.batch_in_epoch as u128;
        if u128::from(ck.step) != batches * s.frames as u128 {
            return fail(format!(
                "step {} is not the end of batch {} of epoch {} ({} steps per batch): the \
                 counters are inconsistent",
                ck.step, ck.batch_in_epoch, ck.epoch, s.frames
            ));
        }
        // Far beyond any real run (the paper's is 1.6e5 tones) and still quick to replay.
        const MAX_TONES: u128 = 100_000_000;
        let tones = batches * s.batch as u128;
        if tones > MAX_TONES {
            return fail(format!(
                "the checkpoint's counters (epoch {}, {} tones drawn) are out of range",
                ck.epoch, tones
            ));
        }
        let mut g = self.tone_generator();
        for _ in 0..batches {
            draw_batch(&mut g, s.batch, self.teacher.num_knobs());
        }
        if RngState::capture(g.rng()) != ck.rng {
            return fail(format!(
                "the tone generator's position does not match the {tones} tones the counters say \
                 were drawn"
            ));
        }
        Ok(())
    }

    /// Draws the next batch of tones and builds their alias-free teacher targets, the teacher
    /// running in the run's precision `T` (the alias removal is f64).
    fn next_batch<T: Real>(&mut self) -> Result<Batch> {
        let fs = self.sample_rate;
        let (tones, knobs) = draw_batch(
            &mut self.tones,
            self.schedule.batch,
            self.teacher.num_knobs(),
        );
        let len = self.schedule.tone_len;
        let analyzer = &self.analyzer;
        let teacher = &self.teacher;
        let inputs: Vec<Vec<f64>> = tones.iter().map(|t| t.render(fs, len)).collect();
        let outputs = teacher.process_batch_in::<T>(&inputs, &knobs);
        let targets = tones
            .par_iter()
            .zip(&outputs)
            .map(|(t, y)| Ok(analyzer.remove_aliasing(y, t.f0)?.1))
            .collect::<Result<_>>()?;
        Ok(Batch {
            inputs,
            knobs,
            targets,
        })
    }

    /// Runs until a stopping condition; `stop` (set by a Ctrl-C handler, say) interrupts
    /// between steps, after which the last batch-boundary checkpoint is written.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<FinetuneOutcome> {
        match self.config.precision {
            Precision::F64 => self.run_in::<f64>(stop, on_event),
            Precision::F32 => self.run_in::<f32>(stop, on_event),
        }
    }

    fn run_in<T: Real>(
        &mut self,
        stop: &AtomicBool,
        on_event: &mut dyn FnMut(Event),
    ) -> Result<FinetuneOutcome> {
        let started = Instant::now();
        let elapsed = |s: &Self| s.elapsed_before + started.elapsed();
        let mut last_checkpoint = Instant::now();
        let mut boundary = self.checkpoint(elapsed(self));
        let mut steps_timer = (Instant::now(), self.step);
        let reason = loop {
            if let Some(r) = self.limit_reached(elapsed(self)) {
                break r;
            }
            if stop.load(Ordering::SeqCst) {
                break StopReason::Interrupted;
            }
            let batch = self.next_batch::<T>()?;
            let completed = self.train_batch::<T>(&batch, stop, &mut |s, epoch, loss| {
                let (t0, s0) = steps_timer;
                let dt = t0.elapsed().as_secs_f64();
                let rate = if dt > 0.0 { (s - s0) as f64 / dt } else { 0.0 };
                if dt > 10.0 {
                    steps_timer = (Instant::now(), s);
                }
                on_event(Event::Step {
                    step: s,
                    epoch,
                    loss,
                    steps_per_second: rate,
                })
            });
            match completed {
                Ok(BatchEnd::Complete) => {}
                Ok(BatchEnd::StepLimit) => {
                    // The student keeps its last steps; the checkpoint stays at the batch
                    // boundary, from which a longer run continues deterministically.
                    self.write_checkpoint(&boundary, on_event)?;
                    break StopReason::MaxSteps;
                }
                Ok(BatchEnd::Interrupted) => {
                    // Interrupted mid-batch: roll back to the last batch boundary.
                    self.write_checkpoint(&boundary, on_event)?;
                    self.restore_boundary(&boundary)?;
                    break StopReason::Interrupted;
                }
                Err(e) => {
                    // Keep the last good state on disk before reporting the failure.
                    self.write_checkpoint(&boundary, on_event)?;
                    return Err(e);
                }
            }
            self.batch_in_epoch += 1;
            let end_of_epoch = self.batch_in_epoch == self.schedule.batches_per_epoch;
            if end_of_epoch {
                self.batch_in_epoch = 0;
                self.epoch += 1;
            }
            let validate = match self.config.validate_every_batches {
                Some(k) => (self.epoch * self.schedule.batches_per_epoch + self.batch_in_epoch)
                    .is_multiple_of(k.max(1)),
                None => end_of_epoch,
            };
            if validate {
                let v = self.validate::<T>(elapsed(self))?;
                on_event(Event::Validation(v));
            }
            self.estimate_horizon(elapsed(self));
            boundary = self.checkpoint(elapsed(self));
            if last_checkpoint.elapsed() >= self.config.checkpoint_interval {
                self.write_checkpoint(&boundary, on_event)?;
                last_checkpoint = Instant::now();
            }
        };
        // A run that stopped between batches checkpoints its final state; one that stopped
        // mid-batch keeps the batch boundary on disk (already written above), from which a
        // resumed run repeats exactly what an uninterrupted one would have done.
        let mid_batch = self.step != boundary.step;
        if reason != StopReason::Interrupted
            && self.history.last().is_none_or(|v| v.step != self.step)
        {
            // Judge the final student too, so that the best one is chosen among all.
            let v = self.validate::<T>(elapsed(self))?;
            on_event(Event::Validation(v));
        }
        if !mid_batch {
            self.write_checkpoint(&self.checkpoint(elapsed(self)), on_event)?;
        }
        let mut best = self.student.clone();
        if let Some(p) = &self.best_params {
            best.set_params(p)?;
        }
        let student_found = self.best_params.is_some() || self.history.is_empty();
        if !student_found {
            best = self.teacher.clone();
        }
        Ok(FinetuneOutcome {
            best,
            student_found,
            last: self.student.clone(),
            steps: self.step,
            epochs: self.epoch,
            elapsed: elapsed(self),
            stop: reason,
            history: self.history.clone(),
        })
    }

    /// With a time budget and no step limit, the decay's horizon is the step count the
    /// budget allows at the rate measured so far (validations included), re-estimated after
    /// every batch; so a run's schedule depends on the machine's speed, and only a step
    /// budget makes it reproducible.
    fn estimate_horizon(&mut self, elapsed: Duration) {
        if let (None, Some(budget)) = (self.config.max_steps, self.config.max_duration) {
            let t = elapsed.as_secs_f64();
            if t > 0.0 && self.step > 0 {
                let rate = self.step as f64 / t;
                self.horizon = Some((budget.as_secs_f64() * rate).round() as u64);
            }
        }
    }

    fn restore_boundary(&mut self, ck: &Checkpoint) -> Result<()> {
        self.resume(ck)
    }

    fn write_checkpoint(&self, ck: &Checkpoint, on_event: &mut dyn FnMut(Event)) -> Result<()> {
        if let Some(path) = &self.config.checkpoint_path {
            ck.save(path)?;
            on_event(Event::Checkpoint {
                path: path.clone(),
                step: ck.step,
            });
        }
        Ok(())
    }

    fn limit_reached(&self, elapsed: Duration) -> Option<StopReason> {
        let c = &self.config;
        if c.max_steps.is_some_and(|m| self.step >= m) {
            return Some(StopReason::MaxSteps);
        }
        if c.max_epochs.is_some_and(|m| self.epoch >= m) {
            return Some(StopReason::MaxEpochs);
        }
        if c.max_duration.is_some_and(|m| elapsed >= m) {
            return Some(StopReason::TimeBudget);
        }
        if c.patience
            .is_some_and(|p| self.since_improvement >= p && !self.history.is_empty())
        {
            return Some(StopReason::EarlyStopping);
        }
        None
    }

    /// Validates the current student, updating the best one.
    fn validate<T: Real>(&mut self, elapsed: Duration) -> Result<ValidationResult> {
        let judged = match &self.average {
            Some(a) => {
                let mut n = self.student.clone();
                n.set_params(a)?;
                n
            }
            None => self.student.clone(),
        };
        let (nmr_s_db, esr_t_db, score) = self
            .validation
            .evaluate::<T>(&judged, self.config.weights)?;
        let tone_kept = self.config.max_esr_t_db.is_none_or(|g| esr_t_db <= g);
        let criterion = match self.config.selection {
            Selection::Objective => score,
            Selection::NmrS => nmr_s_db,
        };
        let improved = tone_kept && self.best_score.is_none_or(|b| criterion < b);
        if improved {
            self.best_score = Some(criterion);
            self.best_params = Some(judged.params());
            self.since_improvement = 0;
        } else {
            self.since_improvement += 1;
        }
        let v = ValidationResult {
            epoch: self.epoch,
            step: self.step,
            nmr_s_db,
            esr_t_db,
            score,
            improved,
            seconds: elapsed.as_secs_f64(),
        };
        self.history.push(v);
        Ok(v)
    }

    /// Applies one optimiser step with the summed gradient; refuses non-finite values.
    fn apply_step(&mut self, loss: &BatchLoss, grad: &mut [f64]) -> Result<()> {
        if !loss.value.is_finite() || grad.iter().any(|g| !g.is_finite()) {
            return Err(Error::NonFinite(format!(
                "the loss or its gradient became NaN/Inf at step {} (loss {}); the last good checkpoint was kept",
                self.step + 1,
                loss.value
            )));
        }
        if let Some(k) = self.config.clip_gradient {
            self.clip.apply(grad, k);
        }
        let mut p = self.student.params();
        let lr = self.config.adam.lr * self.config.lr_schedule.factor(self.step, self.horizon);
        self.adam.update_with_lr(&mut p, grad, lr);
        self.student.set_params(&p)?;
        if let (Some(avg), Some(beta)) = (&mut self.average, self.config.weight_average) {
            for (a, &v) in avg.iter_mut().zip(&p) {
                *a = beta * *a + (1.0 - beta) * v;
            }
        }
        self.step += 1;
        Ok(())
    }

    /// The batch loss of frame `f` of every item and its gradient with respect to each
    /// item's output (into `dys`).
    fn frame_loss(
        &self,
        preds: &[Vec<f64>],
        batch: &Batch,
        f: usize,
        works: &mut Vec<ItemWork>,
        dys: &mut [Vec<f64>],
    ) -> Result<BatchLoss> {
        let n = self.schedule.frame_len;
        let pred_refs: Vec<&[f64]> = preds.iter().map(|p| p.as_slice()).collect();
        let tgt_refs: Vec<&[f64]> = batch
            .targets
            .iter()
            .map(|t| &t[f * n..(f + 1) * n])
            .collect();
        self.loss.batch(&pred_refs, &tgt_refs, works, Some(dys))
    }

    /// Whether a batch should end before its next frame.
    fn frame_gate(&self, stop: &AtomicBool) -> Option<BatchEnd> {
        if stop.load(Ordering::SeqCst) {
            Some(BatchEnd::Interrupted)
        } else if self.config.max_steps.is_some_and(|m| self.step >= m) {
            Some(BatchEnd::StepLimit)
        } else {
            None
        }
    }

    /// Trains on one batch, frame by frame.
    fn train_batch<T: Real>(
        &mut self,
        batch: &Batch,
        stop: &AtomicBool,
        on_step: &mut dyn FnMut(u64, usize, BatchLoss),
    ) -> Result<BatchEnd> {
        match &self.student {
            Network::Rnn(_) => self.train_batch_rnn::<T>(batch, stop, on_step),
            Network::WaveNet(_) => self.train_batch_wavenet::<T>(batch, stop, on_step),
            Network::Linear(_) => unreachable!("rejected by Schedule::new"),
        }
    }

    fn train_batch_rnn<T: Real>(
        &mut self,
        batch: &Batch,
        stop: &AtomicBool,
        on_step: &mut dyn FnMut(u64, usize, BatchLoss),
    ) -> Result<BatchEnd> {
        let sched = self.schedule;
        let start = sched.analysis_start();
        let inputs: Vec<Vec<T>> = batch.inputs.iter().map(|x| cast_vec(x)).collect();
        let ranges = split(sched.batch, self.config.threads);
        let rnn = |net: &Network| match net {
            Network::Rnn(r) => RnnTrainer::<T>::new(r),
            _ => unreachable!(),
        };
        struct Sub<T: Real> {
            range: std::ops::Range<usize>,
            states: Vec<RnnState<T>>,
            tape: RnnTape<T>,
            ys: Vec<Vec<T>>,
            grad: Vec<T>,
        }
        let trainer = rnn(&self.student);
        let np = trainer.num_params();
        let mut subs: Vec<Sub<T>> = ranges
            .into_iter()
            .map(|r| Sub {
                states: r
                    .clone()
                    .map(|b| {
                        let mut s = trainer.initial_state();
                        if let Some(k) = batch.knobs.get(b) {
                            s.knobs = cast_vec(k);
                        }
                        s
                    })
                    .collect(),
                tape: RnnTape::new(),
                ys: vec![vec![T::zero(); start.max(sched.frame_len)]; r.len()],
                grad: vec![T::zero(); np],
                range: r,
            })
            .collect();
        // Warm the states on the samples before the analysed second, without gradient.
        subs.par_iter_mut().for_each(|s| {
            let xs: Vec<&[T]> = inputs[s.range.clone()]
                .iter()
                .map(|x| &x[..start])
                .collect();
            let mut ys: Vec<&mut [T]> = s.ys.iter_mut().map(|y| &mut y[..start]).collect();
            trainer.run(&xs, &mut s.states, &mut ys);
        });
        let mut works: Vec<ItemWork> = Vec::new();
        let mut dys: Vec<Vec<f64>> = vec![vec![0.0; sched.frame_len]; sched.batch];
        for f in 0..sched.frames {
            if let Some(end) = self.frame_gate(stop) {
                return Ok(end);
            }
            let trainer = rnn(&self.student);
            let (a, b) = (
                start + f * sched.frame_len,
                start + (f + 1) * sched.frame_len,
            );
            subs.par_iter_mut().for_each(|s| {
                let xs: Vec<&[T]> = inputs[s.range.clone()].iter().map(|x| &x[a..b]).collect();
                let mut ys: Vec<&mut [T]> =
                    s.ys.iter_mut().map(|y| &mut y[..sched.frame_len]).collect();
                trainer.forward(&xs, &mut s.states, &mut s.tape, &mut ys);
            });
            let preds: Vec<Vec<f64>> = subs
                .iter()
                .flat_map(|s| {
                    s.ys.iter().map(|y| {
                        y[..sched.frame_len]
                            .iter()
                            .map(|v| v.to_f64_exact())
                            .collect()
                    })
                })
                .collect();
            let loss = self.frame_loss(&preds, batch, f, &mut works, &mut dys)?;
            subs.par_iter_mut().for_each(|s| {
                let dy: Vec<Vec<T>> = dys[s.range.clone()].iter().map(|d| cast_vec(d)).collect();
                let dy_refs: Vec<&[T]> = dy.iter().map(|d| d.as_slice()).collect();
                s.grad.iter_mut().for_each(|g| *g = T::zero());
                // The returned gradient of the frame's initial state is dropped: truncated
                // BPTT detaches the carried state (spec sec. 6).
                trainer.backward(&s.tape, &dy_refs, &mut s.grad);
            });
            self.apply_step(
                &loss,
                &mut sum_in_order(subs.iter().map(|s| &s.grad[..]), np),
            )?;
            on_step(self.step, self.epoch, loss);
        }
        Ok(BatchEnd::Complete)
    }

    fn train_batch_wavenet<T: Real>(
        &mut self,
        batch: &Batch,
        stop: &AtomicBool,
        on_step: &mut dyn FnMut(u64, usize, BatchLoss),
    ) -> Result<BatchEnd> {
        let sched = self.schedule;
        let start = sched.analysis_start();
        let n = sched.frame_len;
        let mut works: Vec<ItemWork> = Vec::new();
        let mut dys: Vec<Vec<f64>> = vec![vec![0.0; n]; sched.batch];
        let ranges = split(sched.batch, self.config.threads);
        for f in 0..sched.frames {
            if let Some(end) = self.frame_gate(stop) {
                return Ok(end);
            }
            let trainer = match &self.student {
                Network::WaveNet(w) => WaveNetTrainer::<T>::new(w),
                _ => unreachable!(),
            };
            let ctx = trainer.context();
            // Input of item b for this frame: the frame and the receptive field before it
            // (zeros before the tone's start, as the teacher saw them).
            let frame_input = |b: usize| -> Vec<T> {
                let end = start + (f + 1) * n;
                let first = end as isize - (n + ctx) as isize;
                (first..end as isize)
                    .map(|i| {
                        if i < 0 {
                            T::zero()
                        } else {
                            T::from_f64_lossy(batch.inputs[b][i as usize])
                        }
                    })
                    .collect()
            };
            // Pass 1: outputs of every item (the NMR term couples the items through its
            // batch geometric mean, so every gradient needs every output first).
            let preds: Vec<Vec<f64>> = ranges
                .par_iter()
                .flat_map_iter(|r| {
                    let mut tape: WaveNetTape<T> = trainer.tape();
                    let mut y = vec![T::zero(); n];
                    r.clone()
                        .map(|b| {
                            trainer.forward(&frame_input(b), &mut tape, &mut y);
                            y.iter().map(|v| v.to_f64_exact()).collect::<Vec<f64>>()
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            let loss = self.frame_loss(&preds, batch, f, &mut works, &mut dys)?;
            // Pass 2: forward again with the tape and back-propagate, one item at a time
            // per thread (a tape per item for the whole batch would need gigabytes).
            let grads: Vec<Vec<T>> = ranges
                .par_iter()
                .map(|r| {
                    let mut tape: WaveNetTape<T> = trainer.tape();
                    let mut y = vec![T::zero(); n];
                    let mut g = vec![T::zero(); trainer.num_params()];
                    for b in r.clone() {
                        trainer.forward(&frame_input(b), &mut tape, &mut y);
                        let dy: Vec<T> = cast_vec(&dys[b]);
                        trainer.backward(&tape, &dy, &mut g);
                    }
                    g
                })
                .collect();
            let np = trainer.num_params();
            self.apply_step(&loss, &mut sum_in_order(grads.iter().map(|g| &g[..]), np))?;
            on_step(self.step, self.epoch, loss);
        }
        Ok(BatchEnd::Complete)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NaN/Inf loss or gradient stops training with a clear error and leaves the student
    /// (and so the last good checkpoint) untouched.
    #[test]
    fn non_finite_steps_are_refused() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/reference/guitarml_gru7x1_skip_bias/guitarml_gru7x1_skip_bias.json"
        );
        let net = crate::load_model(std::path::Path::new(path))
            .unwrap()
            .network;
        let config = FinetuneConfig {
            frame_seconds: Some(0.25),
            pre_emphasis: PreEmphasis::None,
            validation_stride: 88,
            ..FinetuneConfig::default()
        };
        let mut t = Finetuner::new(&net, 16000.0, config).unwrap();
        let before = t.student.params();
        let target: Vec<f64> = (0..4096).map(|i| (i as f64 * 0.05).sin()).collect();
        let pred = vec![0.0; 4096];
        let loss = t
            .loss
            .batch(&[&pred[..]], &[&target[..]], &mut Vec::new(), None)
            .unwrap();
        let mut grad = vec![0.0; before.len()];
        grad[3] = f64::NAN;
        let err = t.apply_step(&loss, &mut grad).unwrap_err();
        assert!(matches!(err, Error::NonFinite(_)), "{err}");
        assert!(err.to_string().contains("NaN/Inf"), "{err}");
        assert_eq!(t.student.params(), before);
        assert_eq!(t.step, 0);
    }

    /// Conditioned models: each tone of a batch has its own knob setting in 0..1, and its
    /// target is the teacher's output at that setting; validation runs the grid.
    #[test]
    fn conditioned_batches_draw_knobs_per_tone() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/guitarml_family/guitarml_gru4x1_knobs2/guitarml_gru4x1_knobs2.json"
        );
        let net = crate::load_model(std::path::Path::new(path))
            .unwrap()
            .network;
        let config = FinetuneConfig {
            pre_emphasis: PreEmphasis::None,
            validation_stride: 44,
            batch_size: Some(3),
            // At 16 kHz the default 0.1 s frame is shorter than the NMR's 2048-sample frame.
            frame_seconds: Some(0.25),
            ..FinetuneConfig::default()
        };
        let mut t = Finetuner::new(&net, 16000.0, config).unwrap();
        // 2 validation tones x 3 levels x 3^2 knob settings.
        assert_eq!(t.validation.tones.len(), 2 * 3 * 9);
        let b = t.next_batch::<f64>().unwrap();
        assert_eq!(b.knobs.len(), 3);
        assert!(b.knobs.iter().flatten().all(|k| (0.0..1.0).contains(k)));
        assert_ne!(b.knobs[0], b.knobs[1]);
        let start = t.schedule.analysis_start();
        for (i, k) in b.knobs.iter().enumerate() {
            let mut teacher = net.clone();
            teacher.set_knobs(k).unwrap();
            let y = teacher.process::<f64>(&b.inputs[i]);
            // The alias-free target is the teacher's output less its (small) aliasing.
            let rel = |y: &[f64]| {
                let d: f64 = y
                    .iter()
                    .zip(&b.targets[i])
                    .map(|(a, b)| (a - b).powi(2))
                    .sum();
                d / y.iter().map(|a| a * a).sum::<f64>()
            };
            let near = rel(&y[start..]);
            assert!(
                near < 1e-2,
                "item {i}: target is not the teacher at its knobs ({near:e})"
            );
            let mut other = net.clone();
            other.set_knobs(&[1.0 - k[0], 1.0 - k[1]]).unwrap();
            let z = other.process::<f64>(&b.inputs[i]);
            assert!(
                rel(&z[start..]) > 10.0 * near,
                "item {i}: knobs make no difference"
            );
        }
    }

    #[test]
    fn split_covers_everything_evenly() {
        let r = split(40, 3);
        assert_eq!(r, vec![0..13, 13..26, 26..40]);
        assert_eq!(split(2, 8).len(), 2);
    }
}
