//! Pre-training from audio (paper sec. 3.2): a network learns a device from a DI signal and
//! the device's output, with the same engines as fine-tuning.
//!
//! As the paper's custom models were trained (with the authors' Automated-GuitarAmpModelling):
//! - recurrent networks: segments of `warmup + frames × frame_len` samples (1000 + 10 × 2048);
//!   each batch warms its states on the first 1000 samples without gradient, then truncated
//!   BPTT over frames of 2048, one loss/backward/Adam step per frame, the state carried
//!   (detached) into the next frame;
//! - WaveNets: segments of 16384 output samples, each fed with the receptive field of input
//!   before it; one step per batch;
//! - batch 40; the loss of [`crate::loss::pretrain`] (0.75 A-weighted ESR + 0.25 DC); Adam.
//!
//! An epoch is every segment of the training audio once, in a seeded random order. After each
//! epoch the whole validation audio is run through the network from its initial state by the
//! streaming processor (`Network::process`, f64), and its loss decides: the best network is
//! kept; after `plateau` epochs without improvement the learning rate halves
//! (`ReduceLROnPlateau(factor 0.5)`, as the authors' scripts do); after `patience` the run stops.
//! Checkpoints are taken between batches (an epoch's order is regenerated from the seed and
//! the epoch's number), so a resumed run continues exactly as an uninterrupted one.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::adam::{Adam, AdamConfig};
use super::checkpoint::{open, seal};
use super::finetune::{Precision, StopReason};
use super::{split, sum_in_order};
use crate::loss::pretrain::{ItemLoss, PretrainLoss, PretrainLossValue, PretrainWeights};
use crate::models::rnn_train::{RnnState, RnnTape, RnnTrainer};
use crate::models::wavenet_train::{WaveNetTape, WaveNetTrainer};
use crate::models::{cast_vec, Network, Real};
use crate::{Error, Result};

/// Settings of a pre-training run (defaults: [`PretrainConfig::for_network`]).
#[derive(Clone, Debug, PartialEq)]
pub struct PretrainConfig {
    pub seed: u64,
    pub batch_size: usize,
    /// Recurrent: samples that warm the state before the first frame of a segment.
    pub warmup: usize,
    /// Recurrent: samples per TBPTT frame (one optimiser step each).
    pub frame_len: usize,
    /// Recurrent: frames per segment. WaveNet: unused.
    pub frames: usize,
    /// WaveNet: output samples per segment.
    pub segment_len: usize,
    pub adam: AdamConfig,
    pub weights: PretrainWeights,
    pub precision: Precision,
    pub threads: usize,
    pub max_epochs: Option<usize>,
    pub max_steps: Option<u64>,
    pub max_duration: Option<Duration>,
    /// Epochs without a better validation loss before the learning rate halves.
    pub plateau: usize,
    /// Epochs without a better validation loss before the run stops.
    pub patience: Option<usize>,
    pub checkpoint_path: Option<PathBuf>,
    pub checkpoint_interval: Duration,
}

/// Most epochs by default: the paper's "maximum of 5k epochs".
pub const MAX_EPOCHS: usize = 5000;

impl PretrainConfig {
    /// The paper's settings for `net` (sec. 3.2), with the learning rates of the official
    /// trainers: 5e-3 for recurrent networks (Automated-GuitarAmpModelling's default), 4e-3
    /// for WaveNets (neural-amp-modeler's). Training runs in f32 (the loss in f64): a model
    /// trained from scratch has no f64 result to reproduce, and f32 is the faster engine.
    pub fn for_network(net: &Network) -> Self {
        let lr = match net {
            Network::WaveNet(_) => 4e-3,
            _ => 5e-3,
        };
        PretrainConfig {
            seed: 0,
            batch_size: 40,
            warmup: 1000,
            frame_len: 2048,
            frames: 10,
            segment_len: 16384,
            adam: AdamConfig {
                lr,
                ..AdamConfig::default()
            },
            weights: PretrainWeights::default(),
            precision: Precision::F32,
            threads: rayon::current_num_threads(),
            max_epochs: Some(MAX_EPOCHS),
            max_steps: None,
            max_duration: None,
            plateau: 5,
            patience: Some(20),
            checkpoint_path: None,
            checkpoint_interval: Duration::from_secs(60),
        }
    }
}

