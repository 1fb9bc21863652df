#!/usr/bin/env bash
# The report's time and peak memory on a big store: `tdmon report` (JSON and
# HTML) over a SQLite store filled by the store benchmark (realistic, attributed
# observations written through `apply_observations`).
#
#   bench/report.sh [URLS] [OBSERVATIONS] [OUT_DIR]
#       (defaults: 100000 500000 bench/results/report)
#
# Environment: TDMON (default target/release/tdmon). The store is written by
# `cargo bench -p tdmon-store --bench store -- --backend sqlite --keep`, at
# about 3,700 observations/s on the reference machine: the issue's full size
# (1,000,000 URLs, 5,000,000 observations) takes about 25 minutes to fill.
# Nothing leaves the machine.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

URLS="${1:-100000}"
OBSERVATIONS="${2:-500000}"
OUT="${3:-$BENCH_DIR/results/report}"

need_tdmon
mkdir -p "$OUT"
DB="$OUT/tdmon-bench.db"
if [[ ! -s "$DB" ]]; then
    log "filling $DB: $URLS URLs, $OBSERVATIONS observations (store benchmark)"
    (cd "$REPO" && cargo bench -p tdmon-store --bench store -- --backend sqlite \
        --urls "$URLS" --observations "$OBSERVATIONS" --leases 5 --dir "$OUT" --keep) \
        >"$OUT/fill.out" 2>"$OUT/fill.err"
    KEPT="$(grep -m1 '^kept ' "$OUT/fill.err" | cut -d' ' -f2-)"
    mv "$KEPT" "$DB"
fi

/usr/bin/time -f "%e s %M KiB" -o "$OUT/time-migrate" \
    timeout 3600 "$TDMON" status --db "$DB" >/dev/null
log "opening (pending migrations applied): $(cat "$OUT/time-migrate")"
for format in json html; do
    for run in 1 2 3; do
        /usr/bin/time -f "%e s %M KiB" -o "$OUT/time-$format-$run" \
            timeout 600 "$TDMON" report --db "$DB" --format "$format" --out "$OUT/$format" >/dev/null
        log "$format run $run: $(cat "$OUT/time-$format-$run")"
    done
done
