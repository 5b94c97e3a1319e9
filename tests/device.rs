//! The reference devices against math and an independent solver: the interpolation and
//! decimation filters' stop bands, the small-signal response against the linear circuit's
//! transfer function, the static curve against the diode equation solved by bisection, the ODE
//! solver against SciPy's Radau (`tools/gen_device_reference.py`, committed in `tests/data/`),
//! the sine-set NMR-S, and the command line.

mod common;

use std::f64::consts::PI;

use dealias::device::{oversampled, Circuit, Device, DiodeClipper, OVERSAMPLING};
use rayon::prelude::*;
use realfft::num_complex::Complex64;
use realfft::RealFftPlanner;

fn clipper() -> (Device, DiodeClipper) {
    let d = Device::by_name("diode-clipper").unwrap();
    let Circuit::DiodeClipper(c) = d.circuit;
    (d, c)
}

/// `|H(f)|` of `taps` on `n / 2 + 1` frequencies `k fs_os / n` (zero-padded FFT).
fn magnitude_response(taps: &[f64], n: usize) -> Vec<f64> {
    let mut planner = RealFftPlanner::<f64>::new();
    let fft = planner.plan_fft_forward(n);
    let mut x = vec![0.0; n];
    x[..taps.len()].copy_from_slice(taps);
    let mut spec = fft.make_output_vec();
    fft.process(&mut x, &mut spec).unwrap();
    spec.iter().map(|c| c.norm()).collect()
}

/// Pass band to 0.45 fs and stop bands of both filters on a grid of 2^20 points over the
/// oversampled rate (spacing 1.5e-5 fs, several hundred points per side lobe), frequencies in
/// units of the audio rate fs. Measured: decimation (2611 taps) stop band from 0.5 fs
/// -123.7 dB, interpolation (1307 taps) from 0.55 fs -124.3 dB; pass-band deviation 6.3e-7 and
/// 6.0e-7. Tolerances: -120 dB and 1e-6.
#[test]
fn filters_meet_their_specification() {
    let f = oversampled::filters();
    let n = 1 << 20;
    let l = OVERSAMPLING as f64;
    for (name, taps, stop_edge) in [
        ("decimation", &f.decimation, 0.5),
        ("interpolation", &f.interpolation, 0.55),
    ] {
        assert_eq!(taps.len() % 2, 1, "{name}: odd length");
        assert!((0..taps.len()).all(|k| taps[k] == taps[taps.len() - 1 - k]));
        let mag = magnitude_response(taps, n);
        let freq = |k: usize| k as f64 * l / n as f64;
        let mut stop: f64 = 0.0;
        let mut pass: f64 = 0.0;
        for (k, &m) in mag.iter().enumerate() {
            if freq(k) >= stop_edge {
                stop = stop.max(m);
            }
            if freq(k) <= 0.45 {
                pass = pass.max((m - 1.0).abs());
            }
        }
        let stop_db = 20.0 * stop.log10();
        eprintln!(
            "{name}: {} taps, stop band {stop_db:.2} dB, pass-band deviation {pass:.2e}",
            taps.len()
        );
        assert!(stop_db < -120.0, "{name}: stop band {stop_db} dB");
        assert!(pass < 1e-6, "{name}: pass-band deviation {pass}");
    }
}

/// Least-squares phasor of `y` at normalised frequency `w` (rad/sample) over `range`:
/// `y[n] ~ Re(Y exp(j w n))`.
fn phasor(y: &[f64], w: f64, range: std::ops::Range<usize>) -> Complex64 {
    let (mut cc, mut ss, mut cs, mut yc, mut ys) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for n in range {
        let (s, c) = (w * n as f64).sin_cos();
        cc += c * c;
        ss += s * s;
        cs += c * s;
        yc += y[n] * c;
        ys += y[n] * s;
    }
    let det = cc * ss - cs * cs;
    let p = (yc * ss - ys * cs) / det;
    let q = (ys * cc - yc * cs) / det;
    Complex64::new(p, -q)
}