/// A DI signal and the device's output for it (aligned, equal lengths).
#[derive(Clone, Debug, PartialEq)]
pub struct AudioPair {
    pub input: Vec<f64>,
    pub target: Vec<f64>,
}

impl AudioPair {
    fn check(&self, what: &str) -> Result<()> {
        if self.input.len() != self.target.len() {
            return Err(Error::InvalidArgument(format!(
                "{what}: the input has {} samples and the target {}; they must be aligned and of equal length",
                self.input.len(),
                self.target.len()
            )));
        }
        if let Some(i) = self
            .input
            .iter()
            .chain(&self.target)
            .position(|v| !v.is_finite())
        {
            return Err(Error::InvalidArgument(format!(
                "{what}: sample {} is not finite",
                i % self.input.len().max(1)
            )));
        }
        Ok(())
    }

    fn checksum(&self) -> String {
        let bytes: Vec<u8> = self
            .input
            .iter()
            .chain(&self.target)
            .flat_map(|v| v.to_le_bytes())
            .collect();
        crate::io::checksum(&bytes)
    }
}

/// What a run reports as it goes.
#[derive(Clone, Debug, PartialEq)]
pub enum PretrainEvent {
    Step {
        step: u64,
        epoch: usize,
        loss: PretrainLossValue,
        steps_per_second: f64,
    },
    Validation(PretrainValidation),
    Checkpoint {
        path: PathBuf,
        step: u64,
    },
}

/// The validation loss after an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainValidation {
    pub epoch: usize,
    pub step: u64,
    /// The loss and its terms on the whole validation audio (linear).
    pub loss: f64,
    pub esr: f64,
    pub dc: f64,
    pub improved: bool,
    /// Learning rate of the next epoch.
    pub lr: f64,
    pub seconds: f64,
}

/// The end of a run.
#[derive(Clone, Debug)]
pub struct PretrainOutcome {
    /// The network of the best validation loss (the last one if never validated).
    pub best: Network,
    pub last: Network,
    pub steps: u64,
    pub epochs: usize,
    pub elapsed: Duration,
    pub stop: StopReason,
    pub history: Vec<PretrainValidation>,
}

/// A resumable snapshot of a pre-training run, taken between batches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainCheckpoint {
    pub fingerprint: String,
    pub params: Vec<f64>,
    pub adam: Adam,
    pub step: u64,
    pub epoch: usize,
    pub batch_in_epoch: usize,
    pub lr_scale: f64,
    pub best_loss: Option<f64>,
    pub best_params: Option<Vec<f64>>,
    pub since_improvement: usize,
    pub since_lr_change: usize,
    pub history: Vec<PretrainValidation>,
    pub elapsed_seconds: f64,
}

/// Envelope of pre-training checkpoints.
const CHECKPOINT_FORMAT: &str = "dealias training checkpoint";
const CHECKPOINT_VERSION: u32 = 1;

impl PretrainCheckpoint {
    /// Writes the checkpoint atomically, checksummed.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        crate::io::write_atomic(path, &seal(CHECKPOINT_FORMAT, CHECKPOINT_VERSION, self)?)
    }

    /// Reads a checkpoint, verifying its envelope and checksum.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let bytes = crate::io::read_regular_file(path, 2 << 30, "checkpoint")?;
        open(&bytes, CHECKPOINT_FORMAT, CHECKPOINT_VERSION)
            .map_err(|m| Error::Checkpoint(format!("{}: {m}", path.display())))
    }
}

/// How a batch ended.
enum BatchEnd {
    Complete,
    Interrupted,
    StepLimit,
}

/// A pre-training run in progress.
pub struct Pretrainer {
    fs: f64,
    net: Network,
    config: PretrainConfig,
    loss: PretrainLoss,
    train: AudioPair,
    validation: AudioPair,
    /// Where each training segment starts (its first output sample).
    starts: Vec<usize>,
    /// Samples of input before a segment's first output (WaveNet: receptive field - 1).
    context: usize,
    adam: Adam,
    order: Vec<usize>,
    step: u64,
    epoch: usize,
    batch_in_epoch: usize,
    lr_scale: f64,
    best_loss: Option<f64>,
    best_params: Option<Vec<f64>>,
    since_improvement: usize,
    since_lr_change: usize,
    history: Vec<PretrainValidation>,
    elapsed_before: Duration,
}

