#!/usr/bin/env python3
"""Generates the 0.6/0.7 NAM WaveNet reference cases under tests/data/nam07/.

Each case is a small synthetic model built with the official trainer package
(neural-amp-modeler 0.13), exported with its own exporter (`.nam`), then loaded back with
`nam.models._from_nam.init_from_nam` and run in float64 (`.double()`, default forward, which
pads the start with receptive_field - 1 zeros) on a short test signal: `input.f64` and
`output.f64` (raw little-endian float64, mono). The cases together cover every layer-array
setting the 0.13 exporter writes: per-layer kernel sizes, irregular dilations, activations as
objects with parameters, gating modes none/gated/blended with secondary activations, the layer
`head` (kernel 1 and convolutional), bottleneck, layer1x1 and head1x1 with groups, grouped
input convolutions, several layer arrays, and a post-head with kernel sizes.

Usage: python tools/gen_nam07_reference.py [OUTPUT_DIR]   (default: tests/data/nam07)
Needs: neural-amp-modeler==0.13.0 (with torch and numpy).
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from nam.models._from_nam import init_from_nam
from nam.models.wavenet import PackedWaveNet, WaveNet
from nam.train._resources import __file__ as _resources_init

SAMPLES = 2000
SAMPLE_RATE = 48000


def test_input(seed: int) -> np.ndarray:
    """Silence, then a loud chirp with noise (drives the activations into saturation)."""
    rng = np.random.default_rng(seed)
    t = np.arange(SAMPLES) / SAMPLE_RATE
    x = 0.9 * np.sin(2 * np.pi * (50 * t + 4000 * t**2)) + 0.1 * rng.standard_normal(SAMPLES)
    x[:150] = 0.0
    return x.astype(np.float32).astype(np.float64)


def layer_array(
    channels,
    kernel_sizes,
    dilations,
    activation,
    head,
    input_size=1,
    bottleneck=None,
    head1x1=None,
    layer1x1=None,
    groups_input=1,
    film_params=None,
):
    """A layer array in the package's init format (`_LayerArray.parse_config`)."""
    c = {
        "input_size": input_size,
        "condition_size": 1,
        "channels": channels,
        "kernel_sizes": kernel_sizes,
        "dilations": dilations,
        "activation": activation,
        "head": head,
        "groups_input": groups_input,
    }
    if bottleneck is not None:
        c["bottleneck"] = bottleneck
    if head1x1 is not None:
        c["head_1x1_config"] = head1x1
    if layer1x1 is not None:
        c["layer_1x1_config"] = layer1x1
    if film_params is not None:
        c["film_params"] = film_params
    return c


def build(layers, head=None, head_scale=0.37, seed=0, scale=1.5):
    torch.manual_seed(seed)
    m = WaveNet.init_from_config(
        {"layers_configs": layers, "head": head, "head_scale": head_scale, "sample_rate": SAMPLE_RATE}
    )
    # Larger random weights than the default init, so that every activation leaves its
    # linear region.
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(scale)
    return m


def run_nam(text: str, x: np.ndarray) -> np.ndarray:
    """The official importer in float64 on `x` (start padded with zeros)."""
    m = init_from_nam(json.loads(text)).double().eval()
    with torch.no_grad():
        return m(torch.from_numpy(x)).numpy()


def write_case(root: Path, cases, name, model, note, seed):
    d = model._get_export_dict()
    d["sample_rate"] = SAMPLE_RATE
    d["metadata"] = {"name": name}
    text = json.dumps(d)
    x = test_input(seed)
    y = run_nam(text, x)
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.nam").write_text(text)
    np.asarray(x, dtype="<f8").tofile(out / "input.f64")
    np.asarray(y, dtype="<f8").tofile(out / "output.f64")
    cases.append({"case": name, "model": f"{name}.nam", "samples": SAMPLES, "note": note,
                  "receptive_field": model.receptive_field, "peak": float(np.abs(y).max())})


