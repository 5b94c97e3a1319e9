#!/usr/bin/env bash
# Convergence of fine-tuning against wall-clock minutes: the fast preset (the default) and
# the paper preset on the paper's Broadcast LSTM teacher, validated every 20 batches, then
# the figure docs/convergence_lstm.{svg,png}. Run on a quiet machine: the curves are in
# wall-clock minutes. Usage: tools/convergence.sh [MINUTES] (default 15).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-15}
model=../shared/fixtures/paper-models/broadcast_lstm_teacher.json
out=target/convergence
mkdir -p "$out" docs
cargo build --release
for preset in fast paper; do
    ./target/release/dealias finetune "$model" -o "$out/lstm_$preset.json" --preset "$preset" \
        --minutes "$minutes" --validate-every 20 --patience 0 --restart --quiet
done
cargo run --release --example convergence_figure -- --targets -18.7,-18.1 \
    docs/convergence_lstm "Broadcast LSTM-40: validation during fine-tuning" \
    "fast preset (default)=$out/lstm_fast.json.report.json" \
    "paper preset=$out/lstm_paper.json.report.json"