impl Pretrainer {
    /// Starts a run from `initial` (e.g. [`crate::models::init::Architecture::initial_network`])
    /// on `train`, judged on `validation`, at sample rate `fs`.
    pub fn new(
        initial: Network,
        fs: f64,
        train: AudioPair,
        validation: AudioPair,
        config: PretrainConfig,
    ) -> Result<Self> {
        initial.check_trainable()?;
        if matches!(&initial, Network::Rnn(r) if r.num_knobs() > 0) {
            return Err(Error::InvalidArgument(
                "pre-training knob-conditioned networks is not supported".into(),
            ));
        }
        train.check("training audio")?;
        validation.check("validation audio")?;
        let bad = |m: String| Err(Error::InvalidArgument(m));
        if config.batch_size == 0 || config.frame_len == 0 || config.frames == 0 {
            return bad("batch size, frame length and frames must be at least 1".into());
        }
        if config.segment_len == 0 || !(config.adam.lr.is_finite() && config.adam.lr > 0.0) {
            return bad("the segment length and the learning rate must be positive".into());
        }
        let loss = PretrainLoss::new(fs, config.weights)?;
        let (context, seg) = match &initial {
            Network::WaveNet(_) => (initial.receptive_field() - 1, config.segment_len),
            _ => (0, config.warmup + config.frames * config.frame_len),
        };
        let starts: Vec<usize> = (context..)
            .step_by(seg)
            .take_while(|s| s + seg <= train.input.len())
            .collect();
        if starts.is_empty() {
            return bad(format!(
                "the training audio ({} samples) is shorter than one training segment ({} samples{})",
                train.input.len(),
                context + seg,
                if context > 0 { ", receptive field included" } else { "" }
            ));
        }
        if validation.input.len() < 2 * config.frame_len.min(seg) {
            return bad(format!(
                "the validation audio has {} samples; it needs at least {}",
                validation.input.len(),
                2 * config.frame_len.min(seg)
            ));
        }
        let n = initial.num_params();
        let mut t = Pretrainer {
            fs,
            net: initial,
            loss,
            train,
            validation,
            starts,
            context,
            adam: Adam::new(n, config.adam),
            order: Vec::new(),
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            lr_scale: 1.0,
            best_loss: None,
            best_params: None,
            since_improvement: 0,
            since_lr_change: 0,
            history: Vec::new(),
            elapsed_before: Duration::ZERO,
            config,
        };
        t.order = t.epoch_order();
        Ok(t)
    }

