//! A self-contained HTML report of a teacher and its student, to look at and listen to: the
//! Table 1 row, the spectra of the 2394.3 Hz tone (Figs. 2–3), NMR-S and HESR-T against f0 per
//! level with the -10 dB line (Fig. 4), sine-sweep spectrograms of teacher, student and the
//! teacher at 2x oversampling (Fig. 5), the training curves, and audio players with the sweep
//! and the built-in guitar and bass clips through each (and the device when it is known), with
//! the G+B columns on those clips.
//!
//! One file, nothing loaded from anywhere: figures are inline SVG (plotters) or PNG data URIs
//! (spectrograms), audio is WAV data URIs, and a Content-Security-Policy forbids every other
//! source. A small inline script records script errors, console errors and policy violations in
//! `data-errors` on `<body>` and the figures' positions in `data-figures`, for the browser test.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::audio_metrics::{builtin_clips, compare_outputs, reference_label};
use super::oversample::process_oversampled;
use super::plots::{
    draw_metric_vs_f0, draw_spectrum, draw_training_curves, spectrum_db, TrainingCurve, SIZE,
};
use super::report::{db, fmt_db};
use super::sine_set::{spectrum_tone_output, RunOptions, SineSetReport, SPECTRUM_TONE};
use crate::dsp::stft::Stft;
use crate::dsp::tones::eval_tone_len;
use crate::dsp::window::hann_periodic;
use crate::loss::metrics::SineSetAnalyzer;
use crate::models::Network;
use crate::{Error, Result};

/// What the report shows.
pub struct ReportInputs<'a> {
    /// Heading.
    pub title: &'a str,
    /// Sample rate of both models.
    pub fs: f64,
    /// The teacher.
    pub teacher: &'a Network,
    /// The student.
    pub student: &'a Network,
    /// Sine-set results of teacher and student (the student's with the -T metrics).
    pub sine_set: (&'a SineSetReport, &'a SineSetReport),
    /// The device the teacher models, when known (its spectrum and sweep are added).
    pub device: Option<&'a crate::device::Device>,
    /// Validation history of the fine-tuning run (no points: no curves).
    pub curves: &'a TrainingCurve,
}

/// A labelled output signal (a player, a spectrogram).
type Render = (String, Vec<f64>);

/// Duration of the sweep, seconds.
const SWEEP_S: f64 = 3.0;
/// Peak level of the sweep, dBFS.
const SWEEP_DBFS: f64 = -6.0;

/// An exponential sine sweep from 20 Hz to `0.45 fs` (Farina's form, zero phase at the start).
pub fn sine_sweep(fs: f64) -> Vec<f64> {
    let n = (SWEEP_S * fs).round() as usize;
    let (f1, f2) = (20.0, 0.45 * fs);
    let k = (f2 / f1).ln();
    let a = 10f64.powf(SWEEP_DBFS / 20.0);
    (0..n)
        .map(|i| {
            let t = i as f64 / fs;
            let phase =
                2.0 * std::f64::consts::PI * f1 * SWEEP_S / k * ((t / SWEEP_S * k).exp() - 1.0);
            a * phase.sin()
        })
        .collect()
}

/// The figure drawn by `draw` as an SVG element.
fn svg(
    draw: &dyn Fn(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<String> {
    super::plots::register_font();
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, SIZE).into_drawing_area();
        draw(&root)?;
    }
    // The XML prolog is not allowed inside HTML.
    Ok(match s.find("<svg") {
        Some(i) => s[i..].to_string(),
        None => s,
    })
}

