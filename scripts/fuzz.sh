#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer, on the stable toolchain (see fuzz/Cargo.toml).
#
#   scripts/fuzz.sh SECONDS [TARGET...]
#
# Builds the fuzz targets with sanitizer coverage and runs each for SECONDS over the committed
# corpus (fuzz/corpus/<target>/). New inputs go to fuzz/work/<target>/, crashes to
# fuzz/artifacts/<target>/, and a crash fails the run. `make test` runs it for a few seconds a
# target, `make fuzz` for longer (FUZZ_SECONDS).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-300}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(intake wire pairing store)
fi
cargo=${CARGO:-cargo}
rustc=${RUSTC:-rustc}
triple=$("$rustc" -vV | sed -n 's/^host: //p')
flags="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
flags+=" -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares"
# With --target, the flags instrument the targets and not the build scripts.
(cd fuzz && RUSTFLAGS="$flags" "$cargo" build --release --target "$triple" --bins)

for t in "${targets[@]}"; do
  mkdir -p "fuzz/work/$t" "fuzz/artifacts/$t"
  log="fuzz/work/$t.log"
  bin="fuzz/target/$triple/release/$t"
  if ! "$bin" -max_total_time="$seconds" -max_len=70000 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$t/" \
      "fuzz/work/$t" "fuzz/corpus/$t" >"$log" 2>&1; then
    echo "fuzz: $t FAILED; the input is in fuzz/artifacts/$t/, the log in $log:" >&2
    grep -E -A30 'panicked|ERROR|SUMMARY' "$log" >&2 || cat "$log" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  echo "fuzz: $t: $runs inputs in ${seconds} s, no crash"
done
