#!/usr/bin/env bash
# Notice intake: peak memory and time of `tdmon notices validate` and
# `tdmon notify` (SQLite and PostgreSQL) on a generated CSV file of N notices.
#
#   bench/notice_intake.sh [N] [OUT_DIR]     (defaults: 1000000, bench/results/intake)
#
# Environment: TDMON (default target/release/tdmon), TDMON_BENCH_POSTGRES
# (default postgres://postgres@127.0.0.1:5432/test; "off" skips PostgreSQL).
# PostgreSQL gets a fresh schema tdmon_bench_intake_<random>, dropped at the end.
# No network traffic: notify only stores the notices.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N="${1:-1000000}"
OUT="${2:-$BENCH_DIR/results/intake}"
PG="${TDMON_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"

need_tdmon
mkdir -p "$OUT"
FILE="$OUT/notices-$N.csv"

# N distinct notices on 40,000 hosts, each with a notice_id, category,
# reporter and hoster; times spread over the 60 days before now.
if [[ ! -s "$FILE" ]]; then
    log "writing $FILE"
    python3 - "$N" "$FILE" <<'EOF'
import datetime, sys
n, path = int(sys.argv[1]), sys.argv[2]
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
with open(path, "w") as f:
    f.write("url,notified_at,notice_id,category,reporter,hoster\n")
    for i in range(n):
        at = (now - datetime.timedelta(seconds=(i * 7919) % (60 * 86400))).isoformat()
        at = at.replace("+00:00", "Z")
        f.write(f"https://h{i % 40000}.example/files/{i}/image-{(i * 104729) % 1000003}.jpg,"
                f"{at},N-{i},csam,hotline-nl,Example Hosting B.V.\n")
EOF
fi

# measure NAME COMMAND...: runs it under /usr/bin/time -v, prints the peak RSS
# and the wall time, keeps the full output in OUT/NAME.*.
measure() {
    local name="$1"
    shift
    /usr/bin/time -v -o "$OUT/$name.time" timeout 3600 "$@" >"$OUT/$name.out" 2>"$OUT/$name.err" || true
    local rss wall
    rss="$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$OUT/$name.time")"
    wall="$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$OUT/$name.time")"
    printf '%-22s peak RSS %7s MiB   wall %s   %s\n' "$name" "$rss" "$wall" \
        "$(tail -n 1 "$OUT/$name.out" "$OUT/$name.err" 2>/dev/null | grep -v '^==' | grep . | tail -n 1)"
}

measure validate "$TDMON" notices validate "$FILE"

rm -f "$OUT/intake.db" "$OUT/intake.db-wal" "$OUT/intake.db-shm"
measure notify-sqlite "$TDMON" notify "$FILE" --db "$OUT/intake.db"
measure notify-sqlite-again "$TDMON" notify "$FILE" --db "$OUT/intake.db"

if [[ "$PG" != off ]]; then
    SCHEMA="tdmon_bench_intake_$RANDOM$RANDOM"
    trap 'psql "$PG" -qc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" >/dev/null 2>&1' EXIT
    measure notify-postgres "$TDMON" --set "store.url=$PG" --set "store.schema=$SCHEMA" \
        notify "$FILE"
fi
