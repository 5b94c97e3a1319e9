#!/usr/bin/env python3
"""Independent solution of the diode clipper ODE (src/device/diode_clipper.rs) for tests/device.rs.

Solves dv/dt = (u(t) - v) / (R C) - (2 Is / C) sinh(v / Vt), v(0) = 0, with SciPy's Radau
(implicit Runge-Kutta of order 5, its own step-size control) at rtol 1e-12, atol 1e-15, for a
test input given in closed form: two sines (3 V at 1 kHz, 1.5 V at 3.1 kHz), raised-cosine
fade-in over 2 ms, 10 ms long. The solution is written at the grid t_j = j / (16 * 48000),
j = 1..=7680, to tests/data/device_reference.json.

Run from the repository root with Python 3 + numpy + scipy:
    python3 tools/gen_device_reference.py
"""
import json
import math

import numpy as np
import scipy
from scipy.integrate import solve_ivp

R, C, IS, VT = 2.2e3, 10e-9, 2.52e-9, 45.3e-3
FS_OS = 16 * 48000
N = 7680
A1, F1 = 3.0, 1000.0
A2, F2, P2 = 1.5, 3100.0, 0.7
FADE = 2e-3


def u(t):
    w = 0.5 * (1.0 - math.cos(math.pi * t / FADE)) if t < FADE else 1.0
    return w * (A1 * math.sin(2 * math.pi * F1 * t) + A2 * math.sin(2 * math.pi * F2 * t + P2))


def rhs(t, v):
    return [(u(t) - v[0]) / (R * C) - 2.0 * IS / C * math.sinh(v[0] / VT)]


def jac(t, v):
    return [[-1.0 / (R * C) - 2.0 * IS / (C * VT) * math.cosh(v[0] / VT)]]


if __name__ == "__main__":
    t_eval = np.arange(1, N + 1) / FS_OS
    sol = solve_ivp(rhs, (0.0, t_eval[-1]), [0.0], method="Radau", t_eval=t_eval,
                    rtol=1e-12, atol=1e-15, jac=jac)
    assert sol.success, sol.message
    v = sol.y[0]
    out = {
        "meta": {"generator": "tools/gen_device_reference.py", "scipy": scipy.__version__,
                 "numpy": np.__version__, "method": "Radau", "rtol": 1e-12, "atol": 1e-15,
                 "nfev": int(sol.nfev)},
        "circuit": {"r": R, "c": C, "is": IS, "vt": VT},
        "input": {"a1": A1, "f1": F1, "a2": A2, "f2": F2, "p2": P2, "fade_s": FADE},
        "fs_os": FS_OS,
        "v": [float("%.13g" % x) for x in v],
    }
    with open("tests/data/device_reference.json", "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print("max |v| = %.4f V, nfev = %d" % (np.max(np.abs(v)), sol.nfev))