    /// The segments of the current epoch in training order: a shuffle seeded by the run's
    /// seed and the epoch's number, so that any epoch's order can be regenerated on resume.
    fn epoch_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.starts.len()).collect();
        let seed = self.config.seed ^ (self.epoch as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        order
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.starts.len().div_ceil(self.config.batch_size)
    }

    /// Optimiser steps per epoch.
    pub fn steps_per_epoch(&self) -> u64 {
        let per_batch = match self.net {
            Network::WaveNet(_) => 1,
            _ => self.config.frames,
        };
        (self.batches_per_epoch() * per_batch) as u64
    }

    /// Training segments per epoch.
    pub fn segments(&self) -> usize {
        self.starts.len()
    }

    /// Optimiser steps taken.
    pub fn step(&self) -> u64 {
        self.step
    }

    fn fingerprint(&self) -> String {
        let c = &self.config;
        format!(
            "kind={} params={} fs={} seed={} batch={} warmup={} frame={}x{} segment={} adam={:?} w={:?} prec={:?} threads={} plateau={} train={} val={}",
            self.net.kind(),
            self.net.num_params(),
            self.fs,
            c.seed,
            c.batch_size,
            c.warmup,
            c.frames,
            c.frame_len,
            c.segment_len,
            c.adam,
            c.weights,
            c.precision,
            c.threads,
            c.plateau,
            self.train.checksum(),
            self.validation.checksum(),
        )
    }

    /// The state between batches.
    pub fn checkpoint(&self, elapsed: Duration) -> PretrainCheckpoint {
        PretrainCheckpoint {
            fingerprint: self.fingerprint(),
            params: self.net.params(),
            adam: self.adam.clone(),
            step: self.step,
            epoch: self.epoch,
            batch_in_epoch: self.batch_in_epoch,
            lr_scale: self.lr_scale,
            best_loss: self.best_loss,
            best_params: self.best_params.clone(),
            since_improvement: self.since_improvement,
            since_lr_change: self.since_lr_change,
            history: self.history.clone(),
            elapsed_seconds: elapsed.as_secs_f64(),
        }
    }

    /// Continues from a checkpoint of a run with the same network, audio and settings.
    pub fn resume(&mut self, ck: &PretrainCheckpoint) -> Result<()> {
        if ck.fingerprint != self.fingerprint() {
            return Err(Error::InvalidArgument(format!(
                "the checkpoint belongs to another run (different architecture, audio or settings):\n  checkpoint: {}\n  this run:   {}",
                ck.fingerprint,
                self.fingerprint()
            )));
        }
        let n = self.net.num_params();
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        let lengths_ok = ck.params.len() == n
            && ck.adam.m.len() == n
            && ck.adam.v.len() == n
            && ck.best_params.as_ref().is_none_or(|p| p.len() == n);
        let fits = lengths_ok
            && finite(&ck.params)
            && finite(&ck.adam.m)
            && finite(&ck.adam.v)
            && ck.lr_scale.is_finite()
            && ck.lr_scale > 0.0
            && ck.lr_scale <= 1.0
            && ck.batch_in_epoch < self.batches_per_epoch()
            && ck.elapsed_seconds.is_finite()
            && ck.elapsed_seconds >= 0.0;
        if !fits {
            return Err(Error::Checkpoint(
                "the checkpoint's values do not fit this run (lengths, finite values, counters)"
                    .into(),
            ));
        }
        self.net.set_params(&ck.params)?;
        self.adam = ck.adam.clone();
        self.step = ck.step;
        self.epoch = ck.epoch;
        self.order = self.epoch_order();
        self.batch_in_epoch = ck.batch_in_epoch;
        self.lr_scale = ck.lr_scale;
        self.best_loss = ck.best_loss;
        self.best_params = ck.best_params.clone();
        self.since_improvement = ck.since_improvement;
        self.since_lr_change = ck.since_lr_change;
        self.history = ck.history.clone();
        self.elapsed_before = Duration::from_secs_f64(ck.elapsed_seconds);
        Ok(())
    }

    /// The loss of `net` on the whole validation audio, from its initial state.
    pub fn validation_loss(&self, net: &Network) -> Result<PretrainLossValue> {
        let y = net.process::<f64>(&self.validation.input);
        self.loss.batch(&[&y], &[&self.validation.target], None)
    }

    /// Runs until a limit, early stopping or `stop` (checked between steps; the last batch
    /// boundary is then the checkpoint).
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        on_event: &mut dyn FnMut(PretrainEvent),
    ) -> Result<PretrainOutcome> {
        match self.config.precision {
            Precision::F64 => self.run_in::<f64>(stop, on_event),
            Precision::F32 => self.run_in::<f32>(stop, on_event),
        }
    }

    fn limit_reached(&self, elapsed: Duration) -> Option<StopReason> {
        let c = &self.config;
        if c.max_steps.is_some_and(|m| self.step >= m) {
            Some(StopReason::MaxSteps)
        } else if c.max_epochs.is_some_and(|m| self.epoch >= m) {
            Some(StopReason::MaxEpochs)
        } else if c.max_duration.is_some_and(|m| elapsed >= m) {
            Some(StopReason::TimeBudget)
        } else if c.patience.is_some_and(|p| self.since_improvement >= p) {
            Some(StopReason::EarlyStopping)
        } else {
            None
        }
    }

    fn write_checkpoint(
        &self,
        ck: &PretrainCheckpoint,
        on_event: &mut dyn FnMut(PretrainEvent),
    ) -> Result<()> {
        if let Some(path) = &self.config.checkpoint_path {
            ck.save(path)?;
            on_event(PretrainEvent::Checkpoint {
                path: path.clone(),
                step: ck.step,
            });
        }
        Ok(())
    }

    fn run_in<T: Real>(
        &mut self,
        stop: &AtomicBool,
        on_event: &mut dyn FnMut(PretrainEvent),
    ) -> Result<PretrainOutcome> {
        let started = Instant::now();
        let before = self.elapsed_before;
        let elapsed = move || before + started.elapsed();
        let mut boundary = self.checkpoint(elapsed());
        let mut last_checkpoint = Instant::now();
        let mut timer = (Instant::now(), self.step);
        let reason = loop {
            if let Some(r) = self.limit_reached(elapsed()) {
                break r;
            }
            if stop.load(Ordering::SeqCst) {
                break StopReason::Interrupted;
            }
            let b = self.config.batch_size;
            let first = self.batch_in_epoch * b;
            let items: Vec<usize> = self.order[first..(first + b).min(self.order.len())].to_vec();
            let mut on_step = |s: u64, epoch: usize, loss: PretrainLossValue| {
                let dt = timer.0.elapsed().as_secs_f64();
                let rate = if dt > 0.0 {
                    (s - timer.1) as f64 / dt
                } else {
                    0.0
                };
                if dt > 10.0 {
                    timer = (Instant::now(), s);
                }
                on_event(PretrainEvent::Step {
                    step: s,
                    epoch,
                    loss,
                    steps_per_second: rate,
                });
            };
            let end = match &self.net {
                Network::WaveNet(_) => self.train_batch_wavenet::<T>(&items, stop, &mut on_step),
                _ => self.train_batch_rnn::<T>(&items, stop, &mut on_step),
            };
            match end {
                Ok(BatchEnd::Complete) => {}
                Ok(BatchEnd::StepLimit) => {
                    self.write_checkpoint(&boundary, on_event)?;
                    break StopReason::MaxSteps;
                }
                Ok(BatchEnd::Interrupted) => {
                    self.write_checkpoint(&boundary, on_event)?;
                    self.resume(&boundary)?;
                    break StopReason::Interrupted;
                }
                Err(e) => {
                    self.write_checkpoint(&boundary, on_event)?;
                    return Err(e);
                }
            }
            self.batch_in_epoch += 1;
            if self.batch_in_epoch == self.batches_per_epoch() {
                self.batch_in_epoch = 0;
                self.epoch += 1;
                self.order = self.epoch_order();
                let v = self.validate(elapsed())?;
                on_event(PretrainEvent::Validation(v));
            }
            boundary = self.checkpoint(elapsed());
            if last_checkpoint.elapsed() >= self.config.checkpoint_interval {
                self.write_checkpoint(&boundary, on_event)?;
                last_checkpoint = Instant::now();
            }
        };
        let mid_batch = self.step != boundary.step;
        if reason != StopReason::Interrupted
            && self.history.last().is_none_or(|v| v.step != self.step)
        {
            let v = self.validate(elapsed())?;
            on_event(PretrainEvent::Validation(v));
        }
        if !mid_batch {
            self.write_checkpoint(&self.checkpoint(elapsed()), on_event)?;
        }
        let mut best = self.net.clone();
        if let Some(p) = &self.best_params {
            best.set_params(p)?;
        }
        Ok(PretrainOutcome {
            best,
            last: self.net.clone(),
            steps: self.step,
            epochs: self.epoch,
            elapsed: elapsed(),
            stop: reason,
            history: self.history.clone(),
        })
    }

    fn validate(&mut self, elapsed: Duration) -> Result<PretrainValidation> {
        let l = self.validation_loss(&self.net)?;
        let improved = l.value.is_finite() && self.best_loss.is_none_or(|b| l.value < b);
        if improved {
            self.best_loss = Some(l.value);
            self.best_params = Some(self.net.params());
            self.since_improvement = 0;
            self.since_lr_change = 0;
        } else {
            self.since_improvement += 1;
            self.since_lr_change += 1;
            if self.since_lr_change >= self.config.plateau {
                self.lr_scale *= 0.5;
                self.since_lr_change = 0;
            }
        }
        let v = PretrainValidation {
            epoch: self.epoch,
            step: self.step,
            loss: l.value,
            esr: l.esr,
            dc: l.dc,
            improved,
            lr: self.config.adam.lr * self.lr_scale,
            seconds: elapsed.as_secs_f64(),
        };
        self.history.push(v);
        Ok(v)
    }

    fn apply_step(&mut self, loss: &PretrainLossValue, grad: &[f64]) -> Result<()> {
        if !loss.value.is_finite() || grad.iter().any(|g| !g.is_finite()) {
            return Err(Error::NonFinite(format!(
                "the loss or its gradient became NaN/Inf at step {} (loss {}); the last good checkpoint was kept",
                self.step + 1,
                loss.value
            )));
        }
        let mut p = self.net.params();
        self.adam
            .update_with_lr(&mut p, grad, self.config.adam.lr * self.lr_scale);
        self.net.set_params(&p)?;
        self.step += 1;
        Ok(())
    }

    fn gate(&self, stop: &AtomicBool) -> Option<BatchEnd> {
        if stop.load(Ordering::SeqCst) {
            Some(BatchEnd::Interrupted)
        } else if self.config.max_steps.is_some_and(|m| self.step >= m) {
            Some(BatchEnd::StepLimit)
        } else {
            None
        }
    }

    fn train_batch_rnn<T: Real>(
        &mut self,
        items: &[usize],
        stop: &AtomicBool,
        on_step: &mut dyn FnMut(u64, usize, PretrainLossValue),
    ) -> Result<BatchEnd> {
        let (warm, fl) = (self.config.warmup, self.config.frame_len);
        let seg = warm + self.config.frames * fl;
        let inputs: Vec<Vec<T>> = items
            .iter()
            .map(|&k| cast_vec(&self.train.input[self.starts[k]..self.starts[k] + seg]))
            .collect();
        let targets: Vec<Vec<f64>> = items
            .iter()
            .map(|&k| self.train.target[self.starts[k]..self.starts[k] + seg].to_vec())
            .collect();
        let trainer_of = |net: &Network| match net {
            Network::Rnn(r) => RnnTrainer::<T>::new(r),
            _ => unreachable!("recurrent batch of a recurrent network"),
        };
        struct Sub<T: Real> {
            range: std::ops::Range<usize>,
            states: Vec<RnnState<T>>,
            tape: RnnTape<T>,
            ys: Vec<Vec<T>>,
            grad: Vec<T>,
            losses: Vec<ItemLoss>,
        }
        let trainer = trainer_of(&self.net);
        let np = trainer.num_params();
        let mut subs: Vec<Sub<T>> = split(items.len(), self.config.threads)
            .into_iter()
            .map(|r| Sub {
                states: r.clone().map(|_| trainer.initial_state()).collect(),
                tape: RnnTape::new(),
                ys: vec![vec![T::zero(); warm.max(fl)]; r.len()],
                grad: vec![T::zero(); np],
                losses: Vec::new(),
                range: r,
            })
            .collect();
        subs.par_iter_mut().for_each(|s| {
            let xs: Vec<&[T]> = inputs[s.range.clone()].iter().map(|x| &x[..warm]).collect();
            let mut ys: Vec<&mut [T]> = s.ys.iter_mut().map(|y| &mut y[..warm]).collect();
            trainer.run(&xs, &mut s.states, &mut ys);
        });
        for f in 0..self.config.frames {
            if let Some(end) = self.gate(stop) {
                return Ok(end);
            }
            let trainer = trainer_of(&self.net);
            let (a, b) = (warm + f * fl, warm + (f + 1) * fl);
            let frame_targets: Vec<&[f64]> = targets.iter().map(|t| &t[a..b]).collect();
            let scales = self.loss.scales(&frame_targets)?;
            let loss = &self.loss;
            subs.par_iter_mut().for_each(|s| {
                let xs: Vec<&[T]> = inputs[s.range.clone()].iter().map(|x| &x[a..b]).collect();
                let mut ys: Vec<&mut [T]> = s.ys.iter_mut().map(|y| &mut y[..fl]).collect();
                trainer.forward(&xs, &mut s.states, &mut s.tape, &mut ys);
                let mut dys: Vec<Vec<T>> = Vec::with_capacity(s.range.len());
                s.losses.clear();
                for (j, k) in s.range.clone().enumerate() {
                    let pred: Vec<f64> = s.ys[j][..fl].iter().map(|v| v.to_f64_exact()).collect();
                    let mut g = Vec::new();
                    s.losses
                        .push(loss.item(&pred, frame_targets[k], &scales, Some(&mut g)));
                    dys.push(cast_vec(&g));
                }
                let dy_refs: Vec<&[T]> = dys.iter().map(|d| d.as_slice()).collect();
                s.grad.iter_mut().for_each(|g| *g = T::zero());
                // TBPTT: the gradient of the frame's starting state is dropped.
                trainer.backward(&s.tape, &dy_refs, &mut s.grad);
            });
            let item_losses: Vec<ItemLoss> = subs.iter().flat_map(|s| s.losses.clone()).collect();
            let value = self.loss.combine(&item_losses, &scales);
            self.apply_step(&value, &sum_in_order(subs.iter().map(|s| &s.grad[..]), np))?;
            on_step(self.step, self.epoch, value);
        }
        Ok(BatchEnd::Complete)
    }

    fn train_batch_wavenet<T: Real>(
        &mut self,
        items: &[usize],
        stop: &AtomicBool,
        on_step: &mut dyn FnMut(u64, usize, PretrainLossValue),
    ) -> Result<BatchEnd> {
        if let Some(end) = self.gate(stop) {
            return Ok(end);
        }
        let n = self.config.segment_len;
        let ctx = self.context;
        let trainer = match &self.net {
            Network::WaveNet(w) => WaveNetTrainer::<T>::new(w),
            _ => unreachable!("WaveNet batch of a WaveNet"),
        };
        debug_assert_eq!(trainer.context(), ctx);
        let targets: Vec<&[f64]> = items
            .iter()
            .map(|&k| &self.train.target[self.starts[k]..self.starts[k] + n])
            .collect();
        let scales = self.loss.scales(&targets)?;
        let (loss, train, starts) = (&self.loss, &self.train, &self.starts);
        let parts: Vec<(Vec<T>, Vec<ItemLoss>)> = split(items.len(), self.config.threads)
            .par_iter()
            .map(|r| {
                let mut tape: WaveNetTape<T> = trainer.tape();
                let mut y = vec![T::zero(); n];
                let mut g = vec![T::zero(); trainer.num_params()];
                let mut losses = Vec::with_capacity(r.len());
                for j in r.clone() {
                    let s = starts[items[j]];
                    let x: Vec<T> = cast_vec(&train.input[s - ctx..s + n]);
                    trainer.forward(&x, &mut tape, &mut y);
                    let pred: Vec<f64> = y.iter().map(|v| v.to_f64_exact()).collect();
                    let mut dy = Vec::new();
                    losses.push(loss.item(&pred, targets[j], &scales, Some(&mut dy)));
                    trainer.backward(&tape, &cast_vec(&dy), &mut g);
                }
                (g, losses)
            })
            .collect();
        let item_losses: Vec<ItemLoss> = parts.iter().flat_map(|p| p.1.clone()).collect();
        let value = self.loss.combine(&item_losses, &scales);
        let np = trainer.num_params();
        self.apply_step(&value, &sum_in_order(parts.iter().map(|p| &p.0[..]), np))?;
        on_step(self.step, self.epoch, value);
        Ok(BatchEnd::Complete)
    }
}

