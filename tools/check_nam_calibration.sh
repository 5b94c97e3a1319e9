#!/usr/bin/env bash
# Checks dealias's NAM calibration (metadata.loudness / metadata.gain, src/eval/calibration.rs)
# against the values the official trainer wrote into real .nam files: for every file below the
# given folders (default: NeuralAmpModelerCore's example_models, cloned into a temporary
# folder), the stated and the computed values side by side. Fails when a WaveNet's loudness
# differs by more than 0.1 dB.
#
# NAM LSTM files are listed but not judged: the trainer computes their loudness from the
# learned initial state, while the file stores the state after 48,000 samples of silence
# (nam/models/recurrent.py, _get_initial_state), which is what every reader of the file,
# the official package's init_from_nam included, starts from.
#
# Usage: tools/check_nam_calibration.sh [FOLDER...]   (needs git for the default, python3)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/dealias"
folders=("$@")
if [ ${#folders[@]} -eq 0 ]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    git clone --quiet --depth 1 https://github.com/sdatkinson/NeuralAmpModelerCore "$tmp/core"
    folders=("$tmp/core/example_models")
fi
judge="$(mktemp)"
cat > "$judge" <<'PY'
import json, sys
d = json.load(sys.stdin)
bad = False
for c in d.get("calibration") or []:
    sub = c["submodel"]
    name = sys.argv[1] + ("" if sub is None else " [%d]" % sub)
    sl, sg = c["stated_loudness"], c["stated_gain"]
    if sl is None:
        print("%s: states no loudness (computed %.3f dB)" % (name, c["loudness"]))
        continue
    diff = c["loudness"] - sl
    judged = c["architecture"] != "LSTM"
    print("%s: loudness %.3f stated, %.3f computed (%+.4f dB); gain %s stated, %.4f computed%s"
          % (name, sl, c["loudness"], diff, "-" if sg is None else "%.4f" % sg, c["gain"],
             "" if judged else "  (LSTM: not judged)"))
    bad |= judged and abs(diff) > 0.1
sys.exit(1 if bad else 0)
PY
status=0
while IFS= read -r -d '' f; do
    if ! json="$("$bin" inspect --json "$f" 2>&1)"; then
        echo "$(basename "$f"): not read: $json"
        continue
    fi
    python3 "$judge" "$(basename "$f")" <<< "$json" || status=1
done < <(find "${folders[@]}" -name '*.nam' -print0 | sort -z)
rm -f "$judge"
exit $status
