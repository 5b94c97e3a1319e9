use super::*;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/")).join(rel)
}

#[test]
fn loads_paper_models() {
    let m = load_model(&fixture("paper-models/broadcast_tcn_teacher.nam")).unwrap();
    assert_eq!(m.format, Format::Nam);
    assert_eq!(m.network.kind(), "WaveNet");
    assert_eq!(m.network.num_params(), 13801);
    assert_eq!(m.network.receptive_field(), 4093);
    let m = load_model(&fixture("paper-models/broadcast_lstm_teacher.json")).unwrap();
    assert_eq!(m.format, Format::GuitarMl);
    assert_eq!(m.network.kind(), "LSTM");
}