/// Standard base64 (RFC 4648) of `bytes`.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(v >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A mono 16-bit WAV file in memory (players need no more; the sweep peaks at -6 dBFS).
fn wav_bytes(x: &[f64], fs: f64) -> Result<Vec<u8>> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: fs.round() as u32,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = std::io::Cursor::new(Vec::new());
    let err = |e: hound::Error| Error::Audio(format!("writing the report's audio: {e}"));
    {
        let mut w = hound::WavWriter::new(&mut cur, spec).map_err(err)?;
        for &v in x {
            w.write_sample((v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
                .map_err(err)?;
        }
        w.finalize().map_err(err)?;
    }
    Ok(cur.into_inner())
}

/// A spectrogram of `x` as a PNG: 1024-point Hann frames, time left to right, 0..fs/2 bottom
/// to top, -120..0 dBFS on a dark-to-bright colour scale.
fn spectrogram_png(x: &[f64]) -> Result<Vec<u8>> {
    let n = 1024;
    let width = 600usize;
    let hop = (x.len().saturating_sub(n) / width).max(1);
    let stft = Stft::new(hann_periodic(n), hop);
    let frames = stft.num_frames(x.len()).min(width);
    if frames == 0 {
        return Err(Error::InvalidArgument(format!(
            "spectrogram needs at least {n} samples"
        )));
    }
    let bins = stft.bins();
    let mut spec =
        vec![realfft::num_complex::Complex64::new(0.0, 0.0); stft.num_frames(x.len()) * bins];
    let mut s = stft.scratch();
    let wsum: f64 = stft.window().iter().sum();
    stft.forward(x, 2.0 / wsum, &mut spec, &mut s);
    let height = bins - 1; // bins 1..=N/2, one row each
    let mut rgb = vec![0u8; frames * height * 3];
    for f in 0..frames {
        for row in 0..height {
            let k = height - row; // top row = Nyquist
            let db = 20.0 * spec[f * bins + k].norm().max(1e-12).log10();
            let v = ((db + 120.0) / 120.0).clamp(0.0, 1.0);
            // A dark-blue .. yellow ramp.
            let c = [
                (255.0 * v.powf(0.8)) as u8,
                (255.0 * v.powf(1.6)) as u8,
                (255.0 * (0.35 + 0.4 * v - 0.6 * v * v).clamp(0.0, 1.0)) as u8,
            ];
            rgb[(row * frames + f) * 3..(row * frames + f) * 3 + 3].copy_from_slice(&c);
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, frames as u32, height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let err = |e: png::EncodingError| Error::InvalidArgument(format!("PNG encoding: {e}"));
        let mut w = enc.write_header().map_err(err)?;
        w.write_image_data(&rgb).map_err(err)?;
    }
    Ok(out)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Builds the report.
pub fn html_report(r: &ReportInputs) -> Result<String> {
    let fs = r.fs;
    let (rt, rs) = r.sine_set;
    let mut figures: Vec<(String, String)> = Vec::new();

    // Figs. 2–3: the spectrum of the 2394.3 Hz tone.
    let an = SineSetAnalyzer::new(fs)?;
    let mut spectra: Vec<Render> = vec![
        (
            "teacher".into(),
            spectrum_tone_output(r.teacher, fs, RunOptions::default())?,
        ),
        (
            "student".into(),
            spectrum_tone_output(r.student, fs, RunOptions::default())?,
        ),
    ];
    if let Some(d) = r.device {
        let len = eval_tone_len(fs);
        let mut y = d.render(&SPECTRUM_TONE.render(fs, len + d.lookahead()), fs)?;
        y.truncate(len);
        spectra.push((format!("reference ({})", d.name), y));
    }
    for (label, y) in &spectra {
        let sp = spectrum_db(an.analyzer(), y)?;
        let (_, h, _) = an.analyze(y, SPECTRUM_TONE.f0)?;
        let marks: Vec<(f64, f64)> = h
            .magnitudes()
            .iter()
            .enumerate()
            .map(|(i, c)| ((i + 1) as f64 * SPECTRUM_TONE.f0, 2.0 * c))
            .collect();
        let title = format!("{label}: 2394.3 Hz at -6 dBFS");
        figures.push((
            format!("Spectrum, {label}"),
            svg(&|root| draw_spectrum(root, fs, &sp, &marks, -140.0, &title))?,
        ));
    }

    // Fig. 4: NMR-S and HESR-T against f0.
    figures.push((
        "NMR-S vs f0, teacher".into(),
        svg(&|root| {
            draw_metric_vs_f0(root, rt, "teacher NMR-S", "NMR-S (dB)", &|m| Some(m.nmr_s))
        })?,
    ));
    figures.push((
        "NMR-S vs f0, student".into(),
        svg(&|root| {
            draw_metric_vs_f0(root, rs, "student NMR-S", "NMR-S (dB)", &|m| Some(m.nmr_s))
        })?,
    ));
    figures.push((
        "HESR-T vs f0, student".into(),
        svg(&|root| {
            draw_metric_vs_f0(
                root,
                rs,
                "student HESR-T (harmonics vs the teacher's)",
                "HESR-T (dB)",
                &|m| m.hesr_t,
            )
        })?,
    ));

    // Fig. 5: sweep spectrograms.
    let sweep = sine_sweep(fs);
    let mut sweeps: Vec<Render> = vec![
        ("teacher".into(), r.teacher.process::<f64>(&sweep)),
        ("student".into(), r.student.process::<f64>(&sweep)),
        (
            "teacher, 2x oversampled".into(),
            process_oversampled(r.teacher, &sweep, 2)?,
        ),
    ];
    if let Some(d) = r.device {
        sweeps.push((format!("reference ({})", d.name), d.render(&sweep, fs)?));
    }
    for (label, y) in &sweeps {
        if let Some(i) = y.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "the {label} output of the sweep is not finite at sample {i}"
            )));
        }
        let png = spectrogram_png(y)?;
        figures.push((
            format!("Sweep spectrogram, {label}"),
            format!(
                "<img alt=\"spectrogram\" width=\"600\" height=\"512\" src=\"data:image/png;base64,{}\">",
                base64(&png)
            ),
        ));
    }
    if !r.curves.points.is_empty() {
        figures.push((
            "Training curves".into(),
            svg(&|root| {
                draw_training_curves(
                    root,
                    std::slice::from_ref(r.curves),
                    None,
                    "validation during fine-tuning",
                )
            })?,
        ));
    }

    // The built-in guitar and bass clips through each, for listening and the G+B columns.
    let (clips, names) = builtin_clips(fs, r.device)?;
    let outputs: Vec<(Vec<f64>, Vec<f64>)> = clips
        .iter()
        .map(|c| {
            (
                r.teacher.process::<f64>(&c.input),
                r.student.process::<f64>(&c.input),
            )
        })
        .collect();
    let mut clip_renders: Vec<(&str, Vec<Render>)> = Vec::new();
    for ((clip, name), (yt, ys)) in clips.iter().zip(&names).zip(&outputs) {
        let mut renders = vec![
            ("teacher".to_string(), yt.clone()),
            ("student".to_string(), ys.clone()),
        ];
        if let (Some(d), Some(y)) = (r.device, &clip.reference) {
            renders.push((format!("reference ({})", d.name), y.clone()));
        }
        clip_renders.push((name, renders));
    }
    let against = reference_label(r.device);
    let clips_label = format!("the built-in {} clips", names.join(" and "));
    // The G+B ESR is A-weighted: none below the filter's lowest rate.
    let gb = if fs >= crate::dsp::a_weighting::MIN_RATE {
        let c = compare_outputs(fs, &clips, &outputs)?;
        [Some(c.teacher), Some(c.student)]
    } else {
        [None, None]
    };

    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; \
         media-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n\
         <title>{t}</title>\n<script>\n{SCRIPT_HEAD}</script>\n<style>{STYLE}</style></head>\n<body>\n\
         <h1>{t}</h1>\n",
        t = escape(r.title)
    );
    // The Table 1 row: G+B on the clips, -R when a reference is known, -T, -S.
    let with_r = rt.esr_r.is_some();
    let _ = writeln!(
        h,
        "<h2>Table 1 row (dB; sine set: 10 log10 of the mean of linear values over the tones; \
         G+B: {}, against {})</h2>\n<table>\n<tr><th>model</th><th>G+B ESR</th><th>G+B MRSL</th>{}\
         <th>ESR-T</th><th>NMR-T</th><th>HESR-T</th><th>ESR-S</th><th>NMR-S</th></tr>",
        escape(&clips_label),
        escape(&against),
        if with_r {
            "<th>ESR-R</th><th>NMR-R</th><th>HESR-R</th>"
        } else {
            ""
        }
    );
    for ((name, rep), gb) in [("teacher", rt), ("student", rs)].into_iter().zip(&gb) {
        let m = |a: Option<crate::loss::metrics::Aggregate>| fmt_db(a.map(|a| a.mean_linear_db));
        let r_cells = if with_r {
            format!(
                "<td>{}</td><td>{}</td><td>{}</td>",
                m(rep.esr_r),
                m(rep.nmr_r),
                m(rep.hesr_r)
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            h,
            "<tr><td>{name}</td><td>{}</td><td>{}</td>{r_cells}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            fmt_db(gb.map(|a| db(a.esr))),
            fmt_db(gb.map(|a| db(a.mrsl))),
            m(rep.esr_t),
            m(rep.nmr_t),
            m(rep.hesr_t),
            fmt_db(Some(rep.esr_s.mean_linear_db)),
            fmt_db(Some(rep.nmr_s.mean_linear_db)),
        );
    }
    h.push_str("</table>\n<h2>Figures</h2>\n");
    for (i, (caption, body)) in figures.iter().enumerate() {
        let _ = writeln!(
            h,
            "<figure class=\"fig\" id=\"fig{i}\">{body}<figcaption>{}</figcaption></figure>",
            escape(caption)
        );
    }
    h.push_str("<p>Spectrograms: 3 s exponential sweep 20 Hz to 0.45 fs at -6 dBFS; time left to right, 0 to fs/2 bottom to top, -120 to 0 dBFS dark to bright. Aliases are the lines that fall while the sweep rises.</p>\n<h2>Listen: the sweep</h2>\n");
    for (label, y) in &sweeps {
        let _ = writeln!(
            h,
            "<p>{}<br><audio controls preload=\"none\" src=\"data:audio/wav;base64,{}\"></audio></p>",
            escape(label),
            base64(&wav_bytes(y, fs)?)
        );
    }
    for (clip, renders) in &clip_renders {
        let _ = writeln!(h, "<h2>Listen: the built-in {clip} clip</h2>");
        for (label, y) in renders {
            let _ = writeln!(
                h,
                "<p>{}<br><audio controls preload=\"none\" src=\"data:audio/wav;base64,{}\"></audio></p>",
                escape(label),
                base64(&wav_bytes(y, fs)?)
            );
        }
    }
    h.push_str("<script>\n");
    h.push_str(SCRIPT_TAIL);
    h.push_str("</script>\n</body></html>\n");
    Ok(h)
}

