#!/usr/bin/env python3
"""Generate the SciPy reference values that the Rust tests compare against.

Writes tests/data/chebwin_reference.json and tests/data/fir_reference.json.
Run from the repository root with Python 3 + numpy + scipy:
    python3 tools/gen_dsp_reference.py
"""
import json
import math

import numpy as np
import scipy
from scipy.signal import firwin
from scipy.signal.windows import chebwin


def cheb_cases():
    cases = []
    for n, at, sym in [(64, 120, False), (65, 120, False), (64, 120, True), (65, 100, True),
                       (333, 80, False), (1000, 120, False)]:
        w = chebwin(n, at, sym=sym)
        cases.append({"n": n, "at": at, "sym": sym, "stride": 1, "values": w.tolist(),
                      "sum": float(np.sum(w))})
    # A TBPTT-frame-sized window, every 10th sample.
    w = chebwin(4410, 120, sym=False)
    cases.append({"n": 4410, "at": 120, "sym": False, "stride": 10, "values": w[::10].tolist(),
                  "sum": float(np.sum(w))})
    # The analysis window at 44.1 kHz: every 441st sample plus exact sums.
    n = 44100
    w = chebwin(n, 120, sym=False)
    cases.append({"n": n, "at": 120, "sym": False, "stride": 441, "values": w[::441].tolist(),
                  "sum": float(np.sum(w))})
    return cases


def fir_cases():
    cases = []
    for fs in [44100, 48000, 88200, 96000, 22050 * 3]:
        a_s = 80.0
        df = 4000.0 / fs
        m = math.ceil((a_s - 7.95) / (14.36 * df))
        if m % 2:
            m += 1
        beta = 0.1102 * (a_s - 8.7)
        h = firwin(m + 1, 14000, fs=fs, window=("kaiser", beta))
        cases.append({"fs": fs, "taps": h.tolist()})
    return cases


if __name__ == "__main__":
    meta = {"generator": "tools/gen_dsp_reference.py", "scipy": scipy.__version__}
    with open("tests/data/chebwin_reference.json", "w") as f:
        json.dump({"meta": meta, "cases": cheb_cases()}, f, indent=0)
    with open("tests/data/fir_reference.json", "w") as f:
        json.dump({"meta": meta, "cases": fir_cases()}, f, indent=0)
