//! Sine-set evaluation metrics (paper sec. 2.6, spec sec. 7): for each output `y` of a tone
//! (1.2 s, the last second analysed), its alias-free version `y~` (eqs. 6–12), then
//! ESR-S = ESR(y, y~), NMR-S = NMR(y, y~), and against a teacher's alias-free output
//! ESR-T = ESR(y, y~_teach), NMR-T = NMR(y, y~_teach), HESR-T = ESR(|C|, |C_teach|).
//! Aggregation over tones both as `10 log10` of the mean of linear values and as the mean of
//! per-tone dB values, labelled.

use super::esr::{esr, hesr};
use super::nmr::{Nmr, NmrReference};
use crate::dsp::harmonics::{HarmonicAnalyzer, Harmonics};
use crate::{Error, Result};
use rayon::prelude::*;

/// Linear metric values of one tone (`None` where no teacher was given).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ToneMetrics {
    /// Fundamental in Hz.
    pub f0: f64,
    /// ESR of the output against its own alias-free version.
    pub esr_s: f64,
    /// NMR of the output against its own alias-free version.
    pub nmr_s: f64,
    /// ESR against the teacher's alias-free output.
    pub esr_t: Option<f64>,
    /// NMR against the teacher's alias-free output.
    pub nmr_t: Option<f64>,
    /// Harmonic-magnitude ESR against the teacher's harmonics.
    pub hesr_t: Option<f64>,
    /// ESR against a reference output as it is (a device recording, or the teacher's output).
    pub esr_r: Option<f64>,
    /// NMR against the reference output.
    pub nmr_r: Option<f64>,
    /// Harmonic-magnitude ESR against the reference's harmonics.
    pub hesr_r: Option<f64>,
}

/// An aggregate over tones, in dB.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Aggregate {
    /// `10 log10(mean of linear values)`.
    pub mean_linear_db: f64,
    /// Mean of the per-tone `10 log10` values.
    pub mean_db: f64,
}

/// Aggregates linear per-tone values (see [`Aggregate`]). Zero values give `-inf` in both.
pub fn aggregate(values: &[f64]) -> Aggregate {
    let n = values.len() as f64;
    Aggregate {
        mean_linear_db: 10.0 * (values.iter().sum::<f64>() / n).log10(),
        mean_db: values.iter().map(|v| 10.0 * v.log10()).sum::<f64>() / n,
    }
}

/// Per-tone metrics and their aggregates.
#[derive(Clone, Debug, PartialEq)]
pub struct SineSetMetrics {
    /// One entry per tone, in input order.
    pub per_tone: Vec<ToneMetrics>,
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
}

/// Harmonic analyser plus NMR model for one sample rate (analysis length N = fs, which must be
/// an even integer).
#[derive(Debug)]
pub struct SineSetAnalyzer {
    analyzer: HarmonicAnalyzer,
    nmr: Nmr,
}

impl SineSetAnalyzer {
    /// For sample rate `fs` (an even integer number of Hz).
    pub fn new(fs: f64) -> Result<Self> {
        Self::with_nmr_gain(fs, 1.0)
    }

    /// For sample rate `fs`, the NMR measured on both signals scaled by `gain`
    /// ([`Nmr::with_gain`]; the paper's Table 1 convention is 0.5).
    pub fn with_nmr_gain(fs: f64, gain: f64) -> Result<Self> {
        // The analysis length is N = fs samples (one second), which must be even (spec sec. 2).
        if !(fs > 0.0 && fs.is_finite() && fs.fract() == 0.0 && (fs as u64).is_multiple_of(2)) {
            return Err(Error::InvalidArgument(format!(
                "sine-set analysis needs an even whole number of Hz (it analyses one second), got {fs}"
            )));
        }
        Ok(Self {
            analyzer: HarmonicAnalyzer::new(fs as usize, fs)?,
            nmr: Nmr::with_gain(fs, gain)?,
        })
    }