def container_case(root: Path, cases, seed=5):
    """The trainer's own packed A2 config (`nam/train/_resources/config_model_packed.json`),
    random weights, exported as a `SlimmableContainer` by `PackedWaveNet.export_container`;
    each submodel's reference output from `init_from_nam` on its `model` document."""
    packed = json.loads((Path(_resources_init).parent / "config_model_packed.json").read_text())
    config = dict(packed["net"]["config"], sample_rate=SAMPLE_RATE)
    torch.manual_seed(seed)
    m = PackedWaveNet.init_from_config(config)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(1.5)
    m.apply_mask()
    name = "a2_packed_container"
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    doc = m.export_container(out, basename=name)
    x = test_input(seed)
    np.asarray(x, dtype="<f8").tofile(out / "input.f64")
    with torch.no_grad():
        packed_y = m.double().eval()(torch.from_numpy(x)[None]).numpy()[0]
    for i, sub in enumerate(doc["config"]["submodels"]):
        y = run_nam(json.dumps(sub["model"]), x)
        # The packed model computes every submodel at once; its channel i is submodel i.
        assert np.abs(packed_y[i] - y).max() <= 1e-12 * np.abs(y).max(), i
        np.asarray(y, dtype="<f8").tofile(out / f"output_{i}.f64")
    cases.append({"case": name, "model": f"{name}.nam", "samples": SAMPLES,
                  "note": "trainer's packed A2 config exported as a SlimmableContainer; output_<i>.f64 per submodel",
                  "max_values": [s["max_value"] for s in doc["config"]["submodels"]],
                  "receptive_field": m.receptive_field})


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/nam07")
    root.mkdir(parents=True, exist_ok=True)
    cases = []
    leaky = {"name": "LeakyReLU", "negative_slope": 0.2}

    # A2-like: per-layer kernels, irregular dilations, LeakyReLU object, convolutional head.
    write_case(root, cases, "a2_like",
               build([layer_array(3, [6, 6, 15, 2, 6], [1, 3, 13, 17, 41], leaky,
                                  {"out_channels": 1, "kernel_size": 16, "bias": True})],
                     head_scale=0.02, seed=1, scale=2.0),
               "A2 layout: kernels 6/15/2, dilations 1,3,13,17,41, LeakyReLU(0.2), head k=16", 1)

    # The 0.5 setting in 0.7 spelling: uniform kernel, head kernel 1 without bias.
    write_case(root, cases, "classic_07",
               build([layer_array(4, [3] * 4, [1, 2, 4, 8], "Tanh",
                                  {"out_channels": 2, "kernel_size": 1, "bias": False}),
                      layer_array(2, [3] * 3, [1, 3, 9], {"name": "PairMultiply", "primary": "Tanh",
                                                          "secondary": "Sigmoid"},
                                  {"out_channels": 1, "kernel_size": 1, "bias": True},
                                  input_size=4)], seed=2),
               "0.5 layout written by 0.13: head kernel 1 (head_size/head_bias), gated second array", 2)

    # Gating modes per layer, secondary activations, parameterised activations, bottleneck,
    # head1x1 (active, groups) and layer1x1 groups.
    acts = [
        {"name": "PairMultiply", "primary": "Tanh", "secondary": "Sigmoid"},
        {"name": "PairBlend", "primary": "ReLU", "secondary": "Tanh"},
        {"name": "Hardtanh", "min_val": -0.5, "max_val": 0.8},
        {"name": "PairMultiply", "primary": "Sigmoid", "secondary": "Hardswish"},
        {"name": "LeakyHardtanh", "min_val": -0.7, "max_val": 0.6, "min_slope": 0.05, "max_slope": 0.2},
        {"name": "PairBlend", "primary": "SiLU", "secondary": "Sigmoid"},
    ]
    write_case(root, cases, "gating_bottleneck_head1x1",
               build([layer_array(6, [3, 2, 4, 2, 3, 2], [1, 2, 5, 11, 3, 7], acts,
                                  {"out_channels": 4, "kernel_size": 3, "bias": True},
                                  bottleneck=4,
                                  head1x1={"active": True, "out_channels": 4, "groups": 2},
                                  layer1x1={"active": True, "groups": 2}),
                      layer_array(3, [2, 5], [1, 4], "LeakyReLU",
                                  {"out_channels": 1, "kernel_size": 2, "bias": False},
                                  input_size=6, bottleneck=4)], seed=3),
               "gated/blended/none per layer, secondary Sigmoid/Tanh/Hardswish, Hardtanh(-0.5,0.8), "
               "LeakyHardtanh, LeakyReLU by name, bottleneck 4 of 6, head1x1 groups 2, layer1x1 groups 2, two arrays", 3)

    # Grouped input convolutions, layer1x1 inactive (residual adds the activation), post-head
    # with kernel sizes.
    write_case(root, cases, "groups_no_layer1x1_post_head",
               build([layer_array(4, [3, 3, 2], [1, 3, 9], ["Softsign", "Softsigmoid", "Tanh"],
                                  {"out_channels": 4, "kernel_size": 1, "bias": True},
                                  layer1x1={"active": False, "groups": 1}, groups_input=2),
                      layer_array(4, [2, 2], [1, 2], {"name": "LeakyReLU", "negative_slope": 0.05},
                                  {"out_channels": 3, "kernel_size": 2, "bias": True},
                                  input_size=4, groups_input=4)],
                     head={"channels": 3, "activation": "Tanh", "out_channels": 1, "kernel_sizes": [3, 1, 2]},
                     seed=4),
               "Softsign/Softsigmoid/Tanh, groups_input 2 and 4, layer1x1 inactive, post-head kernel sizes 3,1,2", 4)

    # FiLM: every slot, with and without shift, in each gating mode (the condition is the
    # model input, so a FiLM's groups are 1).
    def films(*inactive, no_shift=()):
        keys = ["conv_pre_film", "conv_post_film", "input_mixin_pre_film", "input_mixin_post_film",
                "activation_pre_film", "activation_post_film", "layer1x1_post_film", "head1x1_post_film"]
        return {k: {"active": True, "shift": k not in no_shift, "groups": 1}
                for k in keys if k not in inactive}
    write_case(root, cases, "film_all_slots",
               build([layer_array(4, [3, 2, 3], [1, 2, 5],
                                  ["Tanh", {"name": "PairMultiply", "primary": "Tanh", "secondary": "Sigmoid"},
                                   {"name": "PairBlend", "primary": "SiLU", "secondary": "Sigmoid"}],
                                  {"out_channels": 2, "kernel_size": 2, "bias": True},
                                  bottleneck=3,
                                  head1x1={"active": True, "out_channels": 2, "groups": 1},
                                  layer1x1={"active": True, "groups": 1},
                                  film_params=films(no_shift=("conv_post_film", "layer1x1_post_film"))),
                      layer_array(3, [2, 2], [1, 3], "Softsign",
                                  {"out_channels": 1, "kernel_size": 1, "bias": True},
                                  input_size=4, head1x1={"active": True, "out_channels": 2, "groups": 1},
                                  film_params=films("head1x1_post_film", "input_mixin_pre_film",
                                                    no_shift=("activation_post_film",)))],
                     head_scale=0.5, seed=6, scale=1.2),
               "FiLM: all eight slots (scale only at conv_post and layer1x1_post) over none/gated/blended "
               "layers with bottleneck 3 of 4 and head1x1; second array six slots, kernel-1 head", 6)

    container_case(root, cases)

    (root / "manifest.json").write_text(json.dumps(cases, indent=1) + "\n")
    for c in cases:
        print(c["case"], "receptive field", c["receptive_field"], "peak", c.get("peak"))


if __name__ == "__main__":
    main()
