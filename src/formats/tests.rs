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

#[test]
fn licences_forbidding_derivatives() {
    for l in [
        "CC BY-NC-ND 4.0",
        "cc-by-nd",
        "Attribution-NoDerivatives 4.0",
        "no derivatives",
    ] {
        assert!(forbids_derivatives(l), "{l}");
    }
    for l in [
        "CC BY-NC-SA 4.0",
        "MIT",
        "CC0",
        "Andy's model, no redistribution",
    ] {
        assert!(!forbids_derivatives(l), "{l}");
    }
    let doc = serde_json::json!({"version": "0.5.4", "architecture": "Linear",
        "config": {"receptive_field": 2, "bias": false}, "weights": [0.5, 0.25],
        "metadata": {"License": "CC BY-ND"}});
    let m = parse_model(doc, None, false).unwrap();
    assert_eq!(m.licence().as_deref(), Some("CC BY-ND"));
    let out = to_document(&m, Some(Value::from("x"))).unwrap();
    assert_eq!(out["metadata"]["License"], "CC BY-ND");
}
