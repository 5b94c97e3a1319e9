#!/usr/bin/env python3
"""Generates the AIDA-X (RTNeural JSON) and knob-conditioned GuitarML reference cases under
tests/data/guitarml_family/.

Each case is a model file with random weights, `input.f64` and `output.f64` (raw little-endian
float64, mono), the output computed in float64 by PyTorch (`torch.nn.LSTM`/`GRU` +
`torch.nn.Linear`) from a zero state, with the weights rounded to float32 as the files store
them. Conditioned models get their knob values as constant extra input channels after the
audio sample (Proteus / NeuralPi / AIDA-X: `[x, param1, param2]`); `manifest.json` lists them.

AIDA-X files are written as the AIDA-X trainer exports them (Automated-GuitarAmpModelling
`modelToKeras.py` + RTNeural `save_model_json`):
- `lstm`: weights `[W_ih^T (in x 4H), W_hh^T (H x 4H), b_ih + b_hh (4H)]`, Keras gate order
  i, f, c, o (= PyTorch's);
- `gru`: weights `[W_ih^T (in x 3H), W_hh^T (H x 3H), [b_ih, b_hh] (2 x 3H)]` with the gate
  blocks reordered from PyTorch's (r, z, n) to Keras' (z, r, n);
- `dense`: `[lin.weight^T (H x 1), lin.bias (1)]`;
- `in_shape` `[null, null, inputs]`, `in_skip` when the input is added to the output,
  `in_gain`/`out_gain` in dB (the plugin applies `10^(dB/20)` before / after the network),
  `input_batch`/`output_batch`: 2048 samples of the bare network (skip included, gains and
  knobs excluded: the trainer's test vectors use all knobs at 0), rounded to float32 as the
  trainer writes them, and `metadata.samplerate` as a string, as the published files have it.
`output.f64` is the whole chain the plugin runs: `G_out (net(G_in x) + skip G_in x)`.

Usage: python tools/gen_guitarml_family.py [OUTPUT_DIR]   (default: tests/data/guitarml_family)
Needs: torch, numpy.
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

SAMPLES = 2000
VECTOR = 2048
SAMPLE_RATE = 48000


def test_input(seed: int, n: int = SAMPLES) -> np.ndarray:
    """Silence, then a loud chirp with noise (drives the activations into saturation)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    x = 0.9 * np.sin(2 * np.pi * (50 * t + 4000 * t**2)) + 0.1 * rng.standard_normal(n)
    x[:150] = 0.0
    return x.astype(np.float32).astype(np.float64)


def f32(v):
    return np.asarray(v, dtype=np.float32).astype(np.float64)


def make_net(unit, inputs, hidden, layers, bias_fl, seed):
    torch.manual_seed(seed)
    rec = getattr(torch.nn, unit)(inputs, hidden, layers, batch_first=True)
    lin = torch.nn.Linear(hidden, 1, bias=bias_fl)
    with torch.no_grad():
        # Round to float32 (what the files hold), then compute in float64. Larger than the
        # default init so that the gates leave their linear range; the knob columns larger
        # still, so that the knobs change the sound.
        for p in list(rec.parameters()) + list(lin.parameters()):
            p.mul_(1.5)
        rec.weight_ih_l0[:, 1:] *= 2.0
        for p in list(rec.parameters()) + list(lin.parameters()):
            p.copy_(p.float())
    return rec.double(), lin.double()


def run(rec, lin, x, knobs, skip):
    """Bare network (skip included) on audio `x` with constant knob inputs."""
    xs = np.concatenate([x[:, None], np.tile(np.asarray(knobs, dtype=np.float64), (len(x), 1))], axis=1)
    with torch.no_grad():
        xt = torch.from_numpy(xs)[None]
        h, _ = rec(xt)
        y = lin(h)[0, :, 0]
        if skip:
            y = y + xt[0, :, 0]
    return y.numpy()


def write_case(root, cases, name, model_file, doc, x, y, knobs, fmt, note):
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / model_file).write_text(json.dumps(doc))
    np.asarray(x, dtype="<f8").tofile(d / "input.f64")
    np.asarray(y, dtype="<f8").tofile(d / "output.f64")
    cases.append({"case": name, "model": model_file, "format": fmt, "knobs": list(knobs),
                  "samples": len(x), "note": note})


def guitarml_case(root, cases, name, unit, inputs, hidden, layers, skip, knobs, seed):
    rec, lin = make_net(unit, inputs, hidden, layers, True, seed)
    sd = {f"rec.{k}": v for k, v in rec.state_dict().items()}
    sd.update({f"lin.{k}": v for k, v in lin.state_dict().items()})
    doc = {
        "model_data": {"model": "SimpleRNN", "input_size": inputs, "skip": int(skip),
                       "output_size": 1, "unit_type": unit, "num_layers": layers,
                       "hidden_size": hidden, "bias_fl": True},
        "state_dict": {k: v.float().tolist() for k, v in sd.items()},
    }
    x = test_input(seed)
    y = run(rec, lin, x, knobs, skip)
    write_case(root, cases, name, name + ".json", doc, x, y, knobs, "GuitarML",
               f"GuitarML {unit}, {inputs - 1} knob(s)")