/// At 1 mV the diodes are linear (conductance `2 Is / Vt`; the cubic term of sinh is 1e-4 of a
/// current that is itself 2.5e-4 of the resistor's), so the device is the first-order low-pass
/// `H(s) = (1 / RC) / (s + 1 / RC + 2 Is / (Vt C))` times drive and output gain.
///
/// Two references: (1) BDF2's own discrete transfer function at the oversampled rate,
/// `(2h / 3RC) / (1 - 4/3 z^-1 + 1/3 z^-2 + (2h/3)(1/RC + 2 Is / (Vt C)))`, which the device must
/// meet up to the filters' pass-band deviation (measured: at most 1.2e-7 relative, 100 Hz to
/// 20 kHz at 48 kHz; tolerance 5e-7); (2) the analog H(jω), from which BDF2 departs by its
/// leading error term `ω^3 h^2 / (3 |jω + p|)` (measured: 3.1e-6 at 1 kHz, 8.3e-3 at 20 kHz,
/// each within 1% of that term above 1 kHz; tolerance 1.05 times the term plus 1e-7).
#[test]
fn small_signal_response_is_the_rc_low_pass() {
    let (dev, c) = clipper();
    let fs = 48_000.0;
    let h = 1.0 / (fs * OVERSAMPLING as f64);
    let amp = 1e-3 / c.drive; // 1 mV at the input node
    let n = 4800;
    let mut worst_discrete: f64 = 0.0;
    let mut worst_analog: f64 = 0.0;
    for f in [100.0, 1000.0, 5000.0, 10_000.0, 15_000.0, 20_000.0] {
        let w = 2.0 * PI * f / fs;
        let x: Vec<f64> = (0..n).map(|i| amp * (w * i as f64).cos()).collect();
        let y = dev.render(&x, fs).unwrap();
        let got = phasor(&y, w, 1000..3800) / amp;
        let scale = c.drive * c.output_gain;
        let gd = 2.0 * c.is / c.vt;
        let pole = 1.0 / (c.r * c.c) + gd / c.c;
        let analog = scale * (1.0 / (c.r * c.c)) / (Complex64::new(0.0, 2.0 * PI * f) + pole);
        let zi = Complex64::from_polar(1.0, -2.0 * PI * f * h);
        let discrete = scale * (2.0 * h / (3.0 * c.r * c.c))
            / (1.0 - 4.0 / 3.0 * zi + zi * zi / 3.0 + 2.0 * h / 3.0 * pole);
        let ed = (got - discrete).norm() / discrete.norm();
        let ea = (got - analog).norm() / analog.norm();
        eprintln!(
            "{f} Hz: |H| = {:.6} (analog {:.6}), vs BDF2 {ed:.2e}, vs analog {ea:.2e}",
            got.norm(),
            analog.norm(),
        );
        // BDF2's leading error: s_d = jw + j w^3 h^2 / 3 + O(h^3), so H_d / H - 1 is about
        // w^3 h^2 / (3 |jw + p|).
        let w_rad = 2.0 * PI * f;
        let predicted = w_rad.powi(3) * h * h / (3.0 * Complex64::new(pole, w_rad).norm());
        eprintln!("    predicted BDF2 error {predicted:.2e}");
        worst_discrete = worst_discrete.max(ed);
        worst_analog = worst_analog.max(ea);
        assert!(ed < 5e-7, "{f} Hz: {ed} from BDF2's transfer function");
        assert!(
            ea < 1.05 * predicted + 1e-7,
            "{f} Hz: {ea} from the analog transfer function"
        );
    }
    eprintln!("worst: vs BDF2 {worst_discrete:.2e}, vs analog {worst_analog:.2e}");
}

