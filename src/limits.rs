//! Resource limits: every size that allocates in proportion to a setting or a file is checked
//! against the physical memory of this machine before anything is allocated, so that an absurd
//! setting (a rate of 1 GHz, a batch of 100,000 tones, an oversampling factor of a million) is
//! a clear error naming the setting instead of an abort or a visit from the OOM killer.
//!
//! Estimates are lower bounds of what the work needs (the large buffers only), so a refusal is
//! always right; work that passes may still need somewhat more.

use std::sync::OnceLock;

use crate::{Error, Result};

/// Assumed when the platform does not say how much memory it has.
const FALLBACK_MEMORY: u64 = 8 << 30;

/// Physical memory of this machine in bytes and whether the number was measured (or assumed).
pub fn machine_memory() -> (u64, bool) {
    static MEM: OnceLock<(u64, bool)> = OnceLock::new();
    *MEM.get_or_init(|| match physical_memory() {
        Some(b) if b > 0 => (b, true),
        _ => (FALLBACK_MEMORY, false),
    })
}

#[cfg(unix)]
fn physical_memory() -> Option<u64> {
    // SAFETY: sysconf only reads system constants.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages > 0 && size > 0).then(|| (pages as u64).saturating_mul(size as u64))
}

#[cfg(not(unix))]
fn physical_memory() -> Option<u64> {
    None
}

/// A byte count for messages, in decimal units: "512 bytes", "2.5 GB", "353 GB".
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 7] = ["bytes", "kB", "MB", "GB", "TB", "PB", "EB"];
    if !bytes.is_finite() {
        return "an unbounded amount".into();
    }
    let mut v = bytes.max(0.0);
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} bytes")
    } else if v >= 100.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Refuses work that needs at least `bytes` of memory (an `f64` so that products of absurd
/// settings cannot overflow) when that is more than the machine has. `what` describes the
/// work and the settings that size it, e.g. "a batch of 100000 tones of 1.2 s at 44100 Hz".
pub fn ensure_fits(bytes: f64, what: &str) -> Result<()> {
    let (mem, measured) = machine_memory();
    if bytes.is_nan() || bytes > mem as f64 {
        return Err(Error::InvalidArgument(format!(
            "{what} needs at least {} of memory, more than this machine {} ({})",
            human_bytes(bytes),
            if measured {
                "has"
            } else {
                "is assumed to have"
            },
            human_bytes(mem as f64)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_known_and_bounds_are_enforced() {
        let (mem, _) = machine_memory();
        assert!(mem >= 1 << 28, "{mem}");
        assert!(ensure_fits(1e6, "a small buffer").is_ok());
        let e = ensure_fits(1e30, "a batch of 1e24 tones")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a batch of 1e24 tones needs at least"), "{e}");
        assert!(e.contains("of memory, more than this machine"), "{e}");
        assert!(ensure_fits(f64::INFINITY, "x").is_err());
        assert!(ensure_fits(f64::NAN, "x").is_err());
    }

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(human_bytes(512.0), "512 bytes");
        assert_eq!(human_bytes(3.53e11), "353 GB");
        assert_eq!(human_bytes(2.5e9), "2.5 GB");
    }
}
