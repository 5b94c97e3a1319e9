//! WAV input and output for the command line and the library: mono reading of 16/24/32-bit
//! integer and 32/64-bit float files (one channel picked from multichannel files), and atomic
//! 32-bit float writing.

use std::path::Path;

use crate::{Error, Result};

/// A mono signal read from a WAV file.
#[derive(Clone, Debug)]
pub struct MonoAudio {
    /// Samples scaled to [-1, 1] (integer formats divided by 2^(bits-1)).
    pub samples: Vec<f64>,
    pub sample_rate: u32,
    /// Channels in the file (one was used).
    pub channels: u16,
    /// The file's sample format, e.g. "24-bit int".
    pub format: String,
    /// Samples at (or beyond) full scale: the recording was probably clipped.
    pub clipped: usize,
}

impl MonoAudio {
    /// A warning about clipped input, when there is any.
    pub fn clipping_warning(&self) -> Option<String> {
        (self.clipped > 0).then(|| {
            format!(
                "{} input sample(s) are at full scale: the input is probably clipped",
                self.clipped
            )
        })
    }
}

/// Reads one channel of a WAV file. Multichannel files need `channel` (0-based).
pub fn read_mono(path: &Path, channel: Option<usize>) -> Result<MonoAudio> {
    let err = |m: String| Error::Audio(format!("{}: {m}", path.display()));
    let mut reader = match hound::WavReader::open(path) {
        Ok(r) => r,
        Err(e) => {
            // hound does not read 64-bit float files; those are parsed here.
            if let Some((nch, rate)) = f64_wav_header(path) {
                let ch = pick_channel(channel, nch as usize).map_err(err)?;
                return read_f64_wav(path, ch, nch as usize, rate);
            }
            return Err(err(e.to_string()));
        }
    };
    let spec = reader.spec();
    let nch = spec.channels as usize;
    let ch = pick_channel(channel, nch).map_err(err)?;
    let (samples, format, full): (Vec<f64>, String, f64) = match spec.sample_format {
        hound::SampleFormat::Int => {
            let bits = spec.bits_per_sample;
            if !(8..=32).contains(&bits) {
                return Err(err(format!("unsupported {bits}-bit integer samples")));
            }
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            let s = reader
                .samples::<i32>()
                .skip(ch)
                .step_by(nch)
                .map(|v| v.map(|v| v as f64 * scale))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| err(e.to_string()))?;
            // Full scale is the most negative code or the most positive one.
            (s, format!("{bits}-bit int"), 1.0 - scale)
        }
        hound::SampleFormat::Float => {
            let s = match spec.bits_per_sample {
                32 => reader
                    .samples::<f32>()
                    .skip(ch)
                    .step_by(nch)
                    .map(|v| v.map(f64::from))
                    .collect::<std::result::Result<Vec<_>, _>>(),
                64 => return read_f64_wav(path, ch, nch, spec.sample_rate),
                b => return Err(err(format!("unsupported {b}-bit float samples"))),
            }
            .map_err(|e| err(e.to_string()))?;
            (s, "32-bit float".into(), 1.0)
        }
    };
    if let Some(i) = samples.iter().position(|v| !v.is_finite()) {
        return Err(err(format!("sample {i} is not finite")));
    }
    let clipped = samples.iter().filter(|v| v.abs() >= full).count();
    Ok(MonoAudio {
        samples,
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        format,
        clipped,
    })
}

/// The channel to read, or a message saying how to choose one.
fn pick_channel(channel: Option<usize>, nch: usize) -> std::result::Result<usize, String> {
    match (channel, nch) {
        (Some(c), n) if c >= n => Err(format!(
            "has {n} channel(s); --channel {c} does not exist (channels are numbered from 0)"
        )),
        (Some(c), _) => Ok(c),
        (None, 1) => Ok(0),
        (None, n) => Err(format!(
            "has {n} channels; pick one with --channel N (0 = left, 1 = right)"
        )),
    }
}

