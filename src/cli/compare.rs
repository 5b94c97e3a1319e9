//! `dealias compare TEACHER STUDENT`: the paper's Table 1 rows for a teacher and its
//! fine-tuned student (sec. 2.6): on the sine set the -T metrics against the teacher's
//! alias-free output (ESR-T, NMR-T, HESR-T) and the -S metrics; on audio clips the A-weighted
//! G+B ESR and the MRSL against the teacher's output, or against device recordings when given.

use std::path::PathBuf;

use anyhow::bail;
use serde_json::{json, Value};

use super::measure::{print_row, progress_bar, tones_at, ConventionArg};
use crate::eval::audio_metrics::{builtin_clips, compare_on_clips, Clip};
use crate::eval::report::{aggregate_json, db, num};
use crate::eval::sine_set::{compare_sine_set_with, RunOptions, SineReference, SineSetReport};
use crate::eval::table1::{compare_progress_total, compare_table1, Convention};
use crate::eval::AudioMetrics;

/// Arguments of `dealias compare`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The teacher (original) model file.
    pub teacher: PathBuf,
    /// The student (fine-tuned) model file.
    pub student: PathBuf,
    /// Input (DI) audio clips for the G+B metrics (repeatable). Default: the built-in guitar
    /// and bass clips (5 s each; at 24 kHz and above, where the A-weighting is defined).
    #[arg(long = "audio", value_name = "DI.wav")]
    pub audio: Vec<PathBuf>,
    /// Device recordings of the same clips, in the same order (repeatable); without them the
    /// teacher's output is the reference.
    #[arg(long = "reference", value_name = "REF.wav", conflicts_with = "device")]
    pub reference: Vec<PathBuf>,
    /// Oversampling factor of both models (2 = the paper's OS2 columns).
    #[arg(long, default_value_t = 1, value_name = "M")]
    pub oversample: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Sample rate for model files that state none (default: their format's standard rate).
    #[arg(long, value_name = "HZ")]
    pub rate: Option<f64>,
    /// Only the tones at this input level (-36, -18 or -6 dBFS; repeatable). Default: all.
    #[arg(long, value_name = "DBFS", allow_hyphen_values = true)]
    pub level: Vec<f64>,
    /// Knob values of both models (conditioned models).
    #[command(flatten)]
    pub knobs: super::KnobArgs,
    #[command(flatten)]
    pub slim: super::SlimArgs,
    /// Evaluation convention: `spec` or `paper` (Table 1 as printed, with its -R and 2x
    /// oversampled columns; see `dealias measure --help`). Without --device or
    /// --sine-reference, `paper` measures -R against the teacher's output, as Table 1 does for
    /// models without a device.
    #[arg(long, value_enum, default_value_t = ConventionArg::Spec)]
    pub convention: ConventionArg,
    #[command(flatten)]
    pub reference_args: super::ReferenceArgs,
}

fn agg_db(a: Option<crate::loss::metrics::Aggregate>) -> f64 {
    a.map_or(f64::NAN, |a| a.mean_linear_db)
}

fn row_json(role: &str, r: &SineSetReport, audio: Option<&AudioMetrics>) -> Value {
    let mut v = json!({
        "role": role,
        "esr_t_db": num(agg_db(r.esr_t)),
        "nmr_t_db": num(agg_db(r.nmr_t)),
        "hesr_t_db": num(agg_db(r.hesr_t)),
        "esr_s_db": num(r.esr_s.mean_linear_db),
        "nmr_s_db": num(r.nmr_s.mean_linear_db),
        "mean_of_db": {
            "esr_t_db": r.esr_t.map_or(Value::Null, |a| num(a.mean_db)),
            "nmr_t_db": r.nmr_t.map_or(Value::Null, |a| num(a.mean_db)),
            "hesr_t_db": r.hesr_t.map_or(Value::Null, |a| num(a.mean_db)),
            "esr_s_db": num(r.esr_s.mean_db),
            "nmr_s_db": num(r.nmr_s.mean_db),
        },
    });
    for (key, a) in [
        ("esr_r_db", r.esr_r),
        ("nmr_r_db", r.nmr_r),
        ("hesr_r_db", r.hesr_r),
    ] {
        if a.is_some() {
            v[key] = num(agg_db(a));
        }
    }
    if let Some(a) = audio {
        v["gb_esr_db"] = num(db(a.esr));
        v["mrsl"] = num(a.mrsl);
        v["mrsl_db"] = num(db(a.mrsl));
    }
    v
}

