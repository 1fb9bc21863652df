#!/usr/bin/env bash
# Attribution on a real ASN database against the reference reader: 100,000
# random addresses (IPv4, IPv6, IPv4-mapped IPv6; fixed seed) through
# `tdmon asn lookup` and through Python's `maxminddb`, every ASN and
# organisation compared (bench/attribution.py says how).
#
#   bench/attribution.sh [DB] [OUT_DIR]
#
# DB defaults to ../shared/data/asn/ip-location-db-asn.mmdb beside the
# repository; OUT_DIR to /tmp/tdmon-bench-attribution. Environment: TDMON
# (default target/release/tdmon), VENV (where `maxminddb` is installed, default
# /tmp/tdmon-bench-venv), COUNT (default 100000), SEED (default 20260601).
# Exit status 0 when every address agrees. Not part of the test suite: it needs
# the database, which the repository does not carry.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DB="${1:-$REPO/../shared/data/asn/ip-location-db-asn.mmdb}"
OUT="${2:-/tmp/tdmon-bench-attribution}"
VENV="${VENV:-/tmp/tdmon-bench-venv}"

[[ -r "$DB" ]] || { log "no ASN database at $DB"; exit 2; }
need_tdmon
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV with maxminddb"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet maxminddb
fi
log "maxminddb $("$VENV/bin/python" -c 'import maxminddb; print(maxminddb.__version__)')"
"$VENV/bin/python" "$BENCH_DIR/attribution.py" --tdmon "$TDMON" --db "$DB" \
    --count "${COUNT:-100000}" --seed "${SEED:-20260601}" --out "$OUT"