def keras_gru_order(m, h):
    """PyTorch gate blocks (r, z, n) along the last axis -> Keras (z, r, n)."""
    return np.concatenate([m[..., h:2 * h], m[..., 0:h], m[..., 2 * h:]], axis=-1)


def rtneural_layers(unit, rec, lin, layers, hidden):
    out = []
    for li in range(layers):
        w_ih = getattr(rec, f"weight_ih_l{li}").detach().numpy()
        w_hh = getattr(rec, f"weight_hh_l{li}").detach().numpy()
        b_ih = getattr(rec, f"bias_ih_l{li}").detach().numpy()
        b_hh = getattr(rec, f"bias_hh_l{li}").detach().numpy()
        if unit == "LSTM":
            # The exporter sums the biases in float32.
            weights = [w_ih.T, w_hh.T, (b_ih.astype(np.float32) + b_hh.astype(np.float32))]
        else:
            weights = [keras_gru_order(w_ih.T, hidden), keras_gru_order(w_hh.T, hidden),
                       keras_gru_order(np.stack([b_ih, b_hh]), hidden)]
        out.append({"type": unit.lower(), "activation": "", "shape": [None, None, hidden],
                    "weights": [np.asarray(w, dtype=np.float32).tolist() for w in weights]})
    out.append({"type": "dense", "activation": "", "shape": [None, None, 1],
                "weights": [lin.weight.detach().numpy().T.astype(np.float32).tolist(),
                            lin.bias.detach().numpy().astype(np.float32).tolist()]})
    return out


def aidax_case(root, cases, name, unit, inputs, hidden, layers, skip, in_gain, out_gain, knobs, seed):
    rec, lin = make_net(unit, inputs, hidden, layers, True, seed)
    if unit == "LSTM":
        # The file holds one float32 bias per gate (b_ih + b_hh rounded): the reference uses it.
        with torch.no_grad():
            for li in range(layers):
                bi = getattr(rec, f"bias_ih_l{li}")
                bh = getattr(rec, f"bias_hh_l{li}")
                bi.copy_((bi.float() + bh.float()).double())
                bh.zero_()
    doc = {"in_shape": [None, None, inputs]}
    if skip:
        doc["in_skip"] = 1
    if in_gain is not None:
        doc["in_gain"] = in_gain
    if out_gain is not None:
        doc["out_gain"] = out_gain
    doc["layers"] = rtneural_layers(unit, rec, lin, layers, hidden)
    vin = test_input(seed + 500, VECTOR)
    vout = run(rec, lin, vin, [0.0] * (inputs - 1), skip)
    doc["input_batch"] = f32(vin).tolist()
    doc["output_batch"] = f32(vout).tolist()
    doc["metadata"] = {"name": name, "samplerate": str(SAMPLE_RATE), "author": "dealias tests"}
    g_in = 10 ** ((in_gain or 0.0) / 20)
    g_out = 10 ** ((out_gain or 0.0) / 20)
    x = test_input(seed)
    y = g_out * run(rec, lin, g_in * x, knobs, skip)
    write_case(root, cases, name, name + ".json", doc, x, y, knobs, "AIDA-X",
               f"AIDA-X {unit}, {inputs - 1} knob(s)")


def main():
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "tests/data/guitarml_family"
    root.mkdir(parents=True, exist_ok=True)
    cases = []
    seed = 100
    for unit, inputs, hidden, layers, skip, knobs in [
        ("LSTM", 2, 6, 1, True, [0.7]),
        ("LSTM", 3, 5, 2, False, [0.25, 0.9]),
        ("GRU", 2, 7, 1, True, [0.4]),
        ("GRU", 3, 4, 1, False, [1.0, 0.1]),
    ]:
        name = f"guitarml_{unit.lower()}{hidden}x{layers}_knobs{inputs - 1}"
        guitarml_case(root, cases, name, unit, inputs, hidden, layers, skip, knobs, seed)
        seed += 1
    for unit, inputs, hidden, layers, skip, in_gain, out_gain, knobs in [
        ("LSTM", 1, 12, 1, False, None, None, []),
        ("GRU", 1, 8, 1, False, -6.5, 4.0, []),
        ("LSTM", 1, 6, 1, True, None, None, []),
        ("GRU", 1, 5, 2, True, None, None, []),
        ("LSTM", 2, 8, 1, False, 3.0, -2.0, [0.6]),
        ("GRU", 3, 6, 1, True, None, None, [0.3, 0.8]),
    ]:
        name = f"aidax_{unit.lower()}{hidden}x{layers}_{'skip' if skip else 'noskip'}_knobs{inputs - 1}"
        if in_gain is not None:
            name += "_gains"
        aidax_case(root, cases, name, unit, inputs, hidden, layers, skip, in_gain, out_gain, knobs, seed)
        seed += 1
    (root / "manifest.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"{len(cases)} cases in {root}")


if __name__ == "__main__":
    main()
