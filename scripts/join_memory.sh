#!/usr/bin/env bash
# Peak RSS of `sedflow run` with `[[input.join]]` (issue 23): a 1M-star primary part joined
# with three 1M-row tables (2MASS Parquet, AllWISE CSV.gz, Pan-STARRS ECSV.gz; ~5% of the
# stars missing from each, rows shuffled) against the same stars pre-joined into one wide
# table. Flow-only inference with few samples (the engine is not what is measured). The
# catalogue comes from `sedflow simulate`, the split from scripts/gaia_archive_example.py
# (needs pyarrow, scripts/requirements.txt); both are cached in WORK.
#
#   scripts/join_memory.sh                # 1M stars, 8 samples per star
#   STARS=200000 scripts/join_memory.sh   # a quicker look
set -euo pipefail
cd "$(dirname "$0")/.."
STARS=${STARS:-1000000}
SAMPLES=${SAMPLES:-8}
WORK=${WORK:-work/join-memory}
SEDFLOW=${SEDFLOW:-./target/release/sedflow}
PYTHON=${PYTHON:-python3}
mkdir -p "$WORK"
WORK=$(realpath "$WORK")
sim="$WORK/sim-$STARS.parquet"
[ -f "$sim" ] || "$SEDFLOW" simulate --stars "$STARS" --seed 7 --output "$sim"
tables="$WORK/tables-$STARS"
[ -f "$tables/wide.parquet" ] || "$PYTHON" scripts/gaia_archive_example.py --flat "$sim" "$tables"
cat >"$WORK/join.toml" <<TOML
[inference]
refine = false
[input]
rows_per_part = $STARS
[[input.join]]
path = "$tables/tmass.parquet"
left_on = "source_id"
right_on = "source_id"
[[input.join]]
path = "$tables/allwise.csv.gz"
left_on = "source_id"
right_on = "source_id"
[[input.join]]
path = "$tables/ps1.ecsv.gz"
left_on = "source_id"
right_on = "source_id"
TOML
grep -v '^\[\[input.join\]\]\|^path\|^left_on\|^right_on' "$WORK/join.toml" >"$WORK/wide.toml"

measure() { # name input config -> "peak_MiB wall_s"
    rm -rf "$WORK/out-$1"
    /usr/bin/time -f "%e %M" -o "$WORK/$1.time" "$SEDFLOW" run --input "$2" \
        --output "$WORK/out-$1" --config "$3" --samples "$SAMPLES" --progress lines \
        --summary-json "$WORK/$1.json" >"$WORK/$1.log" 2>&1
    awk '{ printf "%.1f %.1f", $2 / 1024, $1 }' "$WORK/$1.time"
}
read -r wide_mib wide_s <<<"$(measure wide "$tables/wide.parquet" "$WORK/wide.toml")"
read -r join_mib join_s <<<"$(measure join "$tables/gaia_source.parquet" "$WORK/join.toml")"
awk -v w="$wide_mib" -v j="$join_mib" -v ws="$wide_s" -v js="$join_s" -v n="$STARS" 'BEGIN {
    r = j / w
    printf "join memory: %d stars, 3 joined tables: peak RSS %.1f MiB joined vs %.1f MiB pre-joined (ratio %.2f, limit 2) %s; wall %.1f s vs %.1f s (+%.1f s)\n",
        n, j, w, r, (r <= 2 ? "OK" : "TOO HIGH"), js, ws, js - ws
    exit (r <= 2 ? 0 : 1)
}'
