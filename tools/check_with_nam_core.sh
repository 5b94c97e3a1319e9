#!/usr/bin/env bash
# Checks .nam files with NeuralAmpModelerCore itself (the NAM plugin's engine): builds
# tools/nam_core_check/main.cpp against a NeuralAmpModelerCore source tree and Eigen, then for
# every file runs NAM Core and `dealias process` over the same test signal (a loud chirp with
# noise, 16-bit, 2 s at the file's rate) and prints the largest difference relative to the
# output's peak. For a student written by dealias this shows that the plugin's engine loads
# the file and plays what dealias computed. Containers run their default (last) submodel in
# both. Convolutional models run after NAM Core's prewarm (silence through the receptive
# field: the zero history dealias starts from), recurrent ones from the file's own state.
# Fails when NAM Core refuses a file or differs by more than 1e-4 of the peak (NAM Core
# computes in float32: expect 1e-6 to 1e-5).
#
# usage: tools/check_with_nam_core.sh NAMCORE_DIR EIGEN_DIR MODEL.nam...
#   NAMCORE_DIR: a copy of https://github.com/sdatkinson/NeuralAmpModelerCore (its NAM/ and
#   Dependencies/nlohmann/ folders are enough); EIGEN_DIR: an Eigen source tree (the folder
#   holding Eigen/ and unsupported/; NAM Core's Dependencies/eigen submodule is one). Needs
#   g++ with C++20 and python3.
set -euo pipefail
core="$1"
eigen="$2"
shift 2
root="$(cd "$(dirname "$0")/.." && pwd)"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
dealias="$root/target/release/dealias"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "building NAM Core's engine (a minute or two)..." >&2
g++ -O2 -std=c++20 -DNDEBUG -I"$core" -I"$core/NAM" -I"$core/Dependencies/nlohmann" -I"$eigen" \
    -o "$work/nam_core_check" "$root/tools/nam_core_check/main.cpp" "$core"/NAM/*.cpp \
    "$core"/NAM/wavenet/*.cpp
cat > "$work/signal.py" <<'PY'
import math, random, struct, sys, wave
rate, wav_path, raw_path = int(float(sys.argv[1])), sys.argv[2], sys.argv[3]
random.seed(1)
n = 2 * rate
x = []
for i in range(n):
    t = i / rate
    v = 0.9 * math.sin(2 * math.pi * (50 * t + 0.2 * rate * t * t / 2)) + 0.05 * random.gauss(0, 1)
    x.append(max(-32767, min(32767, round(v * 32767 * 0.95))))
with wave.open(wav_path, "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate)
    w.writeframes(struct.pack("<%dh" % n, *x))
with open(raw_path, "wb") as f:
    f.write(struct.pack("<%dd" % n, *[v / 32768 for v in x]))
PY
cat > "$work/compare.py" <<'PY'
import struct, sys
core = open(sys.argv[1], "rb").read()
core = struct.unpack("<%dd" % (len(core) // 8), core)
b = open(sys.argv[2], "rb").read()
i = b.find(b"data")
n = struct.unpack("<I", b[i + 4:i + 8])[0] // 4
ours = struct.unpack("<%df" % n, b[i + 8:i + 8 + 4 * n])
peak = max(abs(v) for v in core) or 1.0
err = max(abs(a - c) for a, c in zip(ours, core)) / peak
print("%.2e of peak (%d samples)" % (err, n))
sys.exit(0 if err < 1e-4 and len(core) == n else 1)
PY
status=0
for m in "$@"; do
    printf '%s: ' "$m"
    if ! "$dealias" inspect --json "$m" > "$work/inspect.json" 2> "$work/err"; then
        echo "dealias refused it: $(cat "$work/err")"
        status=1
        continue
    fi
    read -r rate warm < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
subs = d.get("submodels") or [{}]
kind = subs[-1].get("architecture") or d["architecture"]
print(d["sample_rate"] or 48000, "noprewarm" if kind in ("LSTM", "GRU") else "prewarm")' "$work/inspect.json")
    python3 "$work/signal.py" "$rate" "$work/in.wav" "$work/in.f64"
    if ! "$work/nam_core_check" "$m" "$work/in.f64" "$work/core.f64" "$warm" 2> "$work/err"; then
        cat "$work/err"
        status=1
        continue
    fi
    "$dealias" process "$m" "$work/in.wav" "$work/ours.wav" 2> /dev/null
    python3 "$work/compare.py" "$work/core.f64" "$work/ours.wav" || status=1
done
exit $status
