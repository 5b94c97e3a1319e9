#!/usr/bin/env python3
"""Writes the extra .nam files behind two README measurements against NeuralAmpModelerCore.

- FiLM in the plugin's engine (`tools/check_with_nam_core.sh OUT/film_*.nam`): single-array
  WaveNets (NAM Core refuses a second array whose channels differ from the previous head size),
  every FiLM slot active, built and exported by neural-amp-modeler 0.13 like the cases of
  `gen_nam07_reference.py`: `film_blended` (all layers blended), `film_mixed_no_l1post`
  (none/gated/blended, no layer1x1_post_film) and `film_mixed` (the same with it: NAM Core
  applies that slot only in blended layers).
- Small NAM LSTMs for the speed comparison (`tools/bench_with_nam_core.sh` and
  `DEALIAS_BENCH_MODELS` in `cargo bench --bench process`): `lstm_1x16`, `lstm_2x8`, uniform
  random weights in [-0.3, 0.3] (seeded), the 0.5 LSTM layout.

Usage: python tools/gen_nam_core_cases.py OUTPUT_DIR
Needs: neural-amp-modeler==0.13.0 (with torch and numpy) for the FiLM files.
"""

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_nam07_reference as g  # noqa: E402

FILM_KEYS = ["conv_pre_film", "conv_post_film", "input_mixin_pre_film", "input_mixin_post_film",
             "activation_pre_film", "activation_post_film", "layer1x1_post_film", "head1x1_post_film"]


def films(skip=()):
    return {k: {"active": True, "shift": k != "conv_post_film", "groups": 1}
            for k in FILM_KEYS if k not in skip}


def film_cases(out: Path):
    blend = {"name": "PairBlend", "primary": "Tanh", "secondary": "Sigmoid"}
    mixed = ["Tanh", {"name": "PairMultiply", "primary": "Tanh", "secondary": "Sigmoid"},
             {"name": "PairBlend", "primary": "SiLU", "secondary": "Sigmoid"}]
    for name, acts, skip in [("film_blended", [blend] * 3, ()),
                             ("film_mixed_no_l1post", mixed, ("layer1x1_post_film",)),
                             ("film_mixed", mixed, ())]:
        m = g.build([g.layer_array(4, [3, 2, 3], [1, 2, 5], acts,
                                   {"out_channels": 1, "kernel_size": 2, "bias": True},
                                   bottleneck=3, head1x1={"active": True, "out_channels": 2, "groups": 1},
                                   layer1x1={"active": True, "groups": 1}, film_params=films(skip))],
                    head_scale=0.5, seed=7, scale=1.2)
        d = m._get_export_dict()
        d["sample_rate"] = g.SAMPLE_RATE
        (out / f"{name}.nam").write_text(json.dumps(d))


def lstm_cases(out: Path):
    rng = random.Random(3)
    for hidden, layers in [(16, 1), (8, 2)]:
        w = []
        for layer in range(layers):
            inputs = 1 if layer == 0 else hidden
            # W_ih | W_hh (4H × (in + H)), bias (4H), initial hidden and cell state (H each).
            w += [rng.uniform(-0.3, 0.3) for _ in range(4 * hidden * (inputs + hidden) + 6 * hidden)]
        w += [rng.uniform(-0.3, 0.3) for _ in range(hidden + 1)]  # head weights and bias
        d = {"version": "0.5.4", "architecture": "LSTM",
             "config": {"input_size": 1, "hidden_size": hidden, "num_layers": layers},
             "weights": w, "sample_rate": 48000}
        (out / f"lstm_{layers}x{hidden}.nam").write_text(json.dumps(d))


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    lstm_cases(out)
    film_cases(out)


if __name__ == "__main__":
    main()
