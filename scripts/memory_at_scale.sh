#!/usr/bin/env bash
# Peak RSS of `sedflow run` at catalogue scale (issue 15): the same flow-only run, with few
# samples per star, on SMALL stars (one file) and on COPIES files of FILE_STARS stars each
# (default 100k vs 10 x 1M = 10M stars; survey catalogues come as many files). Memory must
# stay flat: the big run's peak RSS within 1.5x of the small run's. Catalogues are made once
# by `sedflow simulate` and cached in WORK; each run's progress goes to WORK/<run>.log and
# its summary (peak RSS from the kernel's accounting) to WORK/<run>.json.
#
#   scripts/memory_at_scale.sh                  # 100k vs 10M stars, 8 samples per star
#   COPIES=2 scripts/memory_at_scale.sh         # 100k vs 2M
set -euo pipefail
cd "$(dirname "$0")/.."
SMALL=${SMALL:-100000}
FILE_STARS=${FILE_STARS:-1000000}
COPIES=${COPIES:-10}
SAMPLES=${SAMPLES:-8}
WORK=${WORK:-work/memory}
SEDFLOW=${SEDFLOW:-./target/release/sedflow}
mkdir -p "$WORK"

catalogue() { # stars -> path of a cached simulated catalogue
    local f="$WORK/sim-$1.parquet"
    if [ ! -f "$f" ]; then
        "$SEDFLOW" simulate --stars "$1" --seed 7 --output "$f.partial.parquet" >&2
        mv "$f.partial.parquet" "$f"
    fi
    echo "$f"
}

peak_mib() { # input name -> peak RSS [MiB] of `sedflow run` on it
    local out="$WORK/out-$2"
    rm -rf "$out"
    "$SEDFLOW" run --input "$1" --output "$out" --config scripts/pipeline-flow-only.toml \
        --samples "$SAMPLES" --progress lines --summary-json "$WORK/$2.json" >"$WORK/$2.log" 2>&1 &
    local pid=$!
    # peak RSS so far, every 30 s, next to the progress lines (for runs stopped early)
    while kill -0 "$pid" 2>/dev/null; do
        echo "$(date -u +%FT%TZ) $(grep VmHWM /proc/$pid/status 2>/dev/null)" >>"$WORK/$2.rss"
        sleep 30
    done
    wait "$pid"
    grep -o '"peak_rss_bytes": *[0-9]*' "$WORK/$2.json" | awk -F: '{ printf "%.1f", $2 / 1048576 }'
}

small=$(peak_mib "$(catalogue "$SMALL")" "small")
echo "small run: peak RSS $small MiB" >&2
big_in="$WORK/big-input"
rm -rf "$big_in" && mkdir -p "$big_in"
one=$(realpath "$(catalogue "$FILE_STARS")")
# hard links: distinct input names (outputs are named after them), no extra disk
for k in $(seq -w 1 "$COPIES"); do ln "$one" "$big_in/part-$k.parquet"; done
big=$(peak_mib "$big_in" "big")
grep -h 'stars/s' "$WORK/small.log" "$WORK/big.log" | sed 's/^/  /'
awk -v s="$small" -v b="$big" -v ns="$SMALL" -v nb="$((FILE_STARS * COPIES))" 'BEGIN {
    if (!(s > 0 && b > 0)) { print "memory at scale: no peak RSS in a run summary"; exit 1 }
    r = b / s
    printf "memory at scale: peak RSS %.1f MiB at %d stars, %.1f MiB at %d stars: ratio %.2f (limit 1.5) %s\n",
        s, ns, b, nb, r, (r <= 1.5 ? "OK" : "TOO HIGH")
    exit (r <= 1.5 ? 0 : 1)
}'
