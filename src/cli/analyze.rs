//! `dealias analyze TONE.wav --f0 HZ`: the sine-tone aliasing metrics (ESR-S, NMR-S; paper
//! sec. 2.6) of any recorded or rendered tone, so that a plugin or a hardware capture can be
//! measured as a model file is. The last second of the file is analysed.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;

use crate::eval::plots::{save_spectrum, spectrum_db};
use crate::eval::report::{db, num};
use crate::eval::sine_set::analyze_tone;
use crate::loss::metrics::SineSetAnalyzer;

/// Lowest fundamental analysed: the bottom of the audible range (the sine set starts at 27.5 Hz).
const MIN_F0: f64 = 20.0;

/// Arguments of `dealias analyze`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// WAV file of the response to a sine (at least one second; the last second is analysed).
    pub tone: PathBuf,
    /// Fundamental frequency of the input sine in Hz.
    #[arg(long, value_name = "HZ")]
    pub f0: f64,
    /// Channel of a multichannel file (0 = left).
    #[arg(long, value_name = "N")]
    pub channel: Option<usize>,
    /// Directory for the spectrum figure (PNG and SVG).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs `dealias analyze`.
pub fn run(args: Args) -> anyhow::Result<()> {
    // Harmonics of lower fundamentals crowd into the analysis window's main lobe (and their
    // number, the work, grows as 1/f0).
    if !(args.f0 >= MIN_F0 && args.f0.is_finite()) {
        anyhow::bail!(
            "--f0 {}: the fundamental must be a finite frequency of at least {MIN_F0} Hz (and below \
             half the file's sample rate)",
            args.f0
        );
    }
    let _locks = match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("--out {}", dir.display()))?;
            let set = crate::io::Outputs::new()
                .input(&args.tone, "TONE.wav")
                .output(&dir.join("spectrum.svg"), "--out")
                .output(&dir.join("spectrum.png"), "--out");
            Some(set.claim()?)
        }
        None => None,
    };
    let audio = crate::audio::read_mono(&args.tone, args.channel)?;
    let fs = audio.sample_rate as f64;
    if args.f0 >= fs / 2.0 {
        anyhow::bail!(
            "--f0 {}: the fundamental must be below half the sample rate of {} ({} Hz)",
            args.f0,
            args.tone.display(),
            fs / 2.0
        );
    }
    if audio.sample_rate % 2 != 0 {
        anyhow::bail!(
            "{}: its sample rate, {fs} Hz, is odd; the analysis of one second needs an even number \
             of samples",
            args.tone.display()
        );
    }
    if audio.seconds() < 1.0 {
        anyhow::bail!(
            "{} is {:.3} s long ({} samples at {fs} Hz); the analysis needs at least one second",
            args.tone.display(),
            audio.seconds(),
            audio.samples.len()
        );
    }
    let (m, harmonics) = analyze_tone(&audio.samples, fs, args.f0)?;
    if let Some(dir) = &args.out {
        let an = SineSetAnalyzer::new(fs)?;
        let spec = spectrum_db(an.analyzer(), &audio.samples)?;
        let marks: Vec<(f64, f64)> = harmonics
            .iter()
            .enumerate()
            .map(|(i, &a)| ((i + 1) as f64 * args.f0, a))
            .collect();
        save_spectrum(
            &dir.join("spectrum"),
            fs,
            &spec,
            &marks,
            -160.0,
            &format!("Spectrum, f0 = {} Hz", args.f0),
        )?;
    }
    if args.json {
        let v = json!({
            "file": args.tone.display().to_string(),
            "sample_rate": fs,
            "f0_hz": args.f0,
            "esr_s_db": num(db(m.esr_s)),
            "nmr_s_db": num(db(m.nmr_s)),
            "harmonics_db": harmonics.iter().map(|a| num(20.0 * a.log10())).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{}: {} Hz, f0 {} Hz, last second analysed",
        args.tone.display(),
        fs,
        args.f0
    );
    println!("  ESR-S  {:>7.1} dB", db(m.esr_s));
    println!("  NMR-S  {:>7.1} dB", db(m.nmr_s));
    let shown: Vec<String> = harmonics
        .iter()
        .take(10)
        .map(|a| format!("{:.1}", 20.0 * a.log10()))
        .collect();
    println!(
        "  harmonics 1..{} (dBFS peak): {}",
        shown.len(),
        shown.join(", ")
    );
    Ok(())
}
