#!/bin/bash
# Runs deploy/slurm/dealias-batch.sbatch on a real, single-node Slurm cluster set up on this
# machine (Debian's slurm-wlm and munge; needs root), as a check of the deploy example:
#   1. a 2-task job array fine-tunes four small test models, two per task;
#   2. a second array is cancelled (scancel: SIGTERM) while training, and resubmitted: the
#      cancelled model resumes from its checkpoint, the finished ones are skipped;
#   3. the resumed model's output is byte-identical to an uninterrupted run outside Slurm.
# Usage (from the repository root, after `cargo build --release`):
#   sudo tools/slurm_local_check.sh [WORKDIR]
set -euo pipefail
ROOT=$(pwd)
BIN="$ROOT/target/release"
WORK=${1:-$(mktemp -d)}
[ -x "$BIN/dealias" ] || { echo "build first: cargo build --release" >&2; exit 2; }

if ! command -v slurmctld >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge
fi
HOST=$(hostname -s)
CPUS=$(nproc)
mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge /etc/slurm
chown munge:munge /run/munge
[ -f /etc/munge/munge.key ] || mungekey -c
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=local
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
NodeName=$HOST CPUs=$CPUS RealMemory=4000 State=UNKNOWN
PartitionName=main Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
pgrep -x munged >/dev/null || su -s /bin/sh munge -c /usr/sbin/munged
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd
until sinfo -h -o %T | grep -q idle; do sleep 1; done

MODELS=(guitarml_gru3x3_noskip_nobias guitarml_gru7x1_skip_bias
        guitarml_lstm4x1_noskip_nobias guitarml_lstm5x2_skip_bias)
SETTINGS="--steps 400 --batch-size 4 --tones-per-epoch 8 --rate 8400 --frame-seconds 0.25 \
--pre-emphasis none --validation-stride 12 --validate-every 5 --seed 7 --checkpoint-minutes 0.05"
library() {  # library DIR: the four models and their manifest
    mkdir -p "$1"
    : > "$1/models.txt"
    for m in "${MODELS[@]}"; do
        cp "$ROOT/tests/data/reference/$m/$m.json" "$1/"
        echo "$m.json" >> "$1/models.txt"
    done
}
submit() {  # submit DIR: the example script as a 2-task array, one core per task
    (cd "$1" && sbatch --parsable --array=0-1 --cpus-per-task=1 --mem=1G --time=00:20:00 \
        --export=ALL,PATH="$BIN:$PATH",MINUTES=5,DEALIAS_ARGS="$SETTINGS" \
        "$ROOT/deploy/slurm/dealias-batch.sbatch")
}
wait_job() { while squeue -h -j "$1" | grep -q .; do sleep 1; done; }

library "$WORK/lib"
job=$(submit "$WORK/lib")
# Cancel (SIGTERM to every task) once some model has a checkpoint but no output yet.
mid_run() {
    for m in "${MODELS[@]}"; do
        d="$WORK/lib/dealiased/$m.json"
        [ -f "$d.checkpoint.json" ] && [ ! -f "$d" ] && return 0
    done
    return 1
}
until mid_run; do sleep 0.2; done
scancel "$job"
wait_job "$job"
job=$(submit "$WORK/lib")
wait_job "$job"
cat "$WORK/lib/dealiased/summary.csv"
grep -q "resuming from" "$WORK"/lib/dealias-batch-"$job"_*.log \
    || { echo "no task resumed: cancel came too late or too early" >&2; exit 1; }

# The same models without Slurm and without interruption.
library "$WORK/ref"
# shellcheck disable=SC2086
(cd "$WORK/ref" && "$BIN/dealias" batch models.txt --out dealiased --threads 1 --minutes 5 \
    --quiet $SETTINGS > log.txt 2>&1)
for m in "${MODELS[@]}"; do
    cmp "$WORK/lib/dealiased/$m.json" "$WORK/ref/dealiased/$m.json"
done
echo "slurm check passed: every output byte-identical to the uninterrupted run ($WORK)"