/// Runs `dealias compare`.
pub fn run(args: Args) -> anyhow::Result<()> {
    super::check::count("--oversample", args.oversample, None)?;
    super::check::rate("--rate", args.rate)?;
    // The gain and the device's name are checked before any model is read.
    args.reference_args.check()?;
    if !args.reference.is_empty() && args.reference.len() != args.audio.len() {
        bail!(
            "{} --reference files for {} --audio files: give one recording per clip",
            args.reference.len(),
            args.audio.len()
        );
    }
    let (teacher, fs) = super::load_with_rate(&args.teacher, args.rate)?;
    let (student, fs_s) = super::load_with_rate(&args.student, args.rate)?;
    if fs != fs_s {
        bail!("the teacher runs at {fs} Hz but the student at {fs_s} Hz");
    }
    // Containers: submodel by submodel (the same index in both files).
    let choose = |m: &crate::ModelFile, p: &std::path::Path| -> anyhow::Result<_> {
        if m.is_container() || args.slim.is_chosen() {
            super::chosen_submodels(m, &args.slim, p)
        } else {
            Ok(vec![(None, m.clone())])
        }
    };
    let ts = choose(&teacher, &args.teacher)?;
    let ss = choose(&student, &args.student)?;
    if ts.len() != ss.len() {
        bail!(
            "the teacher has {} submodel(s) but the student {}; choose one with --submodel or --slim",
            ts.len(),
            ss.len()
        );
    }
    let mut summaries = Vec::new();
    let several = ts.len() > 1;
    for ((label, mut teacher), (_, mut student)) in ts.into_iter().zip(ss) {
        if let (Some(l), false) = (&label, args.json) {
            println!("{l}");
        }
        super::apply_knobs(&mut teacher, &args.knobs.knobs, &args.teacher)?;
        super::apply_knobs(&mut student, &args.knobs.knobs, &args.student)?;
        if let Some(mut v) = compare_one(&args, &teacher, &student, fs)? {
            if several {
                v["submodel"] = teacher.active.into();
            }
            summaries.push(v);
        }
    }
    match summaries.len() {
        0 => {}
        1 if !several => println!("{}", serde_json::to_string_pretty(&summaries[0])?),
        _ => println!("{}", serde_json::to_string_pretty(&summaries)?),
    }
    Ok(())
}

