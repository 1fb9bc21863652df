# Shared helpers of the benchmark scripts (sourced, not run).
# Every address used is on loopback (127.30.0.0/16 for the simulated hosts);
# every client run is bounded by `timeout`.

set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
TDMON="${TDMON:-$REPO/target/release/tdmon}"
BENCH_CONFIG="$BENCH_DIR/tdmon-bench.toml"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

need_tdmon() {
    if [[ ! -x "$TDMON" ]]; then
        log "building tdmon (cargo build --release -p tdmon-cli)"
        (cd "$REPO" && cargo build --release -p tdmon-cli)
    fi
}

# Raises the soft open-files limit to 65536, or to the hard limit if lower.
raise_nofile() {
    local want=65536 hard
    hard="$(ulimit -Hn)"
    if [[ "$hard" != unlimited && "$hard" -lt "$want" ]]; then
        log "open-files hard limit is $hard (< $want): using $hard"
        want="$hard"
    fi
    ulimit -n "$want"
    log "ulimit -n = $(ulimit -n)"
}

# start_server SCENARIO STATS_JSON LOGDIR: starts `tdmon simnet serve`, waits
# until it prints "ready" (at most 60 s); sets SERVER_PID and PORT.
start_server() {
    local scenario="$1" stats="$2" dir="$3"
    rm -f "$stats"
    "$TDMON" simnet serve --scenario "$scenario" --stats "$stats" \
        >"$dir/serve.out" 2>"$dir/serve.err" &
    SERVER_PID=$!
    local i
    for i in $(seq 1 600); do
        if grep -q '^ready$' "$dir/serve.out" 2>/dev/null; then
            PORT="$(grep -m1 '^url ' "$dir/serve.out" | sed -E 's#^url [a-z]+://[^/]*:([0-9]+)/.*#\1#')"
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            log "simnet exited early:"; cat "$dir/serve.err" >&2; return 1
        fi
        sleep 0.1
    done
    log "simnet did not get ready in 60 s"; kill -TERM "$SERVER_PID"; return 1
}

# stop_server: lets responses still being written finish (1 s), then stops
# the server with SIGTERM and waits for it (it writes its stats on the way out).
stop_server() {
    sleep 1
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=
}

# timed NAME DIR CMD...: runs CMD under /usr/bin/time -v (stdout to
# DIR/NAME.out, stderr and the timing to DIR/NAME.time), bounded to 15 min.
timed() {
    local name="$1" dir="$2"; shift 2
    local rc=0
    /usr/bin/time -v -o "$dir/$name.time" timeout 900 "$@" >"$dir/$name.out" 2>"$dir/$name.err" || rc=$?
    echo "$rc" >"$dir/$name.rc"
    log "$name: exit $rc, $(grep -E 'Elapsed' "$dir/$name.time" | sed 's/.*: //') wall, $(grep -E 'Maximum resident' "$dir/$name.time" | sed 's/.*: //') KiB peak RSS"
}
