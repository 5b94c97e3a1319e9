//! Figures of the evaluation, as PNG and SVG: NMR-S against f0 per input level with the -10 dB
//! audibility line (paper Fig. 4, threshold after Lehtonen et al., ref. \[8\]), and the output
//! spectrum for the 2394.3 Hz tone at -6 dBFS with its harmonics marked (Figs. 2–3).
//!
//! Drawn with `plotters`. Bitmap text needs a font file: DejaVu Sans (Bitstream Vera licence,
//! see `assets/fonts/`) is embedded and registered once. Files are written atomically (SVG
//! rendered to a string, PNG to a temporary file beside the target, then renamed).

use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use realfft::RealFftPlanner;

use super::sine_set::SineSetReport;
use crate::dsp::harmonics::HarmonicAnalyzer;
use crate::dsp::tones::EVAL_LEVELS_DBFS;
use crate::loss::metrics::ToneMetrics;
use crate::{Error, Result};

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();
const FAMILY: &str = "sans-serif";
/// Figure size in pixels.
pub const SIZE: (u32, u32) = (900, 560);
pub use super::AUDIBILITY_DB;

pub(crate) fn register_font() {
    REGISTER.call_once(|| {
        // The embedded font is valid; a failure would only lose bitmap text.
        let _ = plotters::style::register_font(FAMILY, FontStyle::Normal, FONT);
    });
}

fn plot_err<E: std::fmt::Debug>(e: E) -> Error {
    Error::InvalidArgument(format!("plotting failed: {e:?}"))
}

const COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
];

/// NMR-S per tone against f0, one series per level (Fig. 4a-i), with the -10 dB line.
pub fn draw_nmr_vs_f0<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &SineSetReport,
    title: &str,
) -> Result<()> {
    draw_metric_vs_f0(root, report, title, "NMR-S (dB)", &|m| Some(m.nmr_s))
}

/// A per-tone metric (linear, shown in dB; tones where it is `None` are left out) against f0,
/// one series per level, with the -10 dB line (Fig. 4).
pub fn draw_metric_vs_f0<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &SineSetReport,
    title: &str,
    y_desc: &str,
    metric: &dyn Fn(&ToneMetrics) -> Option<f64>,
) -> Result<()> {
    root.fill(&WHITE).map_err(plot_err)?;
    let db = |v: f64| 10.0 * v.max(1e-30).log10();
    let vals: Vec<f64> = report
        .tones
        .iter()
        .filter_map(|t| metric(&t.metrics).map(db))
        .collect();
    let lo = vals.iter().cloned().fold(AUDIBILITY_DB, f64::min).floor() - 5.0;
    let hi = vals.iter().cloned().fold(AUDIBILITY_DB, f64::max).ceil() + 5.0;
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((20f64..5000f64).log_scale(), lo..hi)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("f0 (Hz)")
        .y_desc(y_desc)
        .label_style((FAMILY, 14))
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(DashedLineSeries::new(
            [(20.0, AUDIBILITY_DB), (5000.0, AUDIBILITY_DB)],
            8,
            6,
            BLACK.stroke_width(2),
        ))
        .map_err(plot_err)?
        .label("-10 dB audibility threshold")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    for (i, &level) in EVAL_LEVELS_DBFS.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64)> = report
            .at_level(level)
            .filter_map(|t| metric(&t.metrics).map(|v| (t.tone.tone.f0, db(v))))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
            .map_err(plot_err)?
            .label(format!("input {level} dBFS"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 2, c.filled())))
            .map_err(plot_err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FAMILY, 14))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Magnitude spectrum of the last `N` samples of `y` (the harmonic analyser's Chebyshev window),
/// as peak amplitude in dBFS per bin (`20 log10(2 |Y[k]| / sum w)`), bins `0..=N/2`.
pub fn spectrum_db(an: &HarmonicAnalyzer, y: &[f64]) -> Result<Vec<f64>> {
    let n = an.len();
    if y.len() < n {
        return Err(Error::InvalidArgument(format!(
            "spectrum needs {n} samples, got {}",
            y.len()
        )));
    }
    let w = an.window();
    let sum: f64 = w.iter().sum();
    let mut buf: Vec<f64> = y[y.len() - n..].iter().zip(w).map(|(a, b)| a * b).collect();
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n);
    let mut spec = fft.make_output_vec();
    fft.process(&mut buf, &mut spec)
        .map_err(|e| Error::InvalidArgument(format!("FFT failed: {e}")))?;
    Ok(spec
        .iter()
        .map(|c| 20.0 * (2.0 * c.norm() / sum).max(1e-15).log10())
        .collect())
}

