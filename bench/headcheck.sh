#!/usr/bin/env bash
# The evidence behind docs/BENCHMARKS.md "What would meet the targets": the
# same two loads as bench/check.sh and bench/delay.sh, checked by the minimal
# clients of bench/headcheck-exp (hyper's connection API; a raw head reader),
# with and without a small socket receive buffer.
#
#   bench/headcheck.sh [OUT_DIR]        (default: bench/results/headcheck)
#
# Loopback only; every check is bounded (20 s), every run by `timeout`.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT="${1:-$BENCH_DIR/results/headcheck}"
EXP="$BENCH_DIR/headcheck-exp/target/release/headcheck-exp"
need_tdmon
raise_nofile
mkdir -p "$OUT/delay" "$OUT/big"
trap '[[ -n "${SERVER_PID:-}" ]] && kill -TERM "$SERVER_PID" 2>/dev/null || true' EXIT
cargo build --release --offline --manifest-path "$BENCH_DIR/headcheck-exp/Cargo.toml" >&2

# Memory: 10,000 URLs answering after 1 s, all in flight at once.
python3 "$BENCH_DIR/gen_scenario.py" delay --hosts 1000 --urls 10000 --pause 1s --out "$OUT/delay"
start_server "$OUT/delay/scenario.toml" "$OUT/delay/server.stats.json" "$OUT/delay"
sed "s/{PORT}/$PORT/" "$OUT/delay/urls-ip.tmpl" >"$OUT/delay/urls.txt"
for variant in "hyper 0 0" "hyper 0 4096" "raw 0 4096" "raw 0 2048"; do
    set -- $variant
    /usr/bin/time -f "%e s wall, %M KiB peak RSS" -o "$OUT/delay/time" \
        timeout 120 "$EXP" "$1" "$OUT/delay/urls.txt" 10000 "$2" "$3" 2>"$OUT/delay/err" || true
    echo "delay, 10000 in flight, $1 rcvbuf=$2 readbuf=$3: $(cat "$OUT/delay/time"); $(tail -1 "$OUT/delay/err")" | tee -a "$OUT/summary.txt"
done
stop_server

# Bytes: the 1,000 big (5 MiB) URLs, 128 at a time, by receive buffer size.
python3 "$BENCH_DIR/gen_scenario.py" check --hosts 1000 --urls 20000 --out "$OUT/big"
for rcvbuf in 0 32768 16384 4096; do
    start_server "$OUT/big/scenario.toml" "$OUT/big/stats-$rcvbuf.json" "$OUT/big"
    sed "s/{PORT}/$PORT/" "$OUT/big/urls-ip.tmpl" | grep -F -f "$OUT/big/big-paths.txt" >"$OUT/big/urls.txt"
    before="$(cat /sys/class/net/lo/statistics/tx_bytes)"
    timeout 120 "$EXP" hyper "$OUT/big/urls.txt" 128 "$rcvbuf" 0 2>"$OUT/big/err" || true
    stop_server
    after="$(cat /sys/class/net/lo/statistics/tx_bytes)"
    written="$(python3 -c "import json,statistics,sys; s=json.load(open(sys.argv[1])); print(int(statistics.median(v['bytes_sent'] for v in s['urls'].values())))" "$OUT/big/stats-$rcvbuf.json")"
    echo "big URLs, hyper, rcvbuf=$rcvbuf: $(( (after - before) / 1000 )) bytes on lo per URL, $written written by the server per URL (median); $(tail -1 "$OUT/big/err")" | tee -a "$OUT/summary.txt"
done
