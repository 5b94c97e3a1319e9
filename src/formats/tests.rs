use super::*;

/// A shared fixture, or `None` with a message when it is absent (a failure when
/// `DEALIAS_REQUIRE_FIXTURES` is set, as in CI).
fn fixture(rel: &str) -> Option<PathBuf> {
    let p = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/")).join(rel);
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("DEALIAS_REQUIRE_FIXTURES").is_none(),
        "fixture {} is absent and DEALIAS_REQUIRE_FIXTURES is set",
        p.display()
    );
    eprintln!("skipped: fixture {} is absent", p.display());
    None
}

#[test]
fn loads_paper_models() {
    let (Some(tcn), Some(lstm)) = (
        fixture("paper-models/broadcast_tcn_teacher.nam"),
        fixture("paper-models/broadcast_lstm_teacher.json"),
    ) else {
        return;
    };
    let m = load_model(&tcn).unwrap();
    assert_eq!(m.format, Format::Nam);
    assert_eq!(m.network.kind(), "WaveNet");
    assert_eq!(m.network.num_params(), 13801);
    assert_eq!(m.network.receptive_field(), 4093);
    let m = load_model(&lstm).unwrap();
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