/// `(channels, sample rate)` when `path` is a 64-bit IEEE float WAV.
fn f64_wav_header(path: &Path) -> Option<(u16, u32)> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?) as usize;
        if &bytes[at..at + 4] == b"fmt " {
            let f = bytes.get(at + 8..at + 24)?;
            let tag = u16::from_le_bytes([f[0], f[1]]);
            let nch = u16::from_le_bytes([f[2], f[3]]);
            let rate = u32::from_le_bytes([f[4], f[5], f[6], f[7]]);
            let bits = u16::from_le_bytes([f[14], f[15]]);
            return ((tag == 3 || tag == 0xFFFE) && bits == 64 && nch > 0).then_some((nch, rate));
        }
        at = at + 8 + len + (len & 1);
    }
    None
}

/// 64-bit float WAV (hound reads only 32-bit floats): parse the `data` chunk by hand.
fn read_f64_wav(path: &Path, ch: usize, nch: usize, rate: u32) -> Result<MonoAudio> {
    let err = |m: &str| Error::Audio(format!("{}: {m}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let body = at + 8;
        if id == b"data" {
            let end = body.saturating_add(len).min(bytes.len());
            let samples: Vec<f64> = bytes[body..end]
                .chunks_exact(8)
                .skip(ch)
                .step_by(nch)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect();
            if let Some(i) = samples.iter().position(|v| !v.is_finite()) {
                return Err(err(&format!("sample {i} is not finite")));
            }
            let clipped = samples.iter().filter(|v| v.abs() >= 1.0).count();
            return Ok(MonoAudio {
                samples,
                sample_rate: rate,
                channels: nch as u16,
                format: "64-bit float".into(),
                clipped,
            });
        }
        at = body + len + (len & 1);
    }
    Err(err("no data chunk"))
}

/// Writes a mono 32-bit float WAV atomically.
pub fn write_f32(path: &Path, samples: &[f32], sample_rate: u32) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    crate::io::write_atomic_with(path, |f| {
        let mut w = hound::WavWriter::new(std::io::BufWriter::new(f), spec).map_err(to_io)?;
        for &s in samples {
            w.write_sample(s).map_err(to_io)?;
        }
        w.finalize().map_err(to_io)
    })
}

fn to_io(e: hound::Error) -> std::io::Error {
    match e {
        hound::Error::IoError(e) => e,
        other => std::io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_int(path: &Path, bits: u16, channels: u16, data: &[i32]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: 44100,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for &d in data {
            w.write_sample(d).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn reads_int_formats_and_channels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.wav");
        write_int(&p, 16, 1, &[0, 16384, -32768, 32767]);
        let a = read_mono(&p, None).unwrap();
        assert_eq!(a.samples, vec![0.0, 0.5, -1.0, 32767.0 / 32768.0]);
        assert_eq!(a.clipped, 2);
        write_int(&p, 24, 2, &[1 << 22, -(1 << 22), 0, 5]);
        let e = read_mono(&p, None).unwrap_err().to_string();
        assert!(e.contains("--channel N"), "{e}");
        let a = read_mono(&p, Some(1)).unwrap();
        assert_eq!(a.samples, vec![-0.5, 5.0 / (1 << 23) as f64]);
        assert_eq!(a.format, "24-bit int");
        write_int(&p, 32, 1, &[1 << 30]);
        assert_eq!(read_mono(&p, None).unwrap().samples, vec![0.5]);
    }

    #[test]
    fn float_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.wav");
        write_f32(&p, &[0.25, -0.5, 1.0], 48000).unwrap();
        let a = read_mono(&p, None).unwrap();
        assert_eq!(a.samples, vec![0.25, -0.5, 1.0]);
        assert_eq!((a.sample_rate, a.clipped), (48000, 1));
    }

    #[test]
    fn reads_f64_wav() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.wav");
        let data = [0.125f64, -0.75];
        let mut b = Vec::new();
        let n = data.len() * 8;
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&((36 + n) as u32).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&3u16.to_le_bytes()); // IEEE float
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&44100u32.to_le_bytes());
        b.extend_from_slice(&(44100u32 * 8).to_le_bytes());
        b.extend_from_slice(&8u16.to_le_bytes());
        b.extend_from_slice(&64u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(n as u32).to_le_bytes());
        for d in data {
            b.extend_from_slice(&d.to_le_bytes());
        }
        std::fs::write(&p, b).unwrap();
        match read_mono(&p, None) {
            Ok(a) => assert_eq!(a.samples, data.to_vec()),
            Err(e) => panic!("{e}"),
        }
    }
}
