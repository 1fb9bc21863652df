#!/usr/bin/env bash
# Heap profile of benchmark 2: heaptrack over `tdmon check` with N URLs in
# flight on the 1 s `delay` hosts, then the stacks holding the most memory at
# the peak (bench/heap_top.py). heaptrack slows the run, so N defaults to 2,000.
#
#   bench/profile-delay.sh [N] [OUT_DIR]      (defaults: 2000, bench/results/profile)

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N="${1:-2000}"
OUT="${2:-$BENCH_DIR/results/profile}"
command -v heaptrack >/dev/null || { log "heaptrack is not installed (apt-get install heaptrack)"; exit 2; }

need_tdmon
raise_nofile
mkdir -p "$OUT"
python3 "$BENCH_DIR/gen_scenario.py" delay --hosts 1000 --urls 10000 --pause 1s --out "$OUT"
start_server "$OUT/scenario.toml" "$OUT/server.stats.json" "$OUT"
trap '[[ -n "${SERVER_PID:-}" ]] && kill -TERM "$SERVER_PID" 2>/dev/null || true' EXIT
sed -n "1,${N}s/{PORT}/$PORT/p" "$OUT/urls-ip.tmpl" >"$OUT/urls.txt"
rm -f "$OUT"/heaptrack.*
timeout 600 heaptrack -o "$OUT/heaptrack" "$TDMON" --config "$BENCH_CONFIG" check \
    --input "$OUT/urls.txt" --concurrency "$N" >"$OUT/tdmon.out" 2>"$OUT/heaptrack.log" || true
stop_server
heaptrack_print -f "$OUT"/heaptrack.*zst --print-peaks 0 --print-allocators 0 \
    --print-temporary 0 --print-leaks 0 -F "$OUT/stacks.txt" --flamegraph-cost-type peak >/dev/null
python3 "$BENCH_DIR/heap_top.py" "$OUT/stacks.txt" 8 | tee "$OUT/heap_top.txt"