    /// The harmonic analyser.
    pub fn analyzer(&self) -> &HarmonicAnalyzer {
        &self.analyzer
    }

    /// The last N samples of `y`, their harmonics and alias-free version.
    pub fn analyze<'a>(&self, y: &'a [f64], f0: f64) -> Result<(&'a [f64], Harmonics, Vec<f64>)> {
        let (h, clean) = self.analyzer.remove_aliasing(y, f0)?;
        Ok((&y[y.len() - self.analyzer.len()..], h, clean))
    }

    /// Analyses one output once: its last second, harmonics, alias-free version and NMR
    /// reference, so that it can serve as its own reference (-S metrics) and as a teacher's
    /// (-T metrics of any number of students) without being analysed again.
    pub fn analyse_tone(&self, y: &[f64], f0: f64) -> Result<AnalysedTone> {
        let (seg, harmonics, clean) = self.analyze(y, f0)?;
        let reference = self.nmr.reference(&clean, &mut self.nmr.scratch())?;
        Ok(AnalysedTone {
            seg: seg.to_vec(),
            harmonics,
            clean,
            reference,
        })
    }

    /// ESR-S/NMR-S of an analysed output and, with `teacher`, its -T metrics against the
    /// teacher's alias-free output (a teacher against itself: -T = -S, HESR-T = 0).
    pub fn metrics(&self, a: &AnalysedTone, teacher: Option<&AnalysedTone>) -> Result<ToneMetrics> {
        let mut s = self.nmr.scratch();
        let mut m = ToneMetrics {
            f0: a.harmonics.f0,
            esr_s: esr(&a.seg, &a.clean),
            nmr_s: self.nmr.nmr(&a.reference, &a.seg, &mut s)?,
            esr_t: None,
            nmr_t: None,
            hesr_t: None,
            esr_r: None,
            nmr_r: None,
            hesr_r: None,
        };
        if let Some(t) = teacher {
            m.esr_t = Some(esr(&a.seg, &t.clean));
            m.nmr_t = Some(self.nmr.nmr(&t.reference, &a.seg, &mut s)?);
            m.hesr_t = Some(hesr(&a.harmonics.magnitudes(), &t.harmonics.magnitudes())?);
        }
        Ok(m)
    }

    /// The NMR reference of an analysed output as it is (not its alias-free version), for the
    /// -R metrics against it ([`SineSetAnalyzer::add_reference_metrics`]).
    pub fn raw_reference(&self, r: &AnalysedTone) -> Result<NmrReference> {
        self.nmr.reference(&r.seg, &mut self.nmr.scratch())
    }

    /// Adds the -R metrics (paper sec. 2.6) of analysed output `a` against reference output `r`
    /// (`raw` = [`SineSetAnalyzer::raw_reference`] of `r`): ESR-R = ESR(y, y_ref), NMR-R =
    /// NMR(S, S_ref), HESR-R = ESR(|C|, |C_ref|). The reference is taken as it is: Table 1's
    /// rows without a device give the teachers ESR-R = HESR-R = -inf and NMR-R = the floor
    /// `mean(Emin / M)` (about -122 dB), which only the unprocessed teacher output gives.
    pub fn add_reference_metrics(
        &self,
        m: &mut ToneMetrics,
        a: &AnalysedTone,
        r: &AnalysedTone,
        raw: &NmrReference,
    ) -> Result<()> {
        m.esr_r = Some(esr(&a.seg, &r.seg));
        m.nmr_r = Some(self.nmr.nmr(raw, &a.seg, &mut self.nmr.scratch())?);
        m.hesr_r = Some(hesr(&a.harmonics.magnitudes(), &r.harmonics.magnitudes())?);
        Ok(())
    }

    /// Metrics of one tone's output `y` (at least N samples), optionally against the teacher's
    /// output for the same tone.
    pub fn tone_metrics(&self, y: &[f64], f0: f64, teacher: Option<&[f64]>) -> Result<ToneMetrics> {
        let a = self.analyse_tone(y, f0)?;
        let t = teacher.map(|yt| self.analyse_tone(yt, f0)).transpose()?;
        self.metrics(&a, t.as_ref())
    }
}

