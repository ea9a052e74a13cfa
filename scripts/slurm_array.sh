#!/usr/bin/env bash
# Slurm array job for `sedflow run`: N tasks split the catalogue deterministically; each
# task finds its shard in SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT (no flags needed).
# Submit from the repository (or set SEDFLOW to the binary): Slurm runs a spooled copy of
# this script, so the binary is found from the submit directory, not from the script's path.
#
#   sbatch --array=0-15 scripts/slurm_array.sh s3://survey/gaia-dr3 s3://results/dr3-v1
#   sbatch --array=0-15%4 scripts/slurm_array.sh /data/gaia /scratch/$USER/posteriors
#
# --array must be a range (A-B, A-B:step, with or without a %limit); a list such as 1,3,5
# is refused by every task. Resubmitting the same command after failures or preemption only
# does the parts that have no output yet (outputs appear atomically); so does resubmitting
# one task (e.g. --array=2: a one-task array, which does every part still missing). Runs
# that overlap (a task still running while its resubmission starts) are safe: the same part
# written twice gives the same bytes (schemas/output.md, "Double submission").
# A requeued task (node failure, preemption, scontrol requeue) starts again after Slurm's
# requeue delay (about 2 minutes) and resumes; its log keeps every attempt (append mode).
#SBATCH --job-name=sedflow
#SBATCH --cpus-per-task=2
#SBATCH --mem=2G
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --output=sedflow-%A_%a.log
#SBATCH --open-mode=append
set -euo pipefail
USAGE="usage: sbatch --array=0-N scripts/slurm_array.sh INPUT OUTPUT [CONFIG]"
INPUT=${1:?$USAGE}
OUTPUT=${2:?$USAGE}
CONFIG=${3:-}
# the release binary: $SEDFLOW, else the submit directory's build, else sedflow on PATH
if [ -z "${SEDFLOW:-}" ]; then
    SEDFLOW=sedflow
    if [ -x "${SLURM_SUBMIT_DIR:-.}/target/release/sedflow" ]; then
        SEDFLOW=${SLURM_SUBMIT_DIR:-.}/target/release/sedflow
    fi
fi
if ! command -v "$SEDFLOW" >/dev/null; then
    echo "slurm_array.sh: cannot run '$SEDFLOW': set SEDFLOW to the sedflow binary, or submit from the repository after cargo build --release" >&2
    exit 2
fi
export RAYON_NUM_THREADS=${SLURM_CPUS_PER_TASK:-2}
echo "slurm_array.sh: job ${SLURM_ARRAY_JOB_ID:-?} task ${SLURM_ARRAY_TASK_ID:-?}, attempt $(( ${SLURM_RESTART_COUNT:-0} + 1 )) on $(hostname)" >&2
# S3: credentials from the environment or the instance role; endpoint for non-AWS stores, e.g.
# export AWS_ENDPOINT_URL=https://s3.example.org AWS_REGION=us-east-1
exec "$SEDFLOW" run --input "$INPUT" --output "$OUTPUT" ${CONFIG:+--config "$CONFIG"} --progress lines
