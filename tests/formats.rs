//! Model files: lossless save, weight rewriting, validation and fuzzing of the parsers.

mod common;

use common::{data, fixture_or_skip};
use dealias::formats::{load_model_from_bytes, save_model_with_note, to_document};
use dealias::{load_model, save_model, Error};
use proptest::prelude::*;
use serde_json::Value;

fn all_model_files() -> Vec<std::path::PathBuf> {
    // The paper's files when they are beside the clone; the committed cases always.
    let mut v: Vec<std::path::PathBuf> = [
        "paper-models/broadcast_lstm_teacher.json",
        "paper-models/broadcast_tcn_teacher.nam",
        "reference-outputs/wavenet_standard/wavenet_standard.nam",
        "reference-outputs/nam_lstm_1x16/nam_lstm_1x16.nam",
        "reference-outputs/guitarml_gru12_2layer_noskip/guitarml_gru12_2layer_noskip.json",
    ]
    .into_iter()
    .filter_map(fixture_or_skip)
    .collect();
    let assets = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/models"));
    v.extend(
        dealias::formats::embedded::EMBEDDED_MODELS
            .iter()
            .map(|m| assets.join(m.file_name)),
    );
    for dir in ["reference", "guitarml_family"] {
        let root = data(dir);
        let manifest: Value =
            serde_json::from_slice(&std::fs::read(root.join("manifest.json")).unwrap()).unwrap();
        for c in manifest.as_array().unwrap() {
            v.push(
                root.join(c["case"].as_str().unwrap())
                    .join(c["model"].as_str().unwrap()),
            );
        }
    }
    v
}