const STYLE: &str = "body{font-family:sans-serif;margin:16px;background:#fff;color:#111}\
table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 8px;text-align:right}\
figure.fig{display:inline-block;margin:8px;vertical-align:top}figcaption{font-size:13px}";

/// Records errors before anything else runs.
const SCRIPT_HEAD: &str = "window.__errors=[];\
window.addEventListener('error',function(e){window.__errors.push('error: '+e.message);});\
document.addEventListener('securitypolicyviolation',function(e){window.__errors.push('csp: '+e.blockedURI);});\
(function(){var ce=console.error;console.error=function(){window.__errors.push('console: '+Array.prototype.join.call(arguments,' '));ce.apply(console,arguments);};})();\n";

/// After loading: the errors and the figures' boxes, as attributes for `--dump-dom`.
const SCRIPT_TAIL: &str = "window.addEventListener('load',function(){\
var f=[];document.querySelectorAll('figure.fig').forEach(function(e){\
var c=e.firstElementChild.getBoundingClientRect();\
f.push([Math.round(c.left+window.scrollX),Math.round(c.top+window.scrollY),Math.round(c.width),Math.round(c.height)].join(','));});\
document.body.setAttribute('data-figures',f.join(';'));\
document.body.setAttribute('data-errors',window.__errors.join(' | '));\
document.body.setAttribute('data-loaded','1');});\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep's zero crossings follow its instantaneous frequency `f1 exp(t ln(f2/f1) / T)`:
    /// the cycles in the first 0.5 s and in the last 10 ms equal the integral of it (to one
    /// crossing), and its peak is -6 dBFS.
    #[test]
    fn sweep_follows_its_frequency() {
        let fs = 48_000.0;
        let x = sine_sweep(fs);
        assert_eq!(x.len(), 144_000);
        let k = (0.45 * fs / 20.0f64).ln();
        let cycles = |t0: f64, t1: f64| {
            20.0 * SWEEP_S / k * ((t1 * k / SWEEP_S).exp() - (t0 * k / SWEEP_S).exp())
        };
        let crossings = |a: usize, b: usize| {
            x[a..b]
                .windows(2)
                .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
                .count() as f64
        };
        let want = 2.0 * cycles(0.0, 0.5);
        assert!((crossings(0, 24_000) - want).abs() <= 1.0, "{}", want);
        let want = 2.0 * cycles(2.99, 3.0);
        assert!((crossings(143_520, 144_000) - want).abs() <= 1.5, "{want}");
        let peak = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!((20.0 * peak.log10() + 6.0).abs() < 0.01);
    }

    /// The players' WAV data reads back (full scale 32768, as readers divide by it; rounding:
    /// half an LSB).
    #[test]
    fn wav_data_reads_back() {
        let x: Vec<f64> = (0..1000).map(|i| (i as f64 * 0.01).sin() * 0.5).collect();
        let a = crate::audio::parse_wav(&wav_bytes(&x, 44_100.0).unwrap(), None).unwrap();
        assert_eq!(a.sample_rate, 44_100);
        assert_eq!(a.samples.len(), x.len());
        let err = a
            .samples
            .iter()
            .zip(&x)
            .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
        assert!(err <= 0.5 / 32768.0 + 1e-12, "{err}");
    }

    /// RFC 4648 test vectors.
    #[test]
    fn base64_test_vectors() {
        for (a, b) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(a.as_bytes()), b);
        }
    }
}
