#!/usr/bin/env bash
# Mutation testing of the measurement core: cargo-mutants on the state machine,
# the norms and the Kaplan-Meier estimator (crates/core/src/{state,norm,survival}.rs),
# against tdmon-core's whole test suite. A mutant the tests do not catch ("missed")
# is behaviour no test pins down, unless a `// mutants: equivalent` comment at its
# line shows that no input can tell it apart. Not in CI: a run takes 25 to 45 minutes
# on two shared cores (docs/BENCHMARKS.md, "Mutation testing").
#
#   bench/mutants.sh                 # every mutant, one job
#   MUTANTS_JOBS=2 bench/mutants.sh  # two jobs (each builds in its own copy)
#   bench/mutants.sh --re 'Run::extend'   # extra arguments go to cargo-mutants
#
# Needs cargo-mutants (`cargo install --locked cargo-mutants`) and cargo-nextest.
# Results: target/mutants/mutants.out/ (caught.txt, missed.txt, timeout.txt, unviable.txt).
# Exits as cargo-mutants does: 0 all caught, 2 some missed, 3 some timed out.

set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${MUTANTS_OUT:-$REPO/target/mutants}"
JOBS="${MUTANTS_JOBS:-1}"
# The unmutated suite takes 10 to 25 s here (proptests of the URL normaliser and
# of the state machine are most of it); a mutant that loops forever is cut off
# after this many seconds, five times that with room for a loaded machine.
TIMEOUT="${MUTANTS_TIMEOUT:-120}"

if ! command -v cargo-mutants >/dev/null; then
    echo "cargo-mutants is not installed: cargo install --locked cargo-mutants" >&2
    exit 1
fi

cd "$REPO"
mkdir -p "$OUT"
start=$SECONDS
cargo mutants \
    --package tdmon-core \
    --file crates/core/src/state.rs \
    --file crates/core/src/norm.rs \
    --file crates/core/src/survival.rs \
    --test-tool nextest \
    --jobs "$JOBS" \
    --timeout "$TIMEOUT" \
    --output "$OUT" \
    "$@"
status=$?

results="$OUT/mutants.out"
count() { [[ -f "$results/$1.txt" ]] && wc -l <"$results/$1.txt" || echo 0; }
echo
echo "mutation testing of crates/core/src/{state,norm,survival}.rs in $(((SECONDS - start) / 60)) min:"
echo "  caught $(count caught), missed $(count missed), unviable $(count unviable), timeouts $(count timeout)"
if [[ -s "$results/missed.txt" ]]; then
    echo "missed:"
    sed 's/^/  /' "$results/missed.txt"
fi
exit "$status"
