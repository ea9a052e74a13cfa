#!/usr/bin/env bash
# Benchmark of `sedflow run` end to end (Parquet in -> posterior Parquet out) on a synthetic
# Gaia-archive-style catalogue with mixed filter sets (examples/make_catalogue.rs).
#
#   scripts/bench_pipeline.sh [STARS] [FILES] [SAMPLES] [extra sedflow run flags...]
#
# Defaults: 100000 stars in 1 file, 256 samples per star (the throughput figure of issue 5/6).
# Prints the run's summary: wall time, stars/s, proposal samples/s, per-stage busy time and
# the peak RSS of the sedflow process (VmHWM), and the same peak RSS from /usr/bin/time when
# that exists. Catalogues are cached under target/bench/ (rebuilt if missing).
#
# Memory check of issue 5 (peak RSS, 1e6 stars vs 1e5 stars, same settings):
#   scripts/bench_pipeline.sh 100000 1 8 && scripts/bench_pipeline.sh 1000000 1 8
set -euo pipefail
cd "$(dirname "$0")/.."
STARS=${1:-100000}
FILES=${2:-1}
SAMPLES=${3:-256}
shift $(( $# < 3 ? $# : 3 ))
cargo build --release --quiet --bin sedflow --example make_catalogue
CAT=target/bench/cat-${STARS}-${FILES}
if [ ! -e "$CAT/.done" ]; then
    rm -rf "$CAT" && mkdir -p "$CAT"
    if [ "$FILES" = 1 ]; then
        ./target/release/examples/make_catalogue --n "$STARS" --out "$CAT/catalogue.parquet"
    else
        ./target/release/examples/make_catalogue --n "$STARS" --files "$FILES" --out "$CAT"
    fi
    touch "$CAT/.done"
fi
OUT=target/bench/out-${STARS}-${FILES}-${SAMPLES}
rm -rf "$OUT"
echo "bench: $STARS stars in $FILES file(s), $SAMPLES samples/star, $(nproc) CPUs, RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-default}"
if [ -x /usr/bin/time ]; then
    /usr/bin/time -f "bench: /usr/bin/time: wall %e s, peak RSS %M KiB" \
        ./target/release/sedflow run --input "$CAT" --output "$OUT" --samples "$SAMPLES" --progress off "$@"
else
    ./target/release/sedflow run --input "$CAT" --output "$OUT" --samples "$SAMPLES" --progress off "$@"
fi
