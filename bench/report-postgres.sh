#!/usr/bin/env bash
# The report's time and peak memory on a big PostgreSQL store: `tdmon report`
# (JSON and HTML, three runs each) over 1,000,000 URLs and 20,000,000
# observations by default.
#
#   bench/report-postgres.sh [URLS] [OBSERVATIONS] [COPIES] [OUT_DIR]
#       (defaults: 1000000 20000000 10 bench/results/report-postgres)
#
# Filling 20,000,000 observations through `apply_observations` would take
# hours here, so the store benchmark writes URLS/COPIES URLs with
# OBSERVATIONS/COPIES observations (realistic, attributed, through
# `apply_observations`), and SQL then copies them COPIES-1 times under new
# URL ids and job ids, each copy in its original order. Then VACUUM ANALYZE
# (what autovacuum does to an insert-only table), and the first `tdmon` to
# open the schema applies any pending migration (timed on its own).
#
# Environment: TDMON (default target/release/tdmon); TDMON_BENCH_POSTGRES
# (default postgres://postgres@127.0.0.1:5432/test); KEEP=1 keeps the schema;
# SCHEMA=NAME copies a schema the store benchmark kept (`--keep`) instead of
# filling one.
# Nothing leaves the machine.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

URLS="${1:-1000000}"
OBSERVATIONS="${2:-20000000}"
COPIES="${3:-10}"
OUT="${4:-$BENCH_DIR/results/report-postgres}"
PG="${TDMON_BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"

need_tdmon
mkdir -p "$OUT"
if [[ -z "${SCHEMA:-}" ]]; then
    log "filling $((URLS / COPIES)) URLs, $((OBSERVATIONS / COPIES)) observations (store benchmark)"
    (cd "$REPO" && TDMON_BENCH_POSTGRES="$PG" cargo bench -p tdmon-store --bench store -- \
        --backend postgres --urls "$((URLS / COPIES))" --observations "$((OBSERVATIONS / COPIES))" \
        --leases 5 --keep) >"$OUT/fill.out" 2>"$OUT/fill.err"
    SCHEMA="$(grep -m1 '^kept schema ' "$OUT/fill.err" | cut -d' ' -f3)"
fi
[[ "$SCHEMA" =~ ^tdmon_bench_[0-9a-f]+$ ]] || { log "no schema kept: see $OUT/fill.err"; exit 1; }
if [[ "${KEEP:-}" != 1 ]]; then
    trap 'psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE" || true' EXIT
fi
log "schema $SCHEMA"

# The copies skip the foreign-key checks (session_replication_role): every
# row copied refers to a URL copied before it. Events are not copied: the
# report does not read them.
psql -v ON_ERROR_STOP=1 -q "$PG" >"$OUT/copy.out" <<SQL
SET search_path = $SCHEMA;
SET session_replication_role = replica;
\\timing on
SELECT max(url_id) AS last FROM urls \\gset
INSERT INTO notices (id, notice_id, url, host, notified_at, category, reporter,
                     claimed_hoster, added_at)
    OVERRIDING SYSTEM VALUE
    SELECT id + k * :last, notice_id || '~' || k, url, host,
           notified_at + k * interval '1 microsecond', category, reporter, claimed_hoster,
           added_at
    FROM notices, generate_series(1, $COPIES - 1) AS k WHERE id <= :last;
INSERT INTO urls (url_id, url, host, phase, next_check_at, next_purpose, baseline,
                  lease_until, state, updated_at)
    SELECT url_id + k * :last, url, host, phase, next_check_at, next_purpose, baseline,
           lease_until, jsonb_set(state, '{subject,url_id}', to_jsonb(url_id + k * :last)),
           updated_at
    FROM urls, generate_series(1, $COPIES - 1) AS k WHERE url_id <= :last;
INSERT INTO observations (job_id, url_id, url, worker, started_at, answered_at,
                          duration_ms, dns_outcome, dns_answers, ip, asn, as_org, hoster,
                          cdn, http_status, content_type, content_length, etag,
                          last_modified, location, redirects, connection_reused,
                          tls_error, fingerprint, outcome, verdict, stored_at)
    SELECT gen_random_uuid(), url_id + k * :last, url, worker, started_at, answered_at,
           duration_ms, dns_outcome, dns_answers, ip, asn, as_org, hoster, cdn,
           http_status, content_type, content_length, etag, last_modified, location,
           redirects, connection_reused, tls_error, fingerprint, outcome, verdict, stored_at
    FROM observations, generate_series(1, $COPIES - 1) AS k WHERE url_id <= :last
    ORDER BY k, observation_id;
SQL
psql -q "$PG" -c "SET search_path = $SCHEMA" -c "VACUUM ANALYZE" >>"$OUT/copy.out"
log "$(psql -Atq "$PG" -c "SELECT count(*) || ' URLs, ' FROM $SCHEMA.urls")$(psql -Atq "$PG" -c "SELECT count(*) || ' observations' FROM $SCHEMA.observations")"

export TDMON_STORE__URL="$PG" TDMON_STORE__SCHEMA="$SCHEMA"
/usr/bin/time -f "%e s %M KiB" -o "$OUT/time-migrate" \
    timeout 3600 "$TDMON" status >/dev/null
log "opening (pending migrations applied): $(cat "$OUT/time-migrate")"
# A migration that rewrites every state leaves as many dead rows behind, which
# autovacuum clears soon after; the report is timed after that.
/usr/bin/time -f "%e s" -o "$OUT/time-vacuum" \
    psql -q "$PG" -c "SET search_path = $SCHEMA" -c "VACUUM ANALYZE urls" >>"$OUT/copy.out"
log "VACUUM ANALYZE urls: $(cat "$OUT/time-vacuum")"
for format in json html; do
    for run in 1 2 3; do
        /usr/bin/time -f "%e s %M KiB" -o "$OUT/time-$format-$run" \
            timeout 600 "$TDMON" report --format "$format" --out "$OUT/$format" >/dev/null
        log "$format run $run: $(cat "$OUT/time-$format-$run")"
    done
done
