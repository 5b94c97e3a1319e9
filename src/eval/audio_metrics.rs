//! Audio-dataset metrics of Table 1 (paper sec. 2.6, spec sec. 7): the guitar-and-bass (G+B)
//! ESR with an A-weighting pre-emphasis, as the authors' validation weights it (Wright &
//! Välimäki's perceptual pre-emphasis, paper ref. \[28\]), and the multi-resolution mel-spectral
//! loss ([`MelStftLoss`]) against a reference (the teacher's output, or a device recording).
//!
//!
//! The A-weighting filter is [`crate::dsp::a_weighting::AWeighting`]; it runs causally on both
//! signals before the ESR; the weighting only matters through the ratio.

use rayon::prelude::*;

use super::sine_set::{run_network, RunOptions};
use crate::dsp::a_weighting::AWeighting;
use crate::loss::esr::esr;
use crate::loss::mrsl::MelStftLoss;
use crate::models::Network;
use crate::{Error, Result};

/// Audio metrics of one model's output against a reference.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AudioMetrics {
    /// ESR of the A-weighted signals (linear).
    pub esr: f64,
    /// Multi-resolution mel-spectral loss (linear; Table 1 prints `10 log10`).
    pub mrsl: f64,
}

/// G+B metrics over several clips: the ESR of the A-weighted signals pooled over all clips
/// (sum of error energies over sum of reference energies, as one long signal), and the MRSL
/// averaged over clips weighted by their lengths. Each `(output, reference)` pair must have
/// equal lengths.
pub fn audio_metrics(fs: f64, clips: &[(&[f64], &[f64])]) -> Result<AudioMetrics> {
    if clips.is_empty() {
        return Err(Error::InvalidArgument("no audio clips".into()));
    }
    let aw = AWeighting::new(fs)?;
    let mrsl = MelStftLoss::new(fs);
    let (mut err, mut sig, mut m, mut total) = (0.0, 0.0, 0.0, 0.0);
    for (y, r) in clips {
        if y.len() != r.len() {
            return Err(Error::InvalidArgument(format!(
                "output and reference lengths differ ({} vs {})",
                y.len(),
                r.len()
            )));
        }
        let (yw, rw) = (aw.apply(y), aw.apply(r));
        let s: f64 = rw.iter().map(|v| v * v).sum();
        err += esr(&yw, &rw) * s;
        sig += s;
        let n = y.len() as f64;
        m += mrsl.loss(y, r)? * n;
        total += n;
    }
    Ok(AudioMetrics {
        esr: err / sig,
        mrsl: m / total,
    })
}

/// An audio clip for the G+B metrics: the DI input and, optionally, the device's recording of
/// it (without one, the teacher's output is the reference).
#[derive(Clone, Debug)]
pub struct Clip {
    pub input: Vec<f64>,
    pub reference: Option<Vec<f64>>,
}

/// The built-in guitar and bass clips ([`crate::dsp::training_signal::test_clips`]) at `fs`,
/// rendered through `device` when given (the reference), as the G+B set when the user gives
/// no recordings. Returns the clips and their names.
pub fn builtin_clips(
    fs: f64,
    device: Option<&crate::device::Device>,
) -> Result<(Vec<Clip>, Vec<&'static str>)> {
    let mut clips = Vec::new();
    let mut names = Vec::new();
    for (name, input) in crate::dsp::training_signal::test_clips(fs)? {
        let reference = device.map(|d| d.render(&input, fs)).transpose()?;
        clips.push(Clip { input, reference });
        names.push(name);
    }
    Ok((clips, names))
}

/// What the G+B metrics of clips from [`builtin_clips`] are against, in words.
pub fn reference_label(device: Option<&crate::device::Device>) -> String {
    match device {
        Some(d) => format!("the {} device", d.name),
        None => "the teacher's output".into(),
    }
}

/// The G+B metrics of a teacher and its student on the same clips.
#[derive(Clone, Debug)]
pub struct ClipComparison {
    pub teacher: AudioMetrics,
    pub student: AudioMetrics,
    /// Clips whose reference recording's length differed from the input's, as
    /// `(clip index, reference length, input length)`; they were compared over the shorter.
    pub truncated: Vec<(usize, usize, usize)>,
}

/// Runs every clip through both networks from their initial states (clips in parallel) and
/// computes the G+B metrics of each against the reference: the device recording where a clip
/// has one, the teacher's output otherwise (then the teacher's own row is exact: ESR 0).
pub fn compare_on_clips(
    teacher: &Network,
    student: &Network,
    fs: f64,
    opts: RunOptions,
    clips: &[Clip],
) -> Result<ClipComparison> {
    let outputs = clips
        .par_iter()
        .map(|c| {
            Ok((
                run_network(teacher, &c.input, opts)?,
                run_network(student, &c.input, opts)?,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    compare_outputs(fs, clips, &outputs)
}

/// The G+B metrics of the teacher's and the student's `outputs` (one `(teacher, student)` pair
/// per clip) against each clip's reference: its device recording, or the teacher's output.
pub fn compare_outputs(
    fs: f64,
    clips: &[Clip],
    outputs: &[(Vec<f64>, Vec<f64>)],
) -> Result<ClipComparison> {
    let mut t_pairs = Vec::new();
    let mut s_pairs = Vec::new();
    let mut truncated = Vec::new();
    for (i, ((yt, ys), c)) in outputs.iter().zip(clips).enumerate() {
        let r: &[f64] = c.reference.as_deref().unwrap_or(yt);
        let n = r.len().min(c.input.len());
        if r.len() != c.input.len() {
            truncated.push((i, r.len(), c.input.len()));
        }
        t_pairs.push((&yt[..n], &r[..n]));
        s_pairs.push((&ys[..n], &r[..n]));
    }
    Ok(ClipComparison {
        teacher: audio_metrics(fs, &t_pairs)?,
        student: audio_metrics(fs, &s_pairs)?,
        truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_clips_have_zero_error() {
        let x: Vec<f64> = (0..4000).map(|n| (n as f64 * 0.05).sin()).collect();
        let m = audio_metrics(44_100.0, &[(&x, &x)]).unwrap();
        assert_eq!(m.esr, 0.0);
        assert!(m.mrsl.abs() < 1e-12);
    }
}
