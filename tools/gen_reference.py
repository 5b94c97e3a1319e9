#!/usr/bin/env python3
"""Generates the small reference cases under tests/data/reference/.

Each case is a model file with random weights, `input.f64` and `output.f64` (raw
little-endian float64, mono), the output computed in float64 by the official implementation:

- `.nam` files: `neural-amp-modeler` 0.12.x (`nam.models._from_nam.init_from_nam`, `.double()`,
  default forward, which pads the start with receptive_field - 1 zeros). The WaveNet with a
  post-head is run on the exporting model itself, because 0.12's importer does not implement
  post-head weights (`_WaveNet.import_weights` raises for them).
- GuitarML JSON: `torch.nn.LSTM`/`GRU` + `torch.nn.Linear` (+ the input when `skip`), float64,
  from a zero state, with the weights rounded to float32 as the JSON stores them.

Usage: python tools/gen_reference.py [OUTPUT_DIR]   (default: tests/data/reference)
Needs: torch, numpy and neural-amp-modeler==0.12.3 (0.13 no longer loads 0.5.x files).
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from nam.models._from_nam import init_from_nam
from nam.models.linear import Linear as NamLinear
from nam.models.recurrent import LSTM as NamLSTM
from nam.models.wavenet import WaveNet as NamWaveNet

SAMPLES = 2000
SAMPLE_RATE = 48000


def test_input(seed: int) -> np.ndarray:
    """Silence, then a loud chirp with noise (drives the activations into saturation)."""
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLES) / SAMPLE_RATE
    x = 0.9 * np.sin(2 * np.pi * (50 * t + 4000 * t**2)) + 0.1 * rng.standard_normal(SAMPLES)
    x[:150] = 0.0
    return x.astype(np.float32).astype(np.float64)


def write_case(root: Path, name: str, model_file: str, text: str, x, y, note: str, cases):
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / model_file).write_text(text)
    np.asarray(x, dtype="<f8").tofile(d / "input.f64")
    np.asarray(y, dtype="<f8").tofile(d / "output.f64")
    cases.append({"case": name, "model": model_file, "samples": len(x), "note": note})


def nam_case(root, cases, name, model, note, seed, run_exporter=False):
    d = model._get_export_dict()
    d["sample_rate"] = SAMPLE_RATE
    d["metadata"] = {"name": name}
    text = json.dumps(d)
    x = test_input(seed)
    with torch.no_grad():
        if run_exporter:
            m = model.double().eval()
        else:
            m = init_from_nam(json.loads(text)).double().eval()
        y = m(torch.from_numpy(x)).numpy()
    write_case(root, name, name + ".nam", text, x, y, note, cases)


def wavenet(layers, head=None, head_scale=0.37, seed=0):
    torch.manual_seed(seed)
    m = NamWaveNet(layers, head_config=head, head_scale=head_scale, sample_rate=SAMPLE_RATE)
    # Larger random weights than the default init, so that every activation leaves its
    # linear region.
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1.5)
    return m


def layer(input_size, channels, head_size, kernel, dilations, activation, gated, head_bias=True):
    return {
        "input_size": input_size,
        "condition_size": 1,
        "head_size": head_size,
        "channels": channels,
        "kernel_size": kernel,
        "dilations": dilations,
        "activation": activation,
        "gated": gated,
        "head_bias": head_bias,
    }


def guitarml_case(root, cases, name, unit, hidden, layers, skip, bias_fl, seed):
    torch.manual_seed(seed)
    rec = getattr(torch.nn, unit)(1, hidden, layers, batch_first=True)
    lin = torch.nn.Linear(hidden, 1, bias=bias_fl)
    sd = {f"rec.{k}": v for k, v in rec.state_dict().items()}
    sd.update({f"lin.{k}": v for k, v in lin.state_dict().items()})
    doc = {
        "model_data": {
            "model": "SimpleRNN",
            "input_size": 1,
            "skip": int(skip),
            "output_size": 1,
            "unit_type": unit,
            "num_layers": layers,
            "hidden_size": hidden,
            "bias_fl": bias_fl,
        },
        "state_dict": {k: v.float().tolist() for k, v in sd.items()},
    }
    text = json.dumps(doc)
    x = test_input(seed)
    with torch.no_grad():
        rec, lin = rec.double(), lin.double()
        xt = torch.from_numpy(x)[None, :, None]
        h, _ = rec(xt)
        y = lin(h)[0, :, 0]
        if skip:
            y = y + xt[0, :, 0]
    write_case(root, name, name + ".json", text, x, y.numpy(), f"GuitarML {unit}", cases)


def main():
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent.parent / "tests/data/reference"
    root.mkdir(parents=True, exist_ok=True)
    cases = []
    seed = 1
    # WaveNet: every activation, gated and not, kernel sizes, dilations, head bias, arrays.
    for act in ["Tanh", "ReLU", "Sigmoid", "Hardtanh", "LeakyReLU", "SiLU", "Hardswish", "Softsign"]:
        for gated in (False, True):
            name = f"wavenet_{act.lower()}_{'gated' if gated else 'plain'}"
            m = wavenet([layer(1, 3, 1, 3, [1, 2, 4], act, gated)], seed=seed)
            nam_case(root, cases, name, m, f"NAM WaveNet, {act}, gated={gated}", seed)
            seed += 1
    m = wavenet(
        [
            layer(1, 4, 3, 2, [1, 3, 9], "Tanh", True, head_bias=False),
            layer(4, 3, 1, 5, [2, 7], "ReLU", False, head_bias=True),
        ],
        seed=seed,
    )
    nam_case(root, cases, "wavenet_two_arrays_k2_k5", m, "two arrays, kernels 2 and 5", seed)
    seed += 1
    m = wavenet([layer(1, 5, 1, 4, [1, 1, 3], "Tanh", False, head_bias=False)], seed=seed)
    nam_case(root, cases, "wavenet_k4_nohead_bias", m, "kernel 4, repeated dilation, no head bias", seed)
    seed += 1
    m = wavenet(
        [layer(1, 4, 3, 3, [1, 2], "Tanh", False)],
        head={"in_channels": 3, "channels": 4, "activation": "ReLU", "num_layers": 2, "out_channels": 1},
        seed=seed,
    )
    nam_case(root, cases, "wavenet_post_head", m, "post-head (run on the exporting model)", seed, run_exporter=True)
    seed += 1
    # NAM LSTM with learned initial states.
    for layers_, hidden in ((1, 5), (2, 6)):
        torch.manual_seed(seed)
        m = NamLSTM(hidden, num_layers=layers_, sample_rate=SAMPLE_RATE)
        with torch.no_grad():
            m._initial_hidden.normal_(0, 0.3)
            m._initial_cell.normal_(0, 0.3)
        m._get_initial_state = lambda inputs=None, m=m: (m._initial_hidden, m._initial_cell)
        nam_case(root, cases, f"nam_lstm_{layers_}x{hidden}", m, f"NAM LSTM {layers_} layers", seed)
        seed += 1
    # NAM Linear.
    for bias in (False, True):
        torch.manual_seed(seed)
        m = NamLinear(17, bias=bias, sample_rate=SAMPLE_RATE)
        nam_case(root, cases, f"nam_linear_{'bias' if bias else 'nobias'}", m, "NAM Linear", seed)
        seed += 1
    # GuitarML.
    for unit, hidden, layers_, skip, bias_fl in [
        ("LSTM", 5, 2, True, True),
        ("LSTM", 4, 1, False, False),
        ("GRU", 7, 1, True, True),
        ("GRU", 3, 3, False, False),
    ]:
        name = f"guitarml_{unit.lower()}{hidden}x{layers_}_{'skip' if skip else 'noskip'}_{'bias' if bias_fl else 'nobias'}"
        guitarml_case(root, cases, name, unit, hidden, layers_, skip, bias_fl, seed)
        seed += 1
    (root / "manifest.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"{len(cases)} cases in {root}")


if __name__ == "__main__":
    main()