/// The output spectrum of one tone with its harmonics `(frequency Hz, peak amplitude)` marked
/// by crosses (Figs. 2–3). `floor_db` is the lowest level shown.
pub fn draw_spectrum<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    fs: f64,
    spectrum_db: &[f64],
    harmonics: &[(f64, f64)],
    floor_db: f64,
    title: &str,
) -> Result<()> {
    root.fill(&WHITE).map_err(plot_err)?;
    let n = 2 * (spectrum_db.len() - 1);
    let df = fs / n as f64;
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..fs / 2000.0, floor_db..10.0)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("frequency (kHz)")
        .y_desc("magnitude (dBFS)")
        .label_style((FAMILY, 14))
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(LineSeries::new(
            spectrum_db
                .iter()
                .enumerate()
                .map(|(k, &v)| (k as f64 * df / 1000.0, v.max(floor_db))),
            COLORS[0].stroke_width(1),
        ))
        .map_err(plot_err)?
        .label("output spectrum")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], COLORS[0].stroke_width(2)));
    chart
        .draw_series(harmonics.iter().map(|&(f, a)| {
            Cross::new(
                (f / 1000.0, (20.0 * a.max(1e-15).log10()).max(floor_db)),
                5,
                RED.stroke_width(2),
            )
        }))
        .map_err(plot_err)?
        .label("harmonics")
        .legend(|(x, y)| Cross::new((x + 10, y), 5, RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font((FAMILY, 14))
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Writes the figure drawn by `$draw(&root)` to `$stem.svg` and `$stem.png` (atomically).
macro_rules! save_both {
    ($stem:expr, $draw:expr) => {{
        register_font();
        let stem: &Path = $stem;
        let svg_path = stem.with_extension("svg");
        let png_path = stem.with_extension("png");
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            $draw(&root)?;
        }
        crate::io::write_atomic(&svg_path, svg.as_bytes())?;
        let tmp = crate::io::temp_file_for(&png_path)?;
        {
            let root = BitMapBackend::new(tmp.path(), SIZE).into_drawing_area();
            $draw(&root)?;
        }
        tmp.persist(&png_path)
            .map_err(|e| Error::io(&png_path, e.error))?;
        Ok([svg_path, png_path])
    }};
}

/// Saves [`draw_nmr_vs_f0`] as `stem.svg` and `stem.png`; returns the two paths.
pub fn save_nmr_vs_f0(stem: &Path, report: &SineSetReport, title: &str) -> Result<[PathBuf; 2]> {
    save_both!(stem, |root| draw_nmr_vs_f0(root, report, title))
}

/// Saves [`draw_spectrum`] as `stem.svg` and `stem.png`; returns the two paths.
pub fn save_spectrum(
    stem: &Path,
    fs: f64,
    spectrum_db: &[f64],
    harmonics: &[(f64, f64)],
    floor_db: f64,
    title: &str,
) -> Result<[PathBuf; 2]> {
    save_both!(stem, |root| draw_spectrum(
        root,
        fs,
        spectrum_db,
        harmonics,
        floor_db,
        title
    ))
}

/// One run's validation curve for [`draw_training_curves`]: its label and, per validation,
/// (minutes of training, NMR-S dB, ESR-T dB).
pub struct TrainingCurve {
    pub label: String,
    pub points: Vec<(f64, f64, f64)>,
}

impl TrainingCurve {
    /// The validation history in a `dealias finetune` report JSON (its `validation` array;
    /// none when absent).
    pub fn from_report(label: &str, report: &serde_json::Value) -> Self {
        let points = report["validation"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| {
                        Some((
                            v["seconds"].as_f64()? / 60.0,
                            v["nmr_s_db"].as_f64()?,
                            v["esr_t_db"].as_f64()?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        TrainingCurve {
            label: label.to_string(),
            points,
        }
    }
}

/// Validation NMR-S (left) and ESR-T (right) against training minutes, one line per run;
/// dashed horizontal lines mark optional targets `(nmr_s_db, esr_t_db)`.
pub fn draw_training_curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    runs: &[TrainingCurve],
    targets: Option<(f64, f64)>,
    title: &str,
) -> Result<()> {
    root.fill(&WHITE).map_err(plot_err)?;
    let root = root.titled(title, (FAMILY, 20)).map_err(plot_err)?;
    let panels = root.split_evenly((1, 2));
    let t_max = runs
        .iter()
        .flat_map(|r| r.points.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let palette = [
        COLORS[0],
        COLORS[1],
        COLORS[2],
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    for (panel, (name, pick, target)) in panels.iter().zip([
        ("NMR-S (dB)", 1usize, targets.map(|t| t.0)),
        ("ESR-T (dB)", 2usize, targets.map(|t| t.1)),
    ]) {
        let value = |p: &(f64, f64, f64)| if pick == 1 { p.1 } else { p.2 };
        let vals: Vec<f64> = runs
            .iter()
            .flat_map(|r| r.points.iter().map(value))
            .filter(|v| v.is_finite())
            .chain(target)
            .collect();
        let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo.is_finite() {
            (lo.floor() - 2.0, hi.ceil() + 2.0)
        } else {
            (-40.0, 0.0)
        };
        let mut chart = ChartBuilder::on(panel)
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..t_max * 1.02, lo..hi)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("training time (min)")
            .y_desc(name)
            .label_style((FAMILY, 14))
            .draw()
            .map_err(plot_err)?;
        if let Some(t) = target {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, t), (t_max * 1.02, t)],
                    8,
                    6,
                    BLACK.stroke_width(1),
                ))
                .map_err(plot_err)?
                .label("target")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(1)));
        }
        for (i, run) in runs.iter().enumerate() {
            let c = palette[i % palette.len()];
            let pts: Vec<(f64, f64)> = run
                .points
                .iter()
                .map(|p| (p.0, value(p)))
                .filter(|p| p.1.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
                .map_err(plot_err)?
                .label(run.label.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font((FAMILY, 13))
            .draw()
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Saves [`draw_training_curves`] as `stem.svg` and `stem.png`; returns the two paths.
pub fn save_training_curves(
    stem: &Path,
    runs: &[TrainingCurve],
    targets: Option<(f64, f64)>,
    title: &str,
) -> Result<[PathBuf; 2]> {
    save_both!(stem, |root| draw_training_curves(
        root, runs, targets, title
    ))
}
