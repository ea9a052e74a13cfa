#!/usr/bin/env bash
# Slurm array job for `sedflow run`: N tasks split the catalogue deterministically; each
# task finds its shard in SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT (no flags needed).
#
#   sbatch --array=0-15 scripts/slurm_array.sh s3://survey/gaia-dr3 s3://results/dr3-v1
#   sbatch --array=0-15 scripts/slurm_array.sh /data/gaia /scratch/$USER/posteriors
#
# Resubmitting the same command after failures or preemption only does the parts that have
# no output yet (outputs appear atomically); keep the array size and the config unchanged.
#SBATCH --job-name=sedflow
#SBATCH --cpus-per-task=2
#SBATCH --mem=2G
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --output=sedflow-%A_%a.log
set -euo pipefail
INPUT=${1:?usage: sbatch --array=0-N scripts/slurm_array.sh INPUT OUTPUT [CONFIG]}
OUTPUT=${2:?usage: sbatch --array=0-N scripts/slurm_array.sh INPUT OUTPUT [CONFIG]}
CONFIG=${3:-}
SEDFLOW=${SEDFLOW:-sedflow}   # path to the release binary
export RAYON_NUM_THREADS=${SLURM_CPUS_PER_TASK:-2}
# S3: credentials from the environment or the instance role; endpoint for non-AWS stores, e.g.
# export AWS_ENDPOINT_URL=https://s3.example.org AWS_REGION=us-east-1
exec "$SEDFLOW" run --input "$INPUT" --output "$OUTPUT" ${CONFIG:+--config "$CONFIG"} --progress lines
