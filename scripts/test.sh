#!/usr/bin/env bash
# What `make test` runs, part by part, and how long each part took (printed at the end,
# also when a part fails: the failing part is the last line).
#
#   scripts/test.sh            every part
#   scripts/test.sh --suites   only the test suites (no lints, no fuzzing): what
#                              `make test-stress` repeats
set -uo pipefail
cd "$(dirname "$0")/.."
cargo=${CARGO:-cargo}
fuzz_seconds=${FUZZ_SMOKE_SECONDS:-5}

names=()
times=()
summary() {
    local status=$?
    [ ${#names[@]} -eq 0 ] && exit "$status"
    echo
    echo "make test, part by part:"
    for i in "${!names[@]}"; do
        printf '  %-44s %6s s\n' "${names[$i]}" "${times[$i]}"
    done
    exit "$status"
}
trap summary EXIT

# part NAME COMMAND...: run it, note its time; a failure ends the run.
part() {
    local name=$1
    shift
    local start=$SECONDS
    "$@"
    local status=$?
    [ $status -ne 0 ] && name="$name: FAILED"
    names+=("$name")
    times+=($((SECONDS - start)))
    [ $status -eq 0 ] || exit $status
}

suites_only=false
[ "${1:-}" = "--suites" ] && suites_only=true

# The plugin library, for the gst-launch tests and `continuity play`.
part "build" "$cargo" build --workspace
part "cargo tests: Rust, GStreamer, brokers, cluster" "$cargo" test --workspace
part "JavaScript contract and web TV units" node --import ./web/test/app-modules.mjs --test web/test/json.test.js web/test/vectors.test.js web/test/device.test.js web/test/keeper.test.js
part "web app's npm packages" ./scripts/web-deps.sh
part "web TV in headless Chromium" node --test web/test/browser.test.js
$suites_only && exit 0
if "$cargo" fmt --version >/dev/null 2>&1; then
    part "format check" "$cargo" fmt --all --check
else
    echo "rustfmt not installed: format check skipped"
fi
if "$cargo" clippy --version >/dev/null 2>&1; then
    part "lints: clippy" "$cargo" clippy --workspace --all-targets -- -D warnings
else
    echo "clippy not installed: lint skipped"
fi
part "fuzz smoke, ${fuzz_seconds} s a target" env CARGO="$cargo" ./scripts/fuzz.sh "$fuzz_seconds"
