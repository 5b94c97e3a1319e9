//! WAV input and output for the command line and the library: mono reading of 8/16/24/32-bit
//! integer and 32/64-bit float files (one channel picked from multichannel files), and atomic
//! 32-bit float writing.
//!
//! Reading is a small RIFF parser of our own over the file's bytes (read with
//! [`crate::io::read_regular_file`], so never from a FIFO or device and never more than the
//! machine's memory allows): every malformed header — truncated, 0 Hz, 0 channels, sizes that
//! contradict each other, compressed encodings — is an error that says what is wrong, and the
//! parser is fuzzed (`tests/fuzz_readers.rs`).

use std::path::Path;

use crate::{Error, Result};

/// Highest sample rate a WAV header may state (higher values are corrupt headers).
pub const MAX_WAV_RATE: u32 = 1_000_000;

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

    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

/// Largest WAV file read: RIFF sizes are 32-bit, so a valid file is at most 4 GiB (and at
/// most half the machine's memory, leaving room for the decoded samples).
fn max_wav_bytes() -> u64 {
    let (mem, _) = crate::limits::machine_memory();
    (mem / 2).min((u32::MAX as u64) + 8)
}

/// Reads one channel of a WAV file. Multichannel files need `channel` (0-based).
pub fn read_mono(path: &Path, channel: Option<usize>) -> Result<MonoAudio> {
    let bytes = crate::io::read_regular_file(path, max_wav_bytes(), "WAV")?;
    parse_wav(&bytes, channel).map_err(|m| Error::Audio(format!("{}: {m}", path.display())))
}

/// The sample encoding of a WAV file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Encoding {
    Int(u16),
    Float(u16),
}

