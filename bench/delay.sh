#!/usr/bin/env bash
# Benchmark 2: `tdmon check --concurrency 10000` over 10,000 URLs on 1,000
# simulated hosts that each answer normally after a real 1 s pause (simnet's
# `delay` behaviour). Measures wall time and peak RSS (target: < 150 MiB).
#
#   bench/delay.sh [RUNS] [OUT_DIR]        (defaults: 3, bench/results/delay)
#
# Every address is on loopback (127.30.0.0/16); each run is bounded by timeout.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${1:-3}"
OUT="${2:-$BENCH_DIR/results/delay}"
CONCURRENCY="${CONCURRENCY:-10000}"

need_tdmon
raise_nofile
mkdir -p "$OUT"
# A server left by a failed step is stopped on the way out.
trap '[[ -n "${SERVER_PID:-}" ]] && kill -TERM "$SERVER_PID" 2>/dev/null || true' EXIT
python3 "$BENCH_DIR/gen_scenario.py" delay --hosts 1000 --urls 10000 --pause 1s --out "$OUT"

for run in $(seq 1 "$RUNS"); do
    dir="$OUT/run-$run"
    mkdir -p "$dir"
    log "run $run/$RUNS (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    cut -d' ' -f1-3 /proc/loadavg >"$dir/loadavg"
    start_server "$OUT/scenario.toml" "$dir/server.stats.json" "$dir"
    sed "s/{PORT}/$PORT/" "$OUT/urls-ip.tmpl" >"$dir/urls.txt"
    timed tdmon "$dir" "$TDMON" --config "$BENCH_CONFIG" check \
        --input "$dir/urls.txt" --concurrency "$CONCURRENCY"
    stop_server
done

python3 "$BENCH_DIR/summarize.py" delay "$OUT"
