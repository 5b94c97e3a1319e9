#!/usr/bin/env python3
"""Table 1 conventions of the paper, computed with the authors' own metric code.

Runs the evaluation sine set (MIDI 21..108 at -36/-18/-6 dBFS, zero phase, 1.2 s, the last
second analysed) through a GuitarML LSTM in float64 with torch, removes the aliasing with the
authors' `spectral.bandlimit_batch` and measures the NMR with their `nmr.NMR`, under each
combination of the three conventions that `dealias --convention paper` adopts:

- aggregation: 10 log10 of the mean of linear per-tone values over all 264 tones
  (`all_linear`), the mean of per-tone dB (`all_db`), and per level (`per_level`: for each
  level 10 log10 of the mean over its 88 notes, as the authors' validation aggregates one
  level at the end of an epoch; Table 1's value is the mean of the three per-level dB values);
- input noise floor: none, or white Gaussian noise of a given RMS added to every tone
  (the authors' sine tones were recorded signals; their noise floor is about -102 dBFS RMS);
- NMR level: the signals as they are (gain 1, Lp = 92 dB) or at half amplitude (gain 0.5,
  as the authors' stored renders), the NMR being level dependent.

With `--teacher`, the -T metrics (ESR-T, NMR-T, HESR-T) of the model against the teacher's
alias-free output are computed too, on the same noisy inputs.

The authors' files are imported from a checkout of their repository (never copied here):
    git clone https://github.com/a-carson/dafx25_antialiasing_neural AUTHORS
Usage:
    python tools/gen_table1_reference.py AUTHORS MODEL.json OUT.json [--teacher T.json]
        [--seeds 1 2] [--noise-dbfs -102]
Needs: torch, numpy, scipy, numba, matplotlib (imported by the authors' spectral.py).
The per-tone values of the noise-free runs (deterministic) are written for exact comparisons;
the noisy runs use numpy's generator, so only their aggregates are comparable (the spread over
seeds is written as well).
"""

import argparse
import json
import sys

import numpy as np
import torch

LEVELS = [-36.0, -18.0, -6.0]
MIDIS = list(range(21, 109))
FS = 44100


def load_guitarml(path):
    doc = json.load(open(path))
    md, sd = doc["model_data"], doc["state_dict"]
    assert md["unit_type"] == "LSTM" and md["input_size"] == 1
    rec = torch.nn.LSTM(1, md["hidden_size"], md["num_layers"], batch_first=True)
    lin = torch.nn.Linear(md["hidden_size"], 1, bias=md.get("bias_fl", True))
    rec.load_state_dict({k[4:]: torch.tensor(v) for k, v in sd.items() if k.startswith("rec.")})
    lin.load_state_dict({k[4:]: torch.tensor(v) for k, v in sd.items() if k.startswith("lin.")})
    rec, lin = rec.double().eval(), lin.double().eval()
    skip = bool(md.get("skip", 0))

    def run(x):  # x: (batch, time), zero initial state
        with torch.no_grad():
            h, _ = rec(x[:, :, None])
            y = lin(h)[:, :, 0]
            return y + x if skip else y

    return run


def tones(noise_rms, seed):
    n = int(1.2 * FS)
    t = torch.arange(n, dtype=torch.double) / FS
    xs, meta = [], []
    rng = np.random.default_rng(seed)
    for lvl in LEVELS:
        for midi in MIDIS:
            f0 = 440.0 * 2 ** ((midi - 69) / 12)
            x = 10 ** (lvl / 20) * torch.sin(2 * torch.pi * f0 * t)
            if noise_rms > 0:
                x = x + noise_rms * torch.from_numpy(rng.standard_normal(n))
            xs.append(x)
            meta.append((lvl, midi, f0))
    return torch.stack(xs), meta


