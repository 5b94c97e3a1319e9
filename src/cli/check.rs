//! Up-front checks of command-line values, run before any file is read or any work starts:
//! each error names the option and states the accepted range. Settings that the library
//! checks itself come back as [`crate::Error::Setting`] and are renamed to their options by
//! [`name_settings`].

use std::time::Duration;

use anyhow::bail;

use crate::dsp::tones::EVAL_MIN_RATE;

/// A finite number in `[lo, hi]`.
pub(crate) fn in_range(opt: &str, v: f64, lo: f64, hi: f64, unit: &str) -> anyhow::Result<f64> {
    if !(v >= lo && v <= hi) {
        bail!("{opt} {v}: must be a number from {lo} to {hi}{unit}");
    }
    Ok(v)
}

/// A count of at least 1 (and at most `max`, when given, with the reason).
pub(crate) fn count(opt: &str, v: usize, max: Option<(usize, &str)>) -> anyhow::Result<usize> {
    if v == 0 {
        bail!("{opt} 0: must be at least 1");
    }
    if let Some((m, why)) = max {
        if v > m {
            bail!("{opt} {v}: must be from 1 to {m} ({why})");
        }
    }
    Ok(v)
}

/// Longest time budget accepted: a year, in minutes.
const MAX_MINUTES: f64 = 366.0 * 24.0 * 60.0;

/// A duration given in minutes: finite, above 0, at most a year.
pub(crate) fn minutes(opt: &str, v: f64) -> anyhow::Result<Duration> {
    if !(v > 0.0 && v <= MAX_MINUTES) {
        bail!("{opt} {v}: must be a number of minutes above 0 and at most {MAX_MINUTES} (a year)");
    }
    Ok(Duration::from_secs_f64(v * 60.0))
}

/// A sample rate for the sine-set analysis (`--rate`): an even whole number of Hz of at least
/// [`EVAL_MIN_RATE`] (the analysis is one second long; the sine set reaches 4186 Hz). The upper
/// end is the machine's memory, checked where the rate sizes the work.
pub(crate) fn rate(opt: &str, v: Option<f64>) -> anyhow::Result<Option<f64>> {
    if let Some(fs) = v {
        if !(fs.is_finite() && fs >= EVAL_MIN_RATE && fs.fract() == 0.0 && fs % 2.0 == 0.0) {
            bail!(
                "{opt} {fs}: the sample rate must be an even whole number of Hz, at least \
                 {EVAL_MIN_RATE} (the sine set reaches 4186 Hz)"
            );
        }
    }
    Ok(v)
}

/// Limit on worker threads: far more than useful, far fewer than exhaust the system.
pub(crate) const MAX_THREADS: usize = 1024;

/// Translates a library [`crate::Error::Setting`] into the name of its option in `table`
/// (`(setting, option)` pairs); other errors pass unchanged.
pub(crate) fn name_settings(e: crate::Error, table: &[(&str, &str)]) -> anyhow::Error {
    match e {
        crate::Error::Setting { name, message } => {
            let opt = table
                .iter()
                .find(|(s, _)| *s == name)
                .map_or(name, |(_, o)| *o);
            anyhow::anyhow!("{opt}: {message}")
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_the_option_and_the_range() {
        let e = minutes("--minutes", f64::NAN).unwrap_err().to_string();
        assert!(
            e.starts_with("--minutes NaN: must be a number of minutes above 0"),
            "{e}"
        );
        assert!(minutes("--minutes", -1.0).is_err());
        assert!(minutes("--minutes", f64::INFINITY).is_err());
        assert_eq!(minutes("--minutes", 0.5).unwrap(), Duration::from_secs(30));
        let e = rate("--rate", Some(0.0)).unwrap_err().to_string();
        assert!(
            e.contains("--rate 0: the sample rate must be an even whole number"),
            "{e}"
        );
        assert!(rate("--rate", Some(44101.0)).is_err());
        assert!(rate("--rate", Some(f64::NAN)).is_err());
        assert_eq!(rate("--rate", Some(48000.0)).unwrap(), Some(48000.0));
        assert!(in_range("--gain", f64::NAN, -1.0, 1.0, " dB").is_err());
        let e = count("--threads", 5000, Some((MAX_THREADS, "x")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("from 1 to 1024"), "{e}");
    }

    #[test]
    fn library_settings_are_renamed_to_options() {
        let e = crate::Error::Setting {
            name: "batch_size",
            message: "too big".into(),
        };
        let t = name_settings(e, &[("batch_size", "--batch-size")]).to_string();
        assert_eq!(t, "--batch-size: too big");
    }
}