/// The equilibrium of the circuit for input `u` volts, by bisection on
/// `(u - v) / R - 2 Is sinh(v / Vt) = 0` (decreasing in v, root between 0 and u), to the
/// last bit.
fn equilibrium(c: &DiodeClipper, u: f64) -> f64 {
    let g = |v: f64| (u - v) / c.r - 2.0 * c.is * (v / c.vt).sinh();
    let (mut lo, mut hi) = if u < 0.0 { (u, 0.0) } else { (0.0, u) };
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if g(mid) > 0.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// The static curve: constant inputs from -1 to 1 full scale (-10..10 V) settle on the diode
/// equation's solution. The ODE solver alone reaches it to rounding (BDF2's fixed point is the
/// exact equilibrium; measured 2.2e-16 V, tolerance 1e-14 V), and so does the whole device
/// (the filters' DC gains are 1 to rounding; measured 1.1e-15 V, tolerance 1e-13 V).
#[test]
fn static_curve_is_the_diode_equation() {
    let (dev, c) = clipper();
    let fs = 48_000.0;
    let mut worst_solver: f64 = 0.0;
    let mut worst_device: f64 = 0.0;
    for k in -20..=20 {
        let x = k as f64 / 20.0;
        let want = equilibrium(&c, x * c.drive);
        let v = c.solve(&vec![x * c.drive; 4000], fs * 16.0).unwrap();
        worst_solver = worst_solver.max((v[3999] - want).abs());
        let y = dev.render(&vec![x; 2000], fs).unwrap();
        worst_device = worst_device.max((y[1000] / c.output_gain - want).abs());
    }
    eprintln!("static curve: solver {worst_solver:.2e} V, device {worst_device:.2e} V");
    assert!(worst_solver < 1e-14, "{worst_solver}");
    assert!(worst_device < 1e-13, "{worst_device}");
}

/// BDF2 at 16 x 48 kHz against SciPy's Radau (rtol 1e-12) on a clipping two-tone input (peaks
/// of 4.5 V, diodes deep in conduction). Measured: max error 2.24e-3 V (of 0.61 V peaks, at the
/// diodes' turn-on), RMS 1.40e-4 V; at 8x, RMS 4.54e-4 V, 3.25 times more (second order, short
/// of the asymptotic 4 where the diodes switch). Tolerances: max 3e-3 V, RMS 2e-4 V, ratio
/// 2.9..4.5.
#[test]
fn ode_solver_agrees_with_radau() {
    let path = common::data("device_reference.json");
    let data: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let (_, c) = clipper();
    let circ = &data["circuit"];
    assert_eq!(circ["r"].as_f64(), Some(c.r));
    assert_eq!(circ["c"].as_f64(), Some(c.c));
    assert_eq!(circ["is"].as_f64(), Some(c.is));
    assert_eq!(circ["vt"].as_f64(), Some(c.vt));
    let inp = &data["input"];
    let g = |k: &str| inp[k].as_f64().unwrap();
    let (a1, f1, a2, f2, p2, fade) = (g("a1"), g("f1"), g("a2"), g("f2"), g("p2"), g("fade_s"));
    let u = |t: f64| {
        let w = if t < fade {
            0.5 * (1.0 - (PI * t / fade).cos())
        } else {
            1.0
        };
        w * (a1 * (2.0 * PI * f1 * t).sin() + a2 * (2.0 * PI * f2 * t + p2).sin())
    };
    let fs_os = data["fs_os"].as_f64().unwrap();
    let want: Vec<f64> = data["v"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let errors = |step: usize| {
        let us: Vec<f64> = (1..=want.len() / step)
            .map(|j| u((j * step) as f64 / fs_os))
            .collect();
        let v = c.solve(&us, fs_os / step as f64).unwrap();
        let e: Vec<f64> = v
            .iter()
            .enumerate()
            .map(|(j, v)| v - want[(j + 1) * step - 1])
            .collect();
        let max = e.iter().fold(0.0f64, |m, e| m.max(e.abs()));
        let rms = (e.iter().map(|e| e * e).sum::<f64>() / e.len() as f64).sqrt();
        (max, rms)
    };
    let (max1, rms1) = errors(1);
    let (max2, rms2) = errors(2);
    let peak = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    eprintln!(
        "vs Radau (peak {peak:.3} V): 16x max {max1:.2e} V rms {rms1:.2e} V; \
         8x max {max2:.2e} V rms {rms2:.2e} V; ratio {:.2}",
        rms2 / rms1
    );
    assert!(peak > 0.55, "the reference clips: peak {peak}");
    assert!(max1 < 3e-3, "max error {max1} V");
    assert!(rms1 < 2e-4, "RMS error {rms1} V");
    assert!(
        (2.9..4.5).contains(&(rms2 / rms1)),
        "order: {}",
        rms2 / rms1
    );
}

/// The device's own sine-set NMR-S (paper sec. 2.6) at 48 kHz on every 11th tone of the 264
/// plus MIDI 96, 100, 104 and 108 at each level.
///
/// The harmonic analysis has a floor of its own: it reads each harmonic at its nearest bin
/// through a 120 dB window, and the leakage it leaves is noise to the NMR. A signal of exact
/// harmonics only (the analysis' own resynthesis of the device's output, eq. 11) measures that
/// floor for a like spectrum (to a few dB: its leakage is not the same). The floor is -25 dB on
/// loud low notes (MIDI 32 at -18 dBFS: device -24.9 dB, floor -26.8 dB), so low notes say
/// nothing about aliasing; from MIDI 96 (1047 Hz) up, where neural models alias most, it is
/// below -60 dB.
///
/// Measured: from MIDI 96 up the device's worst tone is -60.6 dB (MIDI 98 at -36 dBFS, floor
/// -65.4 dB; tolerance -60 dB, deterministic). Every tone is within 4.8 dB of its floor or below
/// -70 dB (tolerance 6 dB); the one clearly above its floor is the loudest top note, MIDI 108
/// at -6 dBFS: -72.2 dB against a floor of -108.2 dB, the folding of harmonics beyond 8 fs
/// inside the 16x simulation.
#[test]
fn sine_set_nmr_is_at_the_analysis_floor() {
    let (dev, _) = clipper();
    let fs = 48_000.0;
    let all = dealias::dsp::tones::eval_sine_set();
    let mut tones: Vec<_> = all.iter().step_by(11).copied().collect();
    tones.extend(all.iter().filter(|t| t.midi >= 96 && t.midi % 4 == 0));
    let len = dealias::dsp::tones::eval_tone_len(fs);
    let an = dealias::loss::metrics::SineSetAnalyzer::new(fs).unwrap();
    let db = |v: f64| 10.0 * v.log10();
    let results: Vec<(f64, f64)> = tones
        .par_iter()
        .map(|t| {
            // The tone goes on past the analysed second, as a model's input would.
            let mut y = dev
                .render(&t.render(fs, len + dev.lookahead(), None), fs)
                .unwrap();
            y.truncate(len);
            let f0 = t.tone.f0;
            let nmr = an.tone_metrics(&y, f0, None).unwrap().nmr_s;
            let (_, harmonics, _) = an.analyze(&y, f0).unwrap();
            let exact = harmonics.synthesize(len);
            let floor = an.tone_metrics(&exact, f0, None).unwrap().nmr_s;
            (db(nmr), db(floor))
        })
        .collect();
    let mut worst_above_floor = f64::NEG_INFINITY;
    let mut worst_high = f64::NEG_INFINITY;
    for (t, &(nmr, floor)) in tones.iter().zip(&results) {
        eprintln!(
            "MIDI {:>3} at {:>3} dBFS: NMR-S {nmr:6.1} dB, floor {floor:6.1} dB",
            t.midi, t.dbfs
        );
        if nmr > -70.0 {
            worst_above_floor = worst_above_floor.max(nmr - floor);
        }
        if t.midi >= 96 {
            worst_high = worst_high.max(nmr);
        }
    }
    eprintln!(
        "NMR-S above the floor (tones above -70 dB): at most {worst_above_floor:.2} dB; from \
         MIDI 96 up: at most \
         {worst_high:.1} dB"
    );
    assert!(
        worst_above_floor < 6.0,
        "{worst_above_floor} dB above the floor"
    );
    assert!(worst_high < -60.0, "NMR-S {worst_high} dB on high notes");
}

/// `device list` names every device; `device render` writes what the library renders (to f32
/// rounding), at the input's rate; an unknown name is an error that lists the devices.
#[test]
fn command_line_lists_and_renders() {
    let out = common::dealias_cmd(&["device", "list"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("diode-clipper "), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let (inp, outp) = (dir.path().join("in.wav"), dir.path().join("out.wav"));
    let fs = 44_100;
    let x: Vec<f64> = (0..4410)
        .map(|i| 0.5 * (2.0 * PI * 440.0 * i as f64 / fs as f64).sin())
        .collect();
    common::write_wav(&inp, &x, fs);
    let render = |name: &str| {
        common::dealias_cmd(&[
            "device",
            "render",
            name,
            inp.to_str().unwrap(),
            outp.to_str().unwrap(),
        ])
    };
    let out = render("diode-clipper");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let y = dealias::audio::read_mono(&outp, None).unwrap();
    assert_eq!(y.sample_rate, fs);
    let x32: Vec<f64> = x.iter().map(|&v| v as f32 as f64).collect();
    let want = clipper().0.render(&x32, fs as f64).unwrap();
    assert_eq!(y.samples.len(), want.len());
    let err = y
        .samples
        .iter()
        .zip(&want)
        .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(err < 1e-7, "{err}");
    assert!(want.iter().fold(0.0f64, |m, v| m.max(v.abs())) > 0.5);

    let out = render("fuzz-box");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no device called 'fuzz-box'") && err.contains("diode-clipper"));
}