/// The `fmt ` chunk's facts that decoding needs.
#[derive(Clone, Copy, Debug)]
struct WavFormat {
    encoding: Encoding,
    channels: u16,
    rate: u32,
    block_align: usize,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses a `fmt ` chunk body.
fn parse_fmt(f: &[u8]) -> std::result::Result<WavFormat, String> {
    if f.len() < 16 {
        return Err(format!(
            "the fmt chunk has {} bytes, fewer than the 16 of a WAV format header",
            f.len()
        ));
    }
    let mut tag = u16_at(f, 0);
    let channels = u16_at(f, 2);
    let rate = u32_at(f, 4);
    let block_align = u16_at(f, 12) as usize;
    let bits = u16_at(f, 14);
    if tag == 0xFFFE {
        // WAVE_FORMAT_EXTENSIBLE: the real format tag starts the sub-format GUID.
        if f.len() < 40 {
            return Err(format!(
                "the extensible fmt chunk has {} bytes, fewer than 40",
                f.len()
            ));
        }
        tag = u16_at(f, 24);
    }
    if channels == 0 {
        return Err("the header says the file has 0 channels".into());
    }
    if rate == 0 || rate > MAX_WAV_RATE {
        return Err(format!(
            "the header states a sample rate of {rate} Hz; WAV files between 1 and {MAX_WAV_RATE} \
             Hz are read (the header is corrupt)"
        ));
    }
    let encoding = match (tag, bits) {
        (1, 8 | 16 | 24 | 32) => Encoding::Int(bits),
        (3, 32 | 64) => Encoding::Float(bits),
        (1, b) => return Err(format!("unsupported {b}-bit integer samples")),
        (3, b) => return Err(format!("unsupported {b}-bit float samples")),
        (t, _) => {
            return Err(format!(
                "unsupported WAV encoding (format tag 0x{t:04x}, compressed audio); convert it \
                 to 16/24/32-bit PCM or 32/64-bit float"
            ))
        }
    };
    let expected = channels as usize * (bits as usize / 8);
    if block_align != expected {
        return Err(format!(
            "the header's block size is {block_align} bytes, but {channels} channel(s) of \
             {bits}-bit samples take {expected} (the header is corrupt)"
        ));
    }
    Ok(WavFormat {
        encoding,
        channels,
        rate,
        block_align,
    })
}

/// Decodes one channel of a WAV file held in `bytes` (see [`read_mono`]). Errors are
/// messages about the file's content, without its name.
pub fn parse_wav(bytes: &[u8], channel: Option<usize>) -> std::result::Result<MonoAudio, String> {
    if bytes.len() < 12 {
        return Err(format!(
            "is {} bytes long, too short to be a WAV file (its header alone has 44 bytes)",
            bytes.len()
        ));
    }
    match &bytes[0..4] {
        b"RIFF" => {}
        b"RF64" => return Err("RF64 WAV files (over 4 GB) are not supported".into()),
        b"RIFX" => return Err("big-endian (RIFX) WAV files are not supported".into()),
        _ => return Err("is not a WAV file (it does not start with \"RIFF\")".into()),
    }
    if &bytes[8..12] != b"WAVE" {
        return Err("is a RIFF file but not a WAV file (no \"WAVE\" form type)".into());
    }
    let mut fmt: Option<WavFormat> = None;
    let mut at = 12usize;
    while bytes.len().saturating_sub(at) >= 8 {
        let id = &bytes[at..at + 4];
        let size = u32_at(bytes, at + 4) as usize;
        let body = at + 8;
        let available = bytes.len() - body;
        match id {
            b"fmt " => {
                if size > available {
                    return Err(format!(
                        "the fmt chunk declares {size} bytes but the file ends after {available}: \
                         the file is truncated"
                    ));
                }
                fmt = Some(parse_fmt(&bytes[body..body + size])?);
            }
            b"data" => {
                let f = fmt.ok_or("the data chunk comes before the fmt chunk (corrupt header)")?;
                if size > available {
                    return Err(format!(
                        "the data chunk declares {size} bytes of audio but only {available} \
                         follow: the file is truncated (an interrupted recording or copy?)"
                    ));
                }
                return decode(&bytes[body..body + size], f, channel);
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        at = body.saturating_add(size).saturating_add(size & 1);
    }
    Err(match fmt {
        None => "has no fmt chunk: the file ends before its format is stated (truncated?)".into(),
        Some(_) => "has no data chunk: the file ends before any audio (truncated?)".into(),
    })
}

/// Decodes channel `channel` of interleaved sample data.
fn decode(
    data: &[u8],
    f: WavFormat,
    channel: Option<usize>,
) -> std::result::Result<MonoAudio, String> {
    let nch = f.channels as usize;
    let ch = pick_channel(channel, nch)?;
    let frames = data.len() / f.block_align;
    crate::limits::ensure_fits(frames as f64 * 8.0, &format!("decoding {frames} samples"))
        .map_err(|e| e.to_string())?;
    let width = f.block_align / nch;
    let sample = |i: usize| &data[i * f.block_align + ch * width..][..width];
    let (samples, format, full): (Vec<f64>, String, f64) = match f.encoding {
        Encoding::Int(bits) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            let s = (0..frames)
                .map(|i| {
                    let b = sample(i);
                    let v = match bits {
                        // 8-bit WAV is unsigned, centred on 128.
                        8 => i32::from(b[0]) - 128,
                        16 => i32::from(i16::from_le_bytes([b[0], b[1]])),
                        24 => i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8,
                        _ => i32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                    };
                    f64::from(v) * scale
                })
                .collect();
            // Full scale is the most negative code or the most positive one.
            (s, format!("{bits}-bit int"), 1.0 - scale)
        }
        Encoding::Float(bits) => {
            let s: Vec<f64> = (0..frames)
                .map(|i| {
                    let b = sample(i);
                    if bits == 32 {
                        f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    } else {
                        f64::from_le_bytes(b.try_into().expect("8-byte sample"))
                    }
                })
                .collect();
            if let Some(i) = s.iter().position(|v| !v.is_finite()) {
                return Err(format!("sample {i} is not finite"));
            }
            (s, format!("{bits}-bit float"), 1.0)
        }
    };
    let clipped = samples.iter().filter(|v| v.abs() >= full).count();
    Ok(MonoAudio {
        samples,
        sample_rate: f.rate,
        channels: f.channels,
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

    /// A PCM WAV header (tag, channels, rate, bits) followed by `data` as the data chunk.
    fn wav_bytes(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let align = channels * bits / 8;
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&((36 + data.len()) as u32).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&tag.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * align as u32).to_le_bytes());
        b.extend_from_slice(&align.to_le_bytes());
        b.extend_from_slice(&bits.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&(data.len() as u32).to_le_bytes());
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn eight_bit_wav_is_unsigned() {
        let a = parse_wav(&wav_bytes(1, 1, 8000, 8, &[128, 192, 0, 255]), None).unwrap();
        assert_eq!(a.samples, vec![0.0, 0.5, -1.0, 127.0 / 128.0]);
        assert_eq!(a.clipped, 2);
    }

    /// Every malformed header gets a message saying what is wrong (hound said "Failed to read
    /// enough bytes." for all of them, and accepted 0 Hz, which later divided by zero).
    #[test]
    fn malformed_headers_are_explained() {
        let good = wav_bytes(1, 1, 44100, 16, &[0, 0, 1, 0]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (Vec::new(), "is 0 bytes long, too short to be a WAV file"),
            (
                good[..30].to_vec(),
                "the fmt chunk declares 16 bytes but the file ends after 10",
            ),
            (good[..40].to_vec(), "has no data chunk"),
            (
                good[..46].to_vec(),
                "the data chunk declares 4 bytes of audio but only 2 follow",
            ),
            (wav_bytes(1, 1, 0, 16, &[]), "sample rate of 0 Hz"),
            (
                wav_bytes(1, 1, u32::MAX / 4, 16, &[]),
                "the header is corrupt",
            ),
            (wav_bytes(1, 0, 44100, 16, &[]), "0 channels"),
            (wav_bytes(2, 1, 44100, 16, &[]), "format tag 0x0002"),
            (
                wav_bytes(1, 1, 44100, 12, &[]),
                "unsupported 12-bit integer",
            ),
            (b"RIFX\0\0\0\0WAVE".to_vec(), "big-endian"),
            (b"OggS\0\0\0\0\0\0\0\0".to_vec(), "is not a WAV file"),
        ];
        for (bytes, expect) in cases {
            let e = parse_wav(&bytes, None).unwrap_err();
            assert!(e.contains(expect), "expected {expect:?}, got {e:?}");
        }
        let mut bad_align = good.clone();
        bad_align[32] = 3;
        let e = parse_wav(&bad_align, None).unwrap_err();
        assert!(e.contains("block size is 3 bytes"), "{e}");
        let nan = wav_bytes(3, 1, 48000, 32, &f32::NAN.to_le_bytes());
        assert!(parse_wav(&nan, None).unwrap_err().contains("not finite"));
    }
}
