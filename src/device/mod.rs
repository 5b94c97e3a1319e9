//! Reference devices: analog circuits simulated without aliasing, to serve as the "device" a
//! neural model imitates (the reference of the paper's -R metrics, sec. 2.6) and as material to
//! train models on.
//!
//! A device takes audio in digital units (full scale 1.0), scales it to volts, and solves its
//! circuit's ordinary differential equation with a stiffly stable implicit method at
//! [`OVERSAMPLING`] times the audio rate, between a band-limited interpolator and a decimator of
//! at least 120 dB stop band ([`oversampled`]). What remains of aliasing is the folding inside
//! the oversampled simulation itself, of harmonics beyond 8 times the audio rate, which the
//! circuit's own low-pass makes negligible (the sine-set NMR-S is measured in
//! `tests/device.rs`).
//!
//! Devices: [`diode_clipper`] (Yeh, Abel & Smith 2007).

pub mod diode_clipper;
pub mod oversampled;

pub use diode_clipper::DiodeClipper;
pub use oversampled::OVERSAMPLING;

use crate::{Error, Result};

/// Lowest audio rate a device renders at (the ODE's step is checked at 44.1 and 48 kHz; much
/// lower rates make it too coarse for the circuit's 7 kHz corner).
pub const MIN_RATE: f64 = 16_000.0;
/// Highest audio rate a device renders at (WAV's limit in this crate).
pub const MAX_RATE: f64 = crate::audio::MAX_WAV_RATE as f64;

/// The circuit of a device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Circuit {
    /// A series resistor, shunt capacitor and antiparallel diode pair.
    DiodeClipper(DiodeClipper),
}

/// A named reference device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Device {
    /// Name on the command line.
    pub name: &'static str,
    /// One line about it.
    pub description: &'static str,
    /// Its circuit.
    pub circuit: Circuit,
}

/// Input volts at digital full scale of the `diode-clipper` device: -36 dBFS tones stay almost
/// linear, -6 dBFS ones clip hard (a distortion pedal's gain stage in front of the clipper).
pub const DIODE_CLIPPER_DRIVE_V: f64 = 10.0;

/// Every device.
pub fn devices() -> Vec<Device> {
    vec![Device {
        name: "diode-clipper",
        description: "diode clipper of a distortion pedal (2.2 kOhm, 10 nF, 1N914 pair; Yeh, Abel \
                      & Smith, DAFx 2007), full scale = 10 V in, 1 V out = full scale",
        circuit: Circuit::DiodeClipper(DiodeClipper::yeh_abel_smith(DIODE_CLIPPER_DRIVE_V)),
    }]
}

impl Device {
    /// The device called `name`; the error lists the names.
    pub fn by_name(name: &str) -> Result<Device> {
        let all = devices();
        all.iter().find(|d| d.name == name).copied().ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|d| d.name).collect();
            Error::InvalidArgument(format!(
                "no device called '{name}' (devices: {})",
                names.join(", ")
            ))
        })
    }

    /// Output samples at the end of a render that react to the input's end (the linear-phase
    /// filters' look-ahead, [`oversampled::lookahead`]; 123 samples, 2.6 ms at 48 kHz).
    pub fn lookahead(&self) -> usize {
        oversampled::lookahead()
    }

    /// The device's output for input `x` at audio rate `fs`, from rest (`x.len()` samples,
    /// aligned with `x`; the input is taken as zero outside it, so the last
    /// [`lookahead`](Self::lookahead) samples already react to its end).
    pub fn render(&self, x: &[f64], fs: f64) -> Result<Vec<f64>> {
        if !(MIN_RATE..=MAX_RATE).contains(&fs) {
            return Err(Error::InvalidArgument(format!(
                "device {}: sample rate {fs} Hz is outside {MIN_RATE}..={MAX_RATE} Hz",
                self.name
            )));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "device {}: input sample {i} is not finite",
                self.name
            )));
        }
        let fs_os = fs * OVERSAMPLING as f64;
        match self.circuit {
            Circuit::DiodeClipper(d) => oversampled::render(x, &mut d.stepper(fs_os)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clipper() -> Device {
        Device::by_name("diode-clipper").unwrap()
    }

    #[test]
    fn unknown_names_rates_and_samples_are_errors() {
        let e = Device::by_name("fuzz").unwrap_err().to_string();
        assert!(e.contains("'fuzz'") && e.contains("diode-clipper"), "{e}");
        let e = clipper()
            .render(&[0.0; 10], 8000.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("8000 Hz"), "{e}");
        let e = clipper()
            .render(&[0.0, f64::NAN, 0.0], 48_000.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sample 1 is not finite"), "{e}");
        assert!(clipper().render(&[], 48_000.0).unwrap().is_empty());
    }

    /// Absurd levels (1e6 full scale, 1e7 V) stay a clipped, finite output: Newton's bracket
    /// keeps it converging where sinh overflows. The diodes' static voltage at 1e7 V through
    /// 2.2 kOhm is `Vt asinh(I / 2 Is)` with I = 4.5 kA: 1.28 V; band-limiting the near-square
    /// output overshoots it (measured peak 1.55 V).
    #[test]
    fn absurd_levels_clip_without_failing() {
        let x: Vec<f64> = (0..480)
            .map(|i| 1e6 * (2.0 * std::f64::consts::PI * i as f64 / 48.0).sin())
            .collect();
        let y = clipper().render(&x, 48_000.0).unwrap();
        let peak = y.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(y.iter().all(|v| v.is_finite()));
        assert!(peak > 1.28 && peak < 1.7, "peak {peak}");
    }
}
