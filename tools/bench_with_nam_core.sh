#!/usr/bin/env bash
# Times NeuralAmpModelerCore (the NAM plugin's engine) on .nam files, for the side-by-side
# comparison with `cargo bench --bench process` (whose width sweep runs the same files when
# they are named in DEALIAS_BENCH_MODELS, colon-separated). Builds tools/nam_core_check/main.cpp
# with -O3 (as a release build of the plugin; add -march=native to EXTRA_FLAGS for a build
# tuned to this CPU), runs 10 s of a guitar-like signal at 44.1 kHz through each file in blocks
# of 512 samples, single thread, best of 3, and prints samples/s and the real-time factor.
# Containers run their default (last) submodel, as in the plugin and in the bench.
#
# usage: tools/bench_with_nam_core.sh NAMCORE_DIR EIGEN_DIR MODEL.nam...
#   (see tools/check_with_nam_core.sh for the two folders)
set -euo pipefail
core="$1"
eigen="$2"
shift 2
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "building NAM Core's engine (a minute or two)..." >&2
# shellcheck disable=SC2086
g++ -O3 -std=c++20 -DNDEBUG ${EXTRA_FLAGS:-} -I"$core" -I"$core/NAM" -I"$core/Dependencies/nlohmann" \
    -I"$eigen" -o "$work/nam_core_check" "$root/tools/nam_core_check/main.cpp" "$core"/NAM/*.cpp \
    "$core"/NAM/wavenet/*.cpp
python3 - "$work/in.f64" <<'PY'
import math, struct, sys
rate, seconds = 44100, 10
x = []
for i in range(rate * seconds):
    t = i / rate
    env = math.exp(-3.0 * (t % 2.0))
    x.append(0.5 * env * (math.sin(2 * math.pi * 110 * t) + 0.5 * math.sin(2 * math.pi * 330 * t)))
open(sys.argv[1], "wb").write(struct.pack("<%dd" % len(x), *x))
PY
for m in "$@"; do
    best=""
    for _ in 1 2 3; do
        "$work/nam_core_check" "$m" "$work/in.f64" "$work/out.f64" prewarm 2> "$work/err" \
            || { cat "$work/err" >&2; exit 1; }
        s=$(sed -n 's/^processed [0-9]* samples in \([0-9.]*\) s$/\1/p' "$work/err")
        best=$(python3 -c "import sys; a=[float(v) for v in sys.argv[1:] if v]; print(min(a))" "$s" $best)
    done
    python3 -c "import sys; s=float(sys.argv[2]); print('%s: NeuralAmpModelerCore %.0f samples/s (%.1fx real time)' % (sys.argv[1], 441000 / s, 10 / s))" "$m" "$best"
done
