#!/usr/bin/env bash
# `make test-stress`: the test suites (not the build, lints or fuzzing) STRESS_RUNS times
# (5) while a busy loop keeps one core busy, as on a machine doing other work; then, per
# test, in how many runs it failed. A test that fails one run in five under load is a
# defect, in the test or in the product.
#
#   STRESS_RUNS=10 make test-stress
#
# The logs of every run stay in the directory printed at the start.
set -uo pipefail
cd "$(dirname "$0")/.."
cargo=${CARGO:-cargo}
runs=${STRESS_RUNS:-5}
# A run that takes longer than this has hung: it is stopped and counted as failed.
run_limit=${STRESS_RUN_LIMIT:-2400}

logs=$(mktemp -d -t continuity-stress.XXXXXX)
echo "make test-stress: $runs runs with one core kept busy; logs in $logs"
"$cargo" build --workspace || exit 1
"$cargo" test --workspace --no-run >"$logs/build.log" 2>&1 || {
    cat "$logs/build.log"
    exit 1
}
./scripts/web-deps.sh

burner=
stop_burner() {
    if [ -n "$burner" ]; then
        kill "$burner" 2>/dev/null
        wait "$burner" 2>/dev/null
        burner=
    fi
}
trap stop_burner EXIT

declare -A failures=()
for run in $(seq 1 "$runs"); do
    # One core busy for the whole run, stopped with it.
    (while :; do :; done) &
    burner=$!
    start=$SECONDS
    timeout "$run_limit" "$cargo" test --workspace --no-fail-fast >"$logs/cargo-$run.log" 2>&1
    cargo_status=$?
    timeout "$run_limit" node --import ./web/test/app-modules.mjs --test web/test/json.test.js web/test/vectors.test.js web/test/device.test.js web/test/keeper.test.js \
        web/test/browser.test.js >"$logs/web-$run.log" 2>&1
    web_status=$?
    stop_burner
    # The failed tests of this run: `suite: test`.
    mapfile -t failed < <(
        awk '/^ *Running /{suite=$2} / \.\.\. FAILED$/{print suite ": " $2}' "$logs/cargo-$run.log"
        sed -nE 's/^ *not ok [0-9]+ - (.*)$/web: \1/p' "$logs/web-$run.log"
    )
    if [ $cargo_status -eq 124 ] || [ $web_status -eq 124 ]; then
        failed+=("a suite hung and was stopped after $run_limit s")
    elif [ ${#failed[@]} -eq 0 ] && { [ $cargo_status -ne 0 ] || [ $web_status -ne 0 ]; }; then
        failed+=("a suite failed without a failing test: see the logs")
    fi
    for t in "${failed[@]}"; do
        failures[$t]=$((${failures[$t]:-0} + 1))
    done
    took=$((SECONDS - start))
    echo "run $run of $runs: ${#failed[@]} failed, $took s"
done

echo
if [ ${#failures[@]} -eq 0 ]; then
    echo "make test-stress: 0 failures in $runs runs"
    exit 0
fi
echo "make test-stress: failures in $runs runs, per test:"
for t in "${!failures[@]}"; do
    printf '  %d of %d  %s\n' "${failures[$t]}" "$runs" "$t"
done | sort -rn
exit 1