/// `compare` of one teacher/student pair; with `--json` the summary is returned instead of
/// printed.
fn compare_one(
    args: &Args,
    teacher: &crate::ModelFile,
    student: &crate::ModelFile,
    fs: f64,
) -> anyhow::Result<Option<Value>> {
    let convention = Convention::from(args.convention);
    let paper = convention == Convention::Paper;
    if paper && args.oversample != 1 {
        bail!("--convention paper measures the 2x oversampled columns itself; drop --oversample");
    }
    let opts: RunOptions = convention.run_options().oversampled(args.oversample);
    let tones = tones_at(&args.level)?;
    super::measure::check_memory(fs, opts, tones.len(), 2)?;
    let gain = args.reference_args.gain();
    let device = args.reference_args.check()?;
    let recordings = args
        .reference_args
        .sine_recordings(device.as_ref(), &tones, fs)?;
    let reference = match &recordings {
        Some(r) => SineReference::Recordings(r),
        None if paper => SineReference::Teacher,
        None => SineReference::None,
    };
    let pb = progress_bar(compare_progress_total(tones.len(), paper), "sine set");
    let progress = |k: usize| pb.set_position(k as u64);
    let (t_net, s_net) = (&teacher.network, &student.network);
    let (rt, rs, mut table) = if paper {
        let (t, a, b) = compare_table1(
            t_net, s_net, fs, convention, &tones, reference, true, &progress,
        )?;
        (a, b, Some(t))
    } else {
        let (a, b) = compare_sine_set_with(t_net, s_net, fs, opts, &tones, reference, &progress)?;
        (a, b, None)
    };
    pb.finish_and_clear();

    // G+B audio: every clip through both models from the initial state; without --audio the
    // built-in guitar and bass clips (through the device when given).
    // (The G+B ESR is A-weighted: without --audio, none below the filter's lowest rate.)
    let mut audio: Option<(AudioMetrics, AudioMetrics)> = None;
    let mut clips_label = String::new();
    if args.audio.is_empty() {
        if fs >= crate::dsp::a_weighting::MIN_RATE {
            let (clips, names) = builtin_clips(fs, device.as_ref())?;
            let cmp = compare_on_clips(&teacher.network, &student.network, fs, opts, &clips)?;
            audio = Some((cmp.teacher, cmp.student));
            clips_label = format!("the built-in {} clips", names.join(" and "));
        }
    } else {
        let mut clips = Vec::new();
        for (i, p) in args.audio.iter().enumerate() {
            let a = crate::audio::read_mono(p, None)?;
            if a.sample_rate as f64 != fs {
                bail!(
                    "{} is at {} Hz but the models run at {fs} Hz; resample it first",
                    p.display(),
                    a.sample_rate
                );
            }
            let reference = match args.reference.get(i) {
                None => match &device {
                    Some(d) => Some(d.render(&a.samples, fs)?),
                    None => None,
                },
                Some(rp) => {
                    let r = crate::audio::read_mono(rp, None)?;
                    if r.sample_rate != a.sample_rate {
                        bail!("{} and {} differ in sample rate", rp.display(), p.display());
                    }
                    Some(r.samples.iter().map(|v| v * gain).collect::<Vec<f64>>())
                }
            };
            clips.push(Clip {
                input: a.samples,
                reference,
            });
        }
        let cmp = compare_on_clips(&teacher.network, &student.network, fs, opts, &clips)?;
        for &(_, rn, xn) in &cmp.truncated {
            super::notice(&format!(
                "a reference recording has {rn} samples for {xn} input samples; comparing the first {}",
                rn.min(xn)
            ));
        }
        audio = Some((cmp.teacher, cmp.student));
        clips_label = format!("{} --audio clip(s)", args.audio.len());
    }
    let against = if !args.reference.is_empty() {
        "the device recordings".to_string()
    } else {
        crate::eval::audio_metrics::reference_label(device.as_ref())
    };

    let (at, as_) = match &audio {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    if let Some(t) = &mut table {
        if let Some((a, b)) = &audio {
            t.add_audio(a, b);
        }
        let mut v = t.to_json();
        if audio.is_some() {
            v["gb_clips"] = json!(clips_label);
            v["gb_against"] = json!(against);
        }
        v["teacher"] = json!(args.teacher.display().to_string());
        v["student"] = json!(args.student.display().to_string());
        if args.json {
            return Ok(Some(v));
        }
        println!(
            "teacher {} / student {} at {fs} Hz",
            args.teacher.display(),
            args.student.display()
        );
        print!("{}", t.text());
        if audio.is_some() {
            println!("  (G+B on {clips_label}, against {against})");
        }
        return Ok(None);
    }
    let teacher_row = row_json("teacher", &rt, at);
    let student_row = row_json("student", &rs, as_);
    if args.json {
        let mut v = student_row.clone();
        let o = v.as_object_mut().expect("object");
        o.remove("role");
        o.insert("teacher".into(), json!(args.teacher.display().to_string()));
        o.insert("student".into(), json!(args.student.display().to_string()));
        o.insert("sample_rate".into(), json!(fs));
        o.insert("oversample".into(), json!(args.oversample));
        o.insert("convention".into(), json!(convention.name()));
        o.insert("conditions".into(), json!(convention.description()));
        o.insert("reference".into(), json!(against));
        if audio.is_some() {
            o.insert("gb_clips".into(), json!(clips_label));
        }
        o.insert(
            "aggregation".into(),
            json!(crate::eval::report::AGGREGATION_LEGEND),
        );
        o.insert("rows".into(), json!([teacher_row, student_row]));
        o.insert(
            "student_aggregates".into(),
            json!({
                "esr_s": aggregate_json(&rs.esr_s),
                "nmr_s": aggregate_json(&rs.nmr_s),
            }),
        );
        return Ok(Some(v));
    }

    println!(
        "teacher {} / student {} at {fs} Hz{}",
        args.teacher.display(),
        args.student.display(),
        if args.oversample > 1 {
            format!(", {}x oversampled", args.oversample)
        } else {
            String::new()
        }
    );
    let f = |v: f64| {
        if v.is_finite() {
            format!("{v:>8.1}")
        } else if v < 0.0 {
            format!("{:>8}", "-inf")
        } else {
            format!("{:>8}", "-")
        }
    };
    let with_r = rt.esr_r.is_some();
    print!("  role     ");
    if audio.is_some() {
        print!("{:>8}{:>8}", "G+B ESR", "MRSL");
    }
    if with_r {
        print!("{:>8}{:>8}{:>8}", "ESR-R", "NMR-R", "HESR-R");
    }
    println!(
        "{:>8}{:>8}{:>8}{:>8}{:>8}",
        "ESR-T", "NMR-T", "HESR-T", "ESR-S", "NMR-S"
    );
    for (role, r, a) in [("teacher", &rt, at), ("student", &rs, as_)] {
        print!("  {role:<9}");
        if let Some(a) = a {
            print!("{}{}", f(db(a.esr)), f(db(a.mrsl)));
        }
        if with_r {
            print!(
                "{}{}{}",
                f(agg_db(r.esr_r)),
                f(agg_db(r.nmr_r)),
                f(agg_db(r.hesr_r))
            );
        }
        println!(
            "{}{}{}{}{}",
            f(agg_db(r.esr_t)),
            f(agg_db(r.nmr_t)),
            f(agg_db(r.hesr_t)),
            f(r.esr_s.mean_linear_db),
            f(r.nmr_s.mean_linear_db)
        );
    }
    println!(
        "  (dB, convention spec; sine-set columns are 10 log10 of the mean over the tones{}{})",
        if audio.is_some() {
            format!("; G+B on {clips_label}, against {against}")
        } else {
            String::new()
        },
        if with_r {
            "; -R against the device's sine set"
        } else {
            ""
        }
    );
    println!("  student, both aggregations over the tones:");
    println!("  metric   mean of linear      mean of dB");
    for (n, a) in [
        ("ESR-T", rs.esr_t),
        ("NMR-T", rs.nmr_t),
        ("HESR-T", rs.hesr_t),
    ] {
        if let Some(a) = a {
            print_row(n, a.mean_linear_db, a.mean_db);
        }
    }
    print_row("ESR-S", rs.esr_s.mean_linear_db, rs.esr_s.mean_db);
    print_row("NMR-S", rs.nmr_s.mean_linear_db, rs.nmr_s.mean_db);
    Ok(None)
}