def metrics(model, teacher, noise_rms, seed, bandlimit_batch, nmr, bandlimit_signal):
    x, meta = tones(noise_rms, seed)
    f0 = torch.tensor([m[2] for m in meta], dtype=torch.double)[:, None]
    out = {}
    for b0 in range(0, x.shape[0], 24):
        xb, fb = x[b0 : b0 + 24], f0[b0 : b0 + 24]
        y = model(xb)[:, -FS:]
        ybl, _ = bandlimit_batch(y, fb, FS)
        rows = {
            "esr_s": (torch.sum((y - ybl) ** 2, -1) / torch.sum(ybl**2, -1)),
            "nmr_s_gain1": nmr(y, ybl)[0],
            "nmr_s_gain05": nmr(0.5 * y, 0.5 * ybl)[0],
        }
        if teacher is not None:
            yt = teacher(xb)[:, -FS:]
            ytbl, _ = bandlimit_batch(yt, fb, FS)
            h = harmonic_magnitudes(y, fb, bandlimit_signal)
            ht = harmonic_magnitudes(yt, fb, bandlimit_signal)
            rows["esr_t"] = torch.sum((y - ytbl) ** 2, -1) / torch.sum(ytbl**2, -1)
            rows["nmr_t_gain1"] = nmr(y, ytbl)[0]
            rows["nmr_t_gain05"] = nmr(0.5 * y, 0.5 * ytbl)[0]
            rows["hesr_t"] = torch.tensor(
                [np.sum((a - b) ** 2) / np.sum(b**2) for a, b in zip(h, ht)]
            )
        for k, v in rows.items():
            out.setdefault(k, []).extend(float(u) for u in v)
        print(f"  tones {b0 + len(xb)}/{x.shape[0]}", file=sys.stderr)
    return out, meta


def harmonic_magnitudes(y, f0, bandlimit_signal):
    """|C_m|: magnitudes of the scalloping-corrected complex harmonic amplitudes (eq. 10) from
    the authors' `bandlimit_signal`, one vector per tone."""
    return [bandlimit_signal(y[i], FS, f0[i, 0])[3].abs().numpy() for i in range(y.shape[0])]


def aggregates(values, meta):
    v = np.asarray(values)
    lv = np.asarray([m[0] for m in meta])
    per = [float(10 * np.log10(v[lv == l].mean())) for l in LEVELS]
    return {
        "all_linear": float(10 * np.log10(v.mean())),
        "all_db": float(np.mean(10 * np.log10(v))),
        "per_level_levels": per,
        "per_level": float(np.mean(per)),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("authors")
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--teacher")
    ap.add_argument("--seeds", type=int, nargs="*", default=[1, 2])
    ap.add_argument("--noise-dbfs", type=float, default=-102.0)
    a = ap.parse_args()
    sys.path.insert(0, a.authors)
    from nmr import NMR  # the authors' code
    from spectral import bandlimit_batch, bandlimit_signal

    torch.set_num_threads(2)
    nmr = NMR(fs=FS)
    model = load_guitarml(a.model)
    teacher = load_guitarml(a.teacher) if a.teacher else None
    result = {
        "model": a.model.split("/")[-1],
        "teacher": a.teacher.split("/")[-1] if a.teacher else None,
        "sample_rate": FS,
        "noise_rms_dbfs": a.noise_dbfs,
        "runs": [],
    }
    settings = [("none", 0.0, None)] + [
        ("white", 10 ** (a.noise_dbfs / 20), s) for s in a.seeds
    ]
    for name, rms, seed in settings:
        print(f"noise {name} seed {seed}", file=sys.stderr)
        vals, meta = metrics(model, teacher, rms, seed, bandlimit_batch, nmr, bandlimit_signal)
        run = {"noise": name, "seed": seed, "aggregates": {}}
        for k, v in vals.items():
            run["aggregates"][k] = aggregates(v, meta)
        if rms == 0.0:
            run["tones"] = {
                "level_dbfs": [m[0] for m in meta],
                "midi": [m[1] for m in meta],
                **{k + "_db": [float(10 * np.log10(u)) if u > 0 else None for u in v]
                   for k, v in vals.items()},
            }
        result["runs"].append(run)
        # Written after every run: the authors' bandlimiting takes minutes per level.
        json.dump(result, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
