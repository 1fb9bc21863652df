#!/usr/bin/env bash
# The distributed deployment end to end: sustained checks/s stored, with one
# and with two worker processes, on this machine's RabbitMQ and PostgreSQL,
# everything (broker, database, simulated network, roles) on the same cores.
#
#   bench/distributed.sh [RUNS] [OUT_DIR]   (defaults: 3, bench/results/distributed)
#   STAGES=1 bench/distributed.sh ...       (also each stage alone, see below)
#
# Environment: TDMON (default target/release/tdmon), URLS (default 20000),
# HOSTS (default 1000), WORKERS (default "1 2"; empty for the stages only), WARMUP and WINDOW (seconds,
# default 15 and 30), POSTGRES (default postgres://postgres@127.0.0.1:5432/test),
# SETS (settings for every role, e.g. "dispatcher.batch=2000 bus.confirm_batch=2000",
# each passed as --set), COLLECTORS (collectors in the collector stage, default 1).
#
# Each run gets a fresh RabbitMQ vhost and PostgreSQL schema, both removed at
# its end (also on failure or Ctrl-C), and a fresh simulated network whose
# URLs all stay online. The schedule rechecks every URL each second, so every
# URL is always due and the roles run as fast as they can: the dispatcher
# leases and publishes, the workers check, the collector stores. The figure is
# observations committed by the collector per second, counted in the store
# over WINDOW seconds after WARMUP. CPU seconds per component over the window
# (from /proc) show what bounds it.
#
# With STAGES=1, each run also measures the dispatcher and the collector alone,
# on the same URLs: the dispatcher leases and publishes every URL once with
# nobody consuming (jobs/s, from the first lease to the last, polled in the
# store every 100 ms); two workers then check them all into the collector's
# queue while no collector runs; then the collector alone drains that queue
# into the store (observations/s, from the first stored to the last).

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS="${1:-3}"
OUT="${2:-$BENCH_DIR/results/distributed}"
URLS="${URLS:-20000}"
HOSTS="${HOSTS:-1000}"
WORKERS="${WORKERS-1 2}"
WARMUP="${WARMUP:-15}"
WINDOW="${WINDOW:-30}"
POSTGRES="${POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"

need_tdmon
raise_nofile
mkdir -p "$OUT"
python3 "$BENCH_DIR/gen_scenario.py" live --hosts "$HOSTS" --urls "$URLS" --out "$OUT"
SCENARIO="$OUT/scenario.toml"
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "tdmon: $(cd "$REPO" && git rev-parse --short HEAD) ($(cd "$REPO" && git status --porcelain | wc -l) files modified in the work tree)"
    echo "nproc: $(nproc)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
    echo "rabbitmq: $(rabbitmqctl -q version 2>/dev/null || echo '?')"
    echo "postgresql: $(psql "$POSTGRES" -XAtc 'SHOW server_version')"
    echo "urls: $URLS on $HOSTS hosts; warm-up ${WARMUP}s, window ${WINDOW}s"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt" >&2

PIDS=()
VHOST=
SCHEMA=
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
    if [[ -n "$VHOST" ]]; then rabbitmqctl -q delete_vhost "$VHOST" >/dev/null || true; fi
    if [[ -n "$SCHEMA" ]]; then PGOPTIONS=--client-min-messages=warning psql "$POSTGRES" -Xqc "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" || true; fi
    VHOST= SCHEMA=
}
trap cleanup EXIT

# CPU seconds (user + system) of the given processes, summed.
cpu_of() {
    local pid total=0 ticks
    for pid in "$@"; do
        ticks="$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)"
        total=$((total + ticks))
    done
    echo "$total"
}
# The machine's busy and total CPU ticks, for its load over the window.
machine_cpu() { awk '/^cpu /{busy=$2+$3+$4+$7+$8+$9; print busy, busy+$5+$6}' /proc/stat; }

observations() { psql "$POSTGRES" -XAtc "SELECT count(*) FROM $SCHEMA.observations"; }

# CPU snapshot of every component: tdmon roles, simnet, RabbitMQ, PostgreSQL.
snapshot() {
    local roles=() role
    for role in "${!ROLE_PIDS[@]}"; do roles+=("$role=$(cpu_of ${ROLE_PIDS[$role]})"); done
    echo "${roles[*]} rabbitmq=$(cpu_of $(pgrep -x beam.smp)) postgres=$(cpu_of $(pgrep -u postgres))"
}

