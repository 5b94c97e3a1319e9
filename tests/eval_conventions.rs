//! Exploration, not a check (run with `--ignored --nocapture`): which aggregation or sine-set
//! convention reproduces the Broadcast LSTM teacher's row of the paper's Table 1 (ESR-S
//! -25.5 dB, NMR-S +6.1 dB)? The authors' code on our sine set gives -21.1/+17.1 dB (mean of
//! linear) and -38.4/-19.4 dB (mean of dB); this prints the alternatives tried.

mod common;

use dealias::dsp::tones::{eval_sine_set, EvalTone, EVAL_LEVELS_DBFS};
use dealias::eval::{measure_tones, RunOptions, SineSetReport};
use dealias::load_model;

fn db(v: f64) -> f64 {
    10.0 * v.log10()
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    v.iter().sum::<f64>() / v.len() as f64
}

fn median(v: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = v.collect();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn print_conventions(name: &str, r: &SineSetReport) {
    println!("== {name}");
    type Get = fn(&dealias::loss::metrics::ToneMetrics) -> f64;
    let metrics: [(&str, Get); 2] = [("ESR-S", |m| m.esr_s), ("NMR-S", |m| m.nmr_s)];
    for (label, get) in metrics {
        let all = || r.tones.iter().map(|t| get(&t.metrics));
        let per_level_lin: Vec<f64> = EVAL_LEVELS_DBFS
            .iter()
            .map(|&l| db(mean(r.at_level(l).map(|t| get(&t.metrics)))))
            .collect();
        println!(
            "{label}: mean-of-linear {:.1} | mean-of-dB {:.1} | median {:.1} | \
             mean over levels of per-level mean-of-linear {:.1} (levels {:?}) | \
             -6 dBFS only: mean-of-linear {:.1}, mean-of-dB {:.1}",
            db(mean(all())),
            mean(all().map(db)),
            db(median(all())),
            mean(per_level_lin.iter().copied()),
            per_level_lin
                .iter()
                .map(|v| (v * 10.0).round() / 10.0)
                .collect::<Vec<_>>(),
            db(mean(r.at_level(-6.0).map(|t| get(&t.metrics)))),
            mean(r.at_level(-6.0).map(|t| db(get(&t.metrics)))),
        );
    }
}

#[test]
#[ignore = "exploration: prints conventions, takes minutes"]
fn table_1_conventions() {
    let Some(path) = common::fixture_or_skip("paper-models/broadcast_lstm_teacher.json") else {
        return;
    };
    let m = load_model(&path).unwrap();
    let fs = m.sample_rate.unwrap_or(44_100.0);
    let run = |tones: &[EvalTone]| {
        measure_tones(&m.network, fs, RunOptions::default(), None, tones, &|_| {}).unwrap()
    };
    print_conventions(
        "spec sine set (amplitude 10^(dB/20), zero phase)",
        &run(&eval_sine_set()),
    );
    // Levels read as power dB (amplitude 10^(dB/10)).
    let power: Vec<EvalTone> = eval_sine_set()
        .into_iter()
        .map(|mut t| {
            t.tone.amplitude = 10f64.powf(t.dbfs / 10.0);
            t
        })
        .collect();
    print_conventions("levels as power dB (amplitude 10^(dB/10))", &run(&power));
    // Random phases (as the training tones, eq. 4), fixed seed.
    let mut g = dealias::dsp::tones::ToneGenerator::new(7);
    let phased: Vec<EvalTone> = eval_sine_set()
        .into_iter()
        .map(|mut t| {
            t.tone.phase = g.next_tone().phase;
            t
        })
        .collect();
    print_conventions("random phases", &run(&phased));
}