fn parse_file(p: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn unchanged_save_gives_the_same_json_values() {
    let dir = tempfile::tempdir().unwrap();
    for path in all_model_files() {
        let model = load_model(&path).unwrap();
        let out = dir.path().join(path.file_name().unwrap());
        save_model(&model, &out).unwrap();
        // serde_json's float_roundtrip makes Value equality bit-exact on the weights.
        assert_eq!(parse_file(&out), parse_file(&path), "{}", path.display());
        let again = load_model(&out).unwrap();
        let (a, b) = (again.network.params(), model.network.params());
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}

#[test]
fn changed_weights_are_written_as_f32_and_noted() {
    let dir = tempfile::tempdir().unwrap();
    for path in all_model_files() {
        let mut model = load_model(&path).unwrap();
        let p: Vec<f64> = model
            .network
            .params()
            .iter()
            .map(|x| x * 1.001 + 1e-9)
            .collect();
        model.network.set_params(&p).unwrap();
        let out = dir.path().join(path.file_name().unwrap());
        save_model_with_note(&model, &out, Some(Value::from("test"))).unwrap();
        let saved = load_model(&out).unwrap();
        let q = saved.network.params();
        let n = q.len();
        let aidax = model.format == dealias::Format::AidaX;
        for (i, (a, b)) in q.iter().zip(&p).enumerate() {
            // head_scale lives in the NAM config and is written in full precision.
            let want = if saved.network.kind() == "WaveNet" && i + 1 == n {
                *b
            } else {
                *b as f32 as f64
            };
            if aidax {
                // AIDA-X files store the weights without the file's gains (folded in on
                // loading), so the f32 rounding happens before the gain: within one f32 ulp.
                assert!(
                    (a - b).abs() <= b.abs() * 1.2e-7,
                    "{} value {i}: {a} vs {b}",
                    path.display()
                );
            } else {
                assert_eq!(a.to_bits(), want.to_bits(), "{} value {i}", path.display());
            }
        }
        let doc = parse_file(&out);
        let note = match model.format {
            dealias::Format::Nam => &doc["metadata"]["dealias"],
            dealias::Format::GuitarMl | dealias::Format::AidaX => &doc["dealias"],
        };
        assert_eq!(note["note"], "test", "{}", path.display());
        assert!(note["changed_values"].as_u64().unwrap() > 0);
        // Everything but the weights and the note is unchanged.
        let orig = parse_file(&path);
        for (k, v) in orig.as_object().unwrap() {
            if ![
                "weights",
                "state_dict",
                "metadata",
                "config",
                "layers",
                "output_batch",
                "dealias",
            ]
            .contains(&k.as_str())
            {
                assert_eq!(&doc[k], v, "{k}");
            }
        }
        // A record of an earlier dealias run (the built-in models' training) is kept.
        let earlier = match model.format {
            dealias::Format::Nam => &orig["metadata"]["dealias"],
            _ => &orig["dealias"],
        };
        if !earlier.is_null() {
            assert_eq!(&note["previous"], earlier, "{}", path.display());
        }
    }
}

#[test]
fn refuses_to_overwrite_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let src = data("reference/nam_linear_bias/nam_linear_bias.nam");
    let copy = dir.path().join("m.nam");
    std::fs::copy(&src, &copy).unwrap();
    let model = load_model(&copy).unwrap();
    let err = save_model(&model, &dir.path().join("./m.nam")).unwrap_err();
    assert!(err.to_string().contains("refusing to overwrite"), "{err}");
}

fn small_nam() -> Value {
    parse_file(&data("reference/wavenet_tanh_gated/wavenet_tanh_gated.nam"))
}

fn load_value(v: &Value) -> Result<dealias::ModelFile, Error> {
    load_model_from_bytes(
        v.to_string().as_bytes(),
        Some(std::path::Path::new("x.nam")),
    )
}

fn err_of(v: &Value) -> String {
    match load_value(v) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn clear_errors() {
    let mut v = small_nam();
    v["architecture"] = Value::from("Transformer");
    assert!(err_of(&v).contains("unsupported architecture \"Transformer\""));

    let mut v = small_nam();
    v["weights"].as_array_mut().unwrap().pop();
    let e = err_of(&v);
    assert!(
        e.contains("wrong number of weights") && e.starts_with("x.nam"),
        "{e}"
    );

    let mut v = small_nam();
    v["weights"][3] = Value::from("0.5");
    assert!(err_of(&v).contains("weights[3] must be a number"));

    let mut v = small_nam();
    v["config"]["layers"][0]["dilations"] = serde_json::json!([1, 1000000000, 4]);
    assert!(err_of(&v).contains("dilations[1]"), "{}", err_of(&v));

    let mut v = small_nam();
    v["config"]["layers"][0]["channels"] = Value::from(1u64 << 40);
    assert!(err_of(&v).contains("channels"));

    let mut v = small_nam();
    v["config"]["layers"][0]["activation"] = Value::from("Swoosh");
    assert!(err_of(&v).contains("unsupported activation \"Swoosh\""));

    let mut v = small_nam();
    v["config"]["layers"][0]["gating_mode"] = Value::from("blended");
    assert!(
        err_of(&v).contains("gating_mode disagrees with gated"),
        "{}",
        err_of(&v)
    );

    let mut v = small_nam();
    v["config"]["layers"][0]["conv_pre_film"] = serde_json::json!({"active": true, "shift": true});
    // A FiLM slot switched on has weights the file does not hold.
    assert!(
        err_of(&v).contains("wrong number of weights"),
        "{}",
        err_of(&v)
    );

    // 0.6/0.7 settings with their 0.5 meaning load.
    let mut v = small_nam();
    v["version"] = Value::from("0.7.0");
    let l = &mut v["config"]["layers"][0];
    l["gating_mode"] = Value::from("gated");
    l["bottleneck"] = Value::from(3);
    l["head1x1"] = serde_json::json!({"active": false, "out_channels": 3, "groups": 1});
    l["conv_pre_film"] = Value::Null;
    assert!(load_value(&v).is_ok());

    let text = small_nam()
        .to_string()
        .replace("\"weights\":[", "\"weights\":[NaN,");
    let e = load_model_from_bytes(text.as_bytes(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("NaN"), "{e}");

    let mut g = parse_file(&data(
        "reference/guitarml_gru7x1_skip_bias/guitarml_gru7x1_skip_bias.json",
    ));
    g["model_data"]["hidden_size"] = Value::from(1_000_000_000u64);
    assert!(err_of(&g).contains("hidden_size"));
    let mut g = parse_file(&data(
        "reference/guitarml_gru7x1_skip_bias/guitarml_gru7x1_skip_bias.json",
    ));
    g["state_dict"]["rec.weight_hh_l0"][2] = serde_json::json!([1.0]);
    assert!(err_of(&g).contains("rec.weight_hh_l0"), "{}", err_of(&g));
    let mut g = parse_file(&data(
        "reference/guitarml_gru7x1_skip_bias/guitarml_gru7x1_skip_bias.json",
    ));
    g["model_data"]["unit_type"] = Value::from("RNN");
    assert!(err_of(&g).contains("unsupported unit_type"));
}

#[test]
fn non_finite_weights_are_rejected_on_save() {
    let mut m = load_model(&data("reference/nam_linear_bias/nam_linear_bias.nam")).unwrap();
    let mut p = m.network.params();
    p[4] = f64::NAN;
    m.network.set_params(&p).unwrap();
    let e = to_document(&m, None).unwrap_err().to_string();
    assert!(e.contains("weight 4"), "{e}");
}

/// Replaces the `n`-th JSON value (in document order) with `new`.
fn replace_nth(v: &mut Value, n: &mut usize, new: &Value) -> bool {
    if *n == 0 {
        *v = new.clone();
        return true;
    }
    *n -= 1;
    match v {
        Value::Array(a) => a.iter_mut().any(|x| replace_nth(x, n, new)),
        Value::Object(o) => o.values_mut().any(|x| replace_nth(x, n, new)),
        _ => false,
    }
}

fn value_strategy() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        Just(Value::from(0)),
        Just(Value::from(-1)),
        "[a-zA-Z]{0,8}".prop_map(Value::from),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(serde_json::json!([1e300, -1e300])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn truncated_files_give_errors(cut in 0usize..4000, which in 0usize..8) {
        let files = [
            data("nam07/gating_bottleneck_head1x1/gating_bottleneck_head1x1.nam"),
            data("nam07/film_all_slots/film_all_slots.nam"),
            data("nam07/groups_no_layer1x1_post_head/groups_no_layer1x1_post_head.nam"),
            data("reference/wavenet_two_arrays_k2_k5/wavenet_two_arrays_k2_k5.nam"),
            data("reference/guitarml_lstm5x2_skip_bias/guitarml_lstm5x2_skip_bias.json"),
            data("reference/nam_lstm_2x6/nam_lstm_2x6.nam"),
            data("guitarml_family/aidax_gru5x2_skip_knobs0/aidax_gru5x2_skip_knobs0.json"),
            data("guitarml_family/guitarml_gru4x1_knobs2/guitarml_gru4x1_knobs2.json"),
        ];
        let bytes = std::fs::read(&files[which]).unwrap();
        let cut = cut * bytes.len() / 4000;
        prop_assert!(load_model_from_bytes(&bytes[..cut], None).is_err());
    }

    #[test]
    fn mutated_values_never_panic(at in 0usize..3000, new in value_strategy(), which in 0usize..8) {
        // The 0.7 files first: their settings come before the weights.
        let files = [
            data("nam07/gating_bottleneck_head1x1/gating_bottleneck_head1x1.nam"),
            data("nam07/film_all_slots/film_all_slots.nam"),
            data("nam07/groups_no_layer1x1_post_head/groups_no_layer1x1_post_head.nam"),
            data("reference/wavenet_post_head/wavenet_post_head.nam"),
            data("reference/guitarml_gru3x3_noskip_nobias/guitarml_gru3x3_noskip_nobias.json"),
            data("reference/nam_lstm_2x6/nam_lstm_2x6.nam"),
            data("guitarml_family/aidax_lstm8x1_noskip_knobs1_gains/aidax_lstm8x1_noskip_knobs1_gains.json"),
            data("guitarml_family/guitarml_lstm6x1_knobs1/guitarml_lstm6x1_knobs1.json"),
        ];
        let mut v = parse_file(&files[which]);
        let mut n = at;
        replace_nth(&mut v, &mut n, &new);
        // Either a clear error or a model that runs.
        if let Ok(m) = load_value(&v) {
            let y = m.process::<f64>(&[0.1, -0.2, 0.3]);
            prop_assert_eq!(y.len(), 3);
        }
    }
}

/// Streaming: consecutive blocks of any size give exactly the one-call result.
#[test]
fn streaming_matches_one_call() {
    let x: Vec<f64> = (0..1500).map(|i| (i as f64 * 0.031).sin() * 0.7).collect();
    for path in all_model_files() {
        let m = load_model(&path).unwrap();
        let whole = m.process::<f64>(&x);
        let mut p = m.network.processor::<f64>();
        let mut out = vec![0.0; x.len()];
        let mut at = 0;
        for (k, n) in [1usize, 7, 300, 13, 256, 999].iter().cycle().enumerate() {
            if at >= x.len() || k > 100 {
                break;
            }
            let e = (at + n).min(x.len());
            p.process(&x[at..e], &mut out[at..e]);
            at = e;
        }
        assert_eq!(out, whole, "{}", path.display());
        p.reset();
        let mut again = vec![0.0; x.len()];
        p.process(&x, &mut again);
        assert_eq!(again, whole, "reset: {}", path.display());
    }
}

/// A GuitarML file missing its head is reported as missing `lin.weight` (before: "state_dict
/// has an unexpected tensor \"\"").
#[test]
fn a_missing_head_is_named() {
    let path = data("reference/guitarml_lstm4x1_noskip_nobias/guitarml_lstm4x1_noskip_nobias.json");
    let mut doc = parse_file(&path);
    doc["state_dict"]
        .as_object_mut()
        .unwrap()
        .remove("lin.weight");
    let bytes = serde_json::to_vec(&doc).unwrap();
    let err = load_model_from_bytes(&bytes, Some(&path))
        .unwrap_err()
        .to_string();
    assert!(err.contains("lin.weight"), "{err}");
    assert!(!err.contains("\"\""), "{err}");
}
