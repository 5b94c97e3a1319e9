//! Model formats of the GuitarML family that dealias recognises but cannot run, so that such a
//! file is refused by name (with what it is and why) rather than as an unknown format.

use serde_json::Value;

/// If `doc` is a known but unsupported model format, the message saying which and why.
pub(crate) fn unsupported(doc: &Value) -> Option<String> {
    let o = doc.as_object()?;
    let has = |k: &str| o.contains_key(k);
    if has("residual_channels") && has("dilations") && (has("variables") || has("filter_width")) {
        return Some(
            "a SmartGuitarAmp / PedalNetRT WaveNet file (\"residual_channels\", \"dilations\", \
             \"variables\"): this WaveNet format is not supported (dealias reads NAM WaveNets, \
             GuitarML and AIDA-X LSTM/GRU models)"
                .into(),
        );
    }
    if has("conv1d") && has("lstm") && has("dense") {
        return Some(
            "a SmartAmpPro Keras model (\"conv1d\", \"lstm\", \"dense\" layer weights): its \
             strided-convolution front end is not supported (dealias reads NAM, GuitarML and \
             AIDA-X LSTM/GRU models)"
                .into(),
        );
    }
    let keras_class = o
        .get("class_name")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    let arch = o
        .get("architecture")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    if has("keras_version")
        || matches!(
            keras_class.as_deref(),
            Some("sequential" | "functional" | "model")
        )
        || arch.as_deref() == Some("sequential")
        || (has("sequential") && !has("architecture"))
    {
        return Some(
            "a Keras model (\"sequential\"): Keras layer graphs are not supported (dealias reads \
             NAM, GuitarML and AIDA-X/RTNeural LSTM/GRU models; AIDA-X's modelToKeras.py writes \
             the RTNeural JSON that dealias reads)"
                .into(),
        );
    }
    let model = o
        .get("model_data")
        .and_then(|m| m.get("model"))
        .and_then(Value::as_str);
    if model == Some("RecNet") || (has("blocks") && has("model_data")) {
        return Some(
            "a RecNet file (Automated-GuitarAmpModelling's block network, \"blocks\"): not \
             supported (dealias reads its SimpleRNN LSTM/GRU files)"
                .into(),
        );
    }
    if let Some(m) = model.filter(|m| *m != "SimpleRNN") {
        return Some(format!(
            "an Automated-GuitarAmpModelling \"{m}\" model: only \"SimpleRNN\" (LSTM/GRU + linear) \
             is supported"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_each_legacy_format() {
        let cases = [
            (
                json!({"activation": "gated", "residual_channels": 16, "filter_width": 3,
                       "dilations": [1, 2], "variables": []}),
                "PedalNetRT",
            ),
            (
                json!({"conv1d": {}, "conv1d_1": {}, "lstm": {}, "dense": {}, "input_size": 120}),
                "SmartAmpPro",
            ),
            (
                json!({"class_name": "Sequential", "config": {"layers": []}}),
                "Keras",
            ),
            (json!({"architecture": "sequential"}), "Keras"),
            (
                json!({"model_data": {"model": "RecNet", "skip": 0}, "blocks": {}}),
                "RecNet",
            ),
            (
                json!({"model_data": {"model": "ConvSimpleRNN"}, "state_dict": {}}),
                "ConvSimpleRNN",
            ),
        ];
        for (doc, name) in cases {
            let m = unsupported(&doc).unwrap_or_default();
            assert!(m.contains(name), "{doc}: {m}");
        }
        for doc in [
            json!({"model_data": {"model": "SimpleRNN"}, "state_dict": {}}),
            json!({"architecture": "WaveNet", "weights": []}),
            json!({"in_shape": [null, null, 1], "layers": []}),
        ] {
            assert_eq!(unsupported(&doc), None, "{doc}");
        }
    }
}
