#!/usr/bin/env bash
# Benchmark 1: `tdmon check` against lychee over 20,000 URLs on 1,000 simulated
# hosts (80% live, 15% gone with 404, 5% live with a 5 MiB body), and wrk's
# ceiling on the same server with and without keep-alive.
#
#   bench/check.sh [RUNS] [OUT_DIR]        (defaults: 3, bench/results/check)
#
# Environment: TDMON (default target/release/tdmon), LYCHEE (default
# /tmp/lychee/bin/lychee, else `lychee` on PATH), CONCURRENCY (default 128,
# both tools), WRK_SECONDS (default 10).
#
# Each tool gets a fresh server per run, so the server's per-URL byte counts
# (`tdmon simnet serve --stats`) belong to one tool. Both tools get the same
# IP-literal URLs (`http://127.30.a.b:PORT/hNNNN/pKK.html`): lychee cannot use
# simnet's DNS server, and simnet routes an IP-literal Host by address and path.
# The tool order alternates between runs. Results: OUT_DIR/run-N/<tool>.*,
# summarised by bench/summarize.py into OUT_DIR/summary.{json,md}.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${1:-3}"
OUT="${2:-$BENCH_DIR/results/check}"
CONCURRENCY="${CONCURRENCY:-128}"
WRK_SECONDS="${WRK_SECONDS:-10}"
LYCHEE="${LYCHEE:-/tmp/lychee/bin/lychee}"
[[ -x "$LYCHEE" ]] || LYCHEE="$(command -v lychee || true)"

need_tdmon
raise_nofile
mkdir -p "$OUT"
# A server left by a failed step is stopped on the way out.
trap '[[ -n "${SERVER_PID:-}" ]] && kill -TERM "$SERVER_PID" 2>/dev/null || true' EXIT
python3 "$BENCH_DIR/gen_scenario.py" check --hosts 1000 --urls 20000 --out "$OUT"
SCENARIO="$OUT/scenario.toml"

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "tdmon: $(cd "$REPO" && git rev-parse --short HEAD) ($(cd "$REPO" && git status --porcelain | wc -l) files modified in the work tree)"
    echo "lychee: ${LYCHEE:+$("$LYCHEE" --version)}"
    echo "wrk: $(wrk -v 2>&1 | head -1)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
    echo "kernel: $(uname -r)"
    echo "concurrency: $CONCURRENCY"
    free -h
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

run_tdmon() {
    local dir="$1"
    start_server "$SCENARIO" "$dir/tdmon.stats.json" "$dir"
    sed "s/{PORT}/$PORT/" "$OUT/urls-ip.tmpl" >"$dir/urls.txt"
    timed tdmon "$dir" "$TDMON" --config "$BENCH_CONFIG" check \
        --input "$dir/urls.txt" --concurrency "$CONCURRENCY"
    stop_server
}

run_lychee() {
    local dir="$1"
    start_server "$SCENARIO" "$dir/lychee.stats.json" "$dir"
    sed "s/{PORT}/$PORT/" "$OUT/urls-ip.tmpl" >"$dir/urls.txt"
    # GET (lychee's default), no retries and no per-host pacing, like tdmon
    # here; no cache so that every run checks every URL.
    timed lychee "$dir" "$LYCHEE" --no-progress --format json \
        --max-concurrency "$CONCURRENCY" --host-concurrency "$CONCURRENCY" \
        --host-request-interval 0s --max-retries 0 --timeout 20 \
        --output "$dir/lychee.json" "$dir/urls.txt"
    stop_server
}

lo_tx() { cat /sys/class/net/lo/statistics/tx_bytes; }

# The 1,000 big URLs alone, per tool: the server's per-URL written bytes, and
# the bytes that crossed the loopback interface during the run (every packet,
# both directions, headers included: what really left the server, while the
# written count also holds what stayed in the server's own send buffer).
# Other traffic on lo at the same time would inflate the latter.
run_big() {
    local tool="$1" dir="$2" before after
    start_server "$SCENARIO" "$dir/$tool-big.stats.json" "$dir"
    sed "s/{PORT}/$PORT/" "$OUT/urls-ip.tmpl" | grep -F -f "$OUT/big-paths.txt" >"$dir/big-urls.txt"
    before="$(lo_tx)"
    if [[ "$tool" == tdmon ]]; then
        timed tdmon-big "$dir" "$TDMON" --config "$BENCH_CONFIG" check \
            --input "$dir/big-urls.txt" --concurrency "$CONCURRENCY"
    else
        timed lychee-big "$dir" "$LYCHEE" --no-progress --format json \
            --max-concurrency "$CONCURRENCY" --host-concurrency "$CONCURRENCY" \
            --host-request-interval 0s --max-retries 0 --timeout 20 \
            --output "$dir/lychee-big.json" "$dir/big-urls.txt"
    fi
    stop_server
    after="$(lo_tx)"
    echo "$((after - before))" >"$dir/$tool-big.lo_bytes"
    log "$tool big URLs: $(( (after - before) / $(wc -l <"$dir/big-urls.txt") )) bytes on lo per URL"
}

run_wrk() {
    local dir="$1"
    start_server "$SCENARIO" "$dir/wrk.stats.json" "$dir"
    # One live URL with a small body (1 of the 1,000 hosts).
    local url="http://127.30.0.1:$PORT/h0000/p00.html"
    timeout 120 wrk -t2 -c"$CONCURRENCY" -d"${WRK_SECONDS}s" --latency "$url" \
        >"$dir/wrk-keepalive.out" 2>&1 || true
    timeout 120 wrk -t2 -c"$CONCURRENCY" -d"${WRK_SECONDS}s" --latency \
        -H "Connection: close" "$url" >"$dir/wrk-close.out" 2>&1 || true
    log "wrk keep-alive: $(grep Requests/sec "$dir/wrk-keepalive.out")"
    log "wrk close:      $(grep Requests/sec "$dir/wrk-close.out")"
    stop_server
}

for run in $(seq 1 "$RUNS"); do
    dir="$OUT/run-$run"
    mkdir -p "$dir"
    log "run $run/$RUNS (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
    cut -d' ' -f1-3 /proc/loadavg >"$dir/loadavg"
    if [[ -n "$LYCHEE" ]]; then
        if (( run % 2 )); then run_tdmon "$dir"; run_lychee "$dir"
        else run_lychee "$dir"; run_tdmon "$dir"; fi
    else
        log "lychee not found: tdmon only"
        run_tdmon "$dir"
    fi
    run_big tdmon "$dir"
    [[ -n "$LYCHEE" ]] && run_big lychee "$dir"
    run_wrk "$dir"
done

python3 "$BENCH_DIR/summarize.py" check "$OUT"