# setup DIR HIGH_WATER: a fresh vhost, schema and simulated network, the
# settings file, and the notices stored. Sets SIMNET.
setup() {
    local dir="$1" high_water="$2" id
    mkdir -p "$dir"
    id="$(head -c6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    VHOST="tdmon-bench-$id" SCHEMA="tdmon_bench_$id"
    rabbitmqctl -q add_vhost "$VHOST" >/dev/null
    rabbitmqctl -q set_permissions -p "$VHOST" guest '.*' '.*' '.*' >/dev/null

    "$TDMON" simnet serve --scenario "$SCENARIO" --notices "$dir/notices.csv" \
        --asn-db "$dir/asn.mmdb" >"$dir/simnet.out" 2>"$dir/simnet.err" &
    PIDS+=($!)
    local simnet=$! i
    for i in $(seq 1 600); do
        grep -q '^ready$' "$dir/simnet.out" 2>/dev/null && break
        kill -0 "$simnet" 2>/dev/null || { log "simnet exited early"; cat "$dir/simnet.err" >&2; return 1; }
        sleep 0.1
    done
    local dns
    dns="$(sed -n 's/^dns //p' "$dir/simnet.out")"
    cat >"$dir/tdmon.toml" <<EOF
# Every URL is due again one second after its check: the roles never wait.
[schedule]
offsets = ["0s"]
then_every = "1s"
horizon = "30d"

# Two checks of a URL are at least recheck_delay apart.
[confirmation]
recheck_delay = "1s"
min_span = "1s"

[store]
url = "$POSTGRES"
schema = "$SCHEMA"

[bus]
url = "amqp://guest:guest@127.0.0.1:5672/$VHOST"

[dispatcher]
tick = "20ms"
high_water = $high_water
per_host_interval = "1ms"
per_host_burst = 1000

[worker]
name = "bench"
connect_timeout = "5s"
total_timeout = "20s"

[worker.resolver]
nameservers = ["$dns"]

[worker.policy]
allow = ["127.30.0.0/16"]

[worker.attribution]
asn_db = "$dir/asn.mmdb"

[worker.limits]
checks_per_second = 1000000
per_ip_interval = "1ms"
per_ip_burst = 1000000
per_ip_concurrency = 100000
EOF
    TDMON_CONFIG="$dir/tdmon.toml" timeout 300 "$TDMON" notify "$dir/notices.csv" \
        >"$dir/notify.out" 2>&1
    SIMNET=$simnet
    declare -gA ROLE_PIDS=()
}

start_role() { # DIR NAME ROLE
    local sets=() set
    for set in ${SETS:-}; do sets+=(--set "$set"); done
    TDMON_CONFIG="$1/tdmon.toml" "$TDMON" "${sets[@]}" "$3" >/dev/null 2>"$1/$2.log" &
    PIDS+=($!)
    ROLE_PIDS[$2]=$!
}

stop_role() { # NAME
    local pid="${ROLE_PIDS[$1]}"
    kill -TERM "$pid"
    wait "$pid" || true
    unset "ROLE_PIDS[$1]"
}

# Polls `psql QUERY` every 100 ms until it gives TARGET (at most LIMIT s);
# prints the rate from its first non-zero answer to the last, per second.
rate_until() { # QUERY TARGET LIMIT
    python3 - "$POSTGRES" "$1" "$2" "$3" <<'PY'
import subprocess, sys, time
url, query, target, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
first = None
deadline = time.monotonic() + limit
while time.monotonic() < deadline:
    n = int(subprocess.run(["psql", url, "-XAtc", query], capture_output=True, text=True, check=True).stdout)
    now = time.monotonic()
    if n and first is None:
        first = (now, n)
    if n >= target:
        break
    time.sleep(0.1)
else:
    sys.exit(f"only {n} of {target} after {limit}s")
print(round((n - first[1]) / (now - first[0])) if now > first[0] else 0)
PY
}

queue_depth() { # QUEUE
    rabbitmqctl -q list_queues -p "$VHOST" name messages | awk -v q="$1" '$1 == q {print $2}'
}

