//! `Network::process_batch` (the batched fast path used by training and evaluation) equals
//! the streaming processor for every architecture, from the same initial state. Batches of
//! three items on two threads exercise the kernels' partial register tiles (1 and 2 rows).

mod common;

fn check(name: &str, ext: &str) {
    let model =
        dealias::load_model(&common::data(&format!("reference/{name}/{name}.{ext}"))).unwrap();
    let x = common::read_f64(&common::data(&format!("reference/{name}/input.f64")));
    // Three items of equal length (recurrent batches need that), different content.
    let n = x.len() / 3;
    let inputs: Vec<Vec<f64>> = (0..3).map(|i| x[i * n..(i + 1) * n].to_vec()).collect();
    let batch = model.network.process_batch(&inputs);
    // The f32 kernels (fine-tuning's teacher pass and validation in f32 runs).
    let batch32 = model.network.process_batch_in::<f32>(&inputs, &[]);
    for ((xi, yb), y32) in inputs.iter().zip(&batch).zip(&batch32) {
        let ys = model.network.process::<f64>(xi);
        let (rel_peak, _) = common::errors(yb, &ys);
        assert!(
            rel_peak < 1e-12,
            "{name}: batched vs streaming {rel_peak:e}"
        );
        // f32 rounding through a few layers: measured at most 5.2e-7 of the peak (GRU).
        let (rel_peak, _) = common::errors(y32, &ys);
        assert!(
            rel_peak < 5e-6,
            "{name}: f32 batched vs f64 streaming {rel_peak:e}"
        );
        eprintln!("{name}: f32 batch vs f64 streaming {rel_peak:.1e} of the peak");
    }
}

#[test]
fn recurrent_networks() {
    check("guitarml_lstm5x2_skip_bias", "json");
    check("guitarml_gru3x3_noskip_nobias", "json");
    check("nam_lstm_2x6", "nam");
}

#[test]
fn wavenets_including_their_zero_padded_start() {
    check("wavenet_tanh_gated", "nam");
    check("wavenet_post_head", "nam");
    check("wavenet_two_arrays_k2_k5", "nam");
}

/// A signal longer than the stretch one batched WaveNet pass computes (65,536 samples) runs
/// in stretches, each with its receptive field before it: still equal to streaming.
#[test]
fn wavenets_longer_than_one_stretch() {
    for name in ["wavenet_tanh_gated", "wavenet_two_arrays_k2_k5"] {
        let model =
            dealias::load_model(&common::data(&format!("reference/{name}/{name}.nam"))).unwrap();
        let x = common::read_f64(&common::data(&format!("reference/{name}/input.f64")));
        let long: Vec<f64> = x.iter().cycle().take(150_001).copied().collect();
        let batch = model.network.process_batch(std::slice::from_ref(&long));
        let (rel_peak, _) = common::errors(&batch[0], &model.network.process::<f64>(&long));
        assert!(
            rel_peak < 1e-12,
            "{name}: batched vs streaming {rel_peak:e}"
        );
    }
}

#[test]
fn linear_models() {
    check("nam_linear_bias", "nam");
}