/// One output analysed by [`SineSetAnalyzer::analyse_tone`].
#[derive(Clone, Debug)]
pub struct AnalysedTone {
    /// The analysed last second of the output.
    pub seg: Vec<f64>,
    /// Its harmonics (eqs. 6–10, 12).
    pub harmonics: Harmonics,
    /// Its alias-free version (eq. 11).
    pub clean: Vec<f64>,
    reference: NmrReference,
}

/// Sine-set metrics (paper Table 1 columns ESR/NMR -S and -T, HESR-T) of model `outputs` for
/// tones of fundamentals `f0s`, at sample rate `fs`; `teacher_outputs` (same tones) adds the
/// -T metrics. Tones are processed in parallel on rayon's pool.
pub fn sine_set_metrics(
    fs: f64,
    outputs: &[Vec<f64>],
    f0s: &[f64],
    teacher_outputs: Option<&[Vec<f64>]>,
) -> Result<SineSetMetrics> {
    if outputs.len() != f0s.len() || outputs.is_empty() {
        return Err(Error::InvalidArgument(
            "one fundamental per output, at least one tone".into(),
        ));
    }
    if let Some(t) = teacher_outputs {
        if t.len() != outputs.len() {
            return Err(Error::InvalidArgument("one teacher output per tone".into()));
        }
    }
    let an = SineSetAnalyzer::new(fs)?;
    let per_tone = (0..outputs.len())
        .into_par_iter()
        .map(|i| {
            an.tone_metrics(
                &outputs[i],
                f0s[i],
                teacher_outputs.map(|t| t[i].as_slice()),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let agg = |f: &dyn Fn(&ToneMetrics) -> Option<f64>| -> Option<Aggregate> {
        let v: Option<Vec<f64>> = per_tone.iter().map(f).collect();
        v.map(|v| aggregate(&v))
    };
    Ok(SineSetMetrics {
        esr_s: agg(&|m| Some(m.esr_s)).expect("always present"),
        nmr_s: agg(&|m| Some(m.nmr_s)).expect("always present"),
        esr_t: agg(&|m| m.esr_t),
        nmr_t: agg(&|m| m.nmr_t),
        hesr_t: agg(&|m| m.hesr_t),
        per_tone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates() {
        let a = aggregate(&[0.1, 0.001]);
        assert!((a.mean_linear_db - 10.0 * (0.0505f64).log10()).abs() < 1e-12);
        assert!((a.mean_db + 20.0).abs() < 1e-12);
    }

    /// A hard-clipped sine aliases; its alias-free version has a finite ESR-S/NMR-S, and a
    /// teacher identical to the output gives HESR-T = 0 and -T equal to -S.
    #[test]
    fn clipped_sine_metrics() {
        let fs = 44_100.0;
        let f0 = 2394.3;
        let y: Vec<f64> = (0..52_920)
            .map(|n| {
                (3.0 * (2.0 * std::f64::consts::PI * f0 * n as f64 / fs).sin()).clamp(-1.0, 1.0)
            })
            .collect();
        let m = sine_set_metrics(
            fs,
            std::slice::from_ref(&y),
            &[f0],
            Some(std::slice::from_ref(&y)),
        )
        .unwrap();
        let t = m.per_tone[0];
        assert!(t.esr_s > 1e-6 && t.esr_s < 1e-1, "{}", t.esr_s);
        assert!(t.nmr_s > 1e-3, "{}", t.nmr_s);
        assert_eq!(t.hesr_t, Some(0.0));
        assert_eq!(t.esr_t, Some(t.esr_s));
        assert_eq!(t.nmr_t, Some(t.nmr_s));
    }
}