stages_once() { # DIR
    local dir="$1" jobs_rate obs_rate i cpu0 cpu1 cpu2 cpu3
    setup "$dir" $((URLS * 2))
    start_role "$dir" dispatcher dispatcher
    cpu0="$(snapshot)"
    jobs_rate="$(rate_until "SELECT count(*) FROM $SCHEMA.urls WHERE lease_until IS NOT NULL" "$URLS" 300)"
    cpu1="$(snapshot)"
    for i in $(seq 1 600); do
        [[ "$(queue_depth tdmon.checks)" -ge "$URLS" ]] && break
        sleep 0.5
    done
    stop_role dispatcher
    start_role "$dir" worker1 worker
    start_role "$dir" worker2 worker
    for i in $(seq 1 600); do
        [[ "$(queue_depth tdmon.collector)" -ge "$URLS" ]] && break
        sleep 0.5
    done
    stop_role worker1
    stop_role worker2
    for i in $(seq 1 "${COLLECTORS:-1}"); do start_role "$dir" "collector$i" collector; done
    cpu2="$(snapshot)"
    obs_rate="$(rate_until "SELECT count(*) FROM $SCHEMA.observations" "$URLS" 300)"
    cpu3="$(snapshot)"
    python3 - "$jobs_rate" "$obs_rate" "$cpu0" "$cpu1" "$cpu2" "$cpu3" "$(cut -d' ' -f1-3 /proc/loadavg)" \
        "$(getconf CLK_TCK)" "${SETS:-}" >"$dir/stages.json" <<'PY'
import json, sys
def parse(text):
    return {k: int(v) for k, v in (item.split("=") for item in text.split())}
def spent(a, b):
    a, b = parse(a), parse(b)
    return {k: round((b[k] - a.get(k, 0)) / float(sys.argv[8]), 2) for k in b}
print(json.dumps({
    "dispatcher_jobs_per_second": int(sys.argv[1]),
    "collector_observations_per_second": int(sys.argv[2]),
    "dispatcher_stage_cpu_seconds": spent(sys.argv[3], sys.argv[4]),
    "collector_stage_cpu_seconds": spent(sys.argv[5], sys.argv[6]),
    "loadavg": sys.argv[7],
    "sets": sys.argv[9],
}))
PY
    log "stages: $(cat "$dir/stages.json")"
    cleanup
}

run_once() { # WORKERS DIR
    local workers="$1" dir="$2" i
    setup "$dir" 1000
    start_role "$dir" collector collector
    for i in $(seq 1 "$workers"); do start_role "$dir" "worker$i" worker; done
    start_role "$dir" dispatcher dispatcher
    ROLE_PIDS[simnet]=$SIMNET

    sleep "$WARMUP"
    local before after cpu_before cpu_after machine_before machine_after load
    machine_before="$(machine_cpu)"
    cpu_before="$(snapshot)"
    before="$(observations)"
    sleep "$WINDOW"
    after="$(observations)"
    cpu_after="$(snapshot)"
    machine_after="$(machine_cpu)"
    load="$(cut -d' ' -f1-3 /proc/loadavg)"
    python3 - "$workers" "$before" "$after" "$WINDOW" "$cpu_before" "$cpu_after" \
        "$machine_before" "$machine_after" "$load" "$(getconf CLK_TCK)" >"$dir/result.json" <<'PY'
import json, sys
workers, before, after, window = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
def parse(text):
    return {k: int(v) for k, v in (item.split("=") for item in text.split())}
tick = float(sys.argv[10])
cpu_before, cpu_after = parse(sys.argv[5]), parse(sys.argv[6])
mb, ma = [list(map(int, t.split())) for t in (sys.argv[7], sys.argv[8])]
print(json.dumps({
    "workers": workers,
    "observations": after - before,
    "checks_per_second": round((after - before) / window),
    "cpu_seconds": {k: round((cpu_after[k] - cpu_before.get(k, 0)) / tick, 1) for k in cpu_after},
    "machine_busy": round((ma[0] - mb[0]) / (ma[1] - mb[1]), 3),
    "loadavg": sys.argv[9],
}))
PY
    log "$workers worker(s): $(cat "$dir/result.json")"
    cleanup
}

for run in $(seq 1 "$RUNS"); do
    for workers in $WORKERS; do
        run_once "$workers" "$OUT/run-$run/workers-$workers"
    done
    if [[ -n "${STAGES:-}" ]]; then stages_once "$OUT/run-$run/stages"; fi
done
python3 - "$OUT" <<'PY' | tee "$OUT/summary.md"
import json, pathlib, statistics, sys
out = pathlib.Path(sys.argv[1])
results = {}
for path in sorted(out.glob("run-*/workers-*/result.json")):
    r = json.loads(path.read_text())
    results.setdefault(r["workers"], []).append(r)
for workers, runs in sorted(results.items()):
    rates = [r["checks_per_second"] for r in runs]
    print(f"{workers} worker(s): checks/s {rates}, median {statistics.median(rates):.0f}")
    for r in runs:
        print(f"    cpu s over the window: {r['cpu_seconds']}; machine busy {r['machine_busy']:.0%}; load {r['loadavg']}")
stages = [json.loads(p.read_text()) for p in sorted(out.glob("run-*/stages/stages.json"))]
for key in ("dispatcher_jobs_per_second", "collector_observations_per_second"):
    if stages:
        rates = [s[key] for s in stages]
        print(f"{key}: {rates}, median {statistics.median(rates):.0f}")
PY