/// Seed offset of the built-in validation signal (a different draw from the training one).
const VALIDATION_SEED: u64 = 0x7a11_da7e;

impl AudioPair {
    /// The built-in training signal ([`crate::dsp::training_signal`]) of `seconds` at `fs`
    /// from `seed`, rendered by `device`; and a validation pair of a fifth of that length
    /// (at least the signal's minimum) from another seed.
    pub fn from_device(
        device: &crate::device::Device,
        fs: f64,
        seconds: f64,
        seed: u64,
    ) -> Result<(AudioPair, AudioPair)> {
        use crate::dsp::training_signal::{training_signal, MIN_SECONDS};
        let render = |secs: f64, seed: u64| -> Result<AudioPair> {
            let input = training_signal(fs, secs, seed)?;
            let target = device.render(&input, fs)?;
            Ok(AudioPair { input, target })
        };
        let train = render(seconds, seed)?;
        let validation = render((seconds / 5.0).max(MIN_SECONDS), seed ^ VALIDATION_SEED)?;
        Ok((train, validation))
    }

    /// Splits a recording into training audio and its last `fraction` for validation.
    pub fn split_validation(self, fraction: f64) -> Result<(AudioPair, AudioPair)> {
        if !(fraction > 0.0 && fraction < 1.0) {
            return Err(Error::InvalidArgument(format!(
                "the validation fraction must be in (0, 1), not {fraction}"
            )));
        }
        self.check("audio")?;
        let n = self.input.len();
        let cut = n - ((n as f64 * fraction).round() as usize).clamp(1, n - 1);
        let validation = AudioPair {
            input: self.input[cut..].to_vec(),
            target: self.target[cut..].to_vec(),
        };
        let mut train = self;
        train.input.truncate(cut);
        train.target.truncate(cut);
        Ok((train, validation))
    }
}
