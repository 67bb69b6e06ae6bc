#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-19 and runs each for SECONDS (default 60) on a copy of
# its seed corpus (tests/fixtures/fuzz/<target>/), two at a time. Exits non-zero, with the
# crashing input saved under the build folder, when any finds a crash, a leak, undefined behaviour,
# more than 2 GB of memory or an input that takes over 10 s.
#   bash fuzz/run.sh [SECONDS]          CI runs 60; a longer run: bash fuzz/run.sh 3600
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
build=build-fuzz
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-19 -DTNET_FUZZ=ON -DTNET_WERROR=ON \
  -DTNET_BUILD_TESTS=OFF -DTNET_BUILD_EXAMPLES=OFF -DTNET_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" --target fuzz_model fuzz_onnx fuzz_labels fuzz_list fuzz_image fuzz_cache
run() {
  local target=$1 corpus="$build/corpus/$1"
  rm -rf "$corpus" && mkdir -p "$corpus" "$build/crashes/$1"
  cp tests/fixtures/fuzz/"$target"/* "$corpus"/
  if "$build/fuzz/fuzz_$target" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$build/crashes/$1/" "$corpus" >"$build/fuzz_$target.log" 2>&1; then
    echo "fuzz_$target: $(grep -E '^stat::number_of_executed_units' "$build/fuzz_$target.log" | awk '{print $2}') inputs in ${seconds} s, no failure"
  else
    echo "fuzz_$target: FAILED"; tail -40 "$build/fuzz_$target.log"; return 1
  fi
}
failed=0
run model & a=$!
run labels & b=$!
wait $a || failed=$((failed + 1))
wait $b || failed=$((failed + 1))
run list & a=$!
run image & b=$!
wait $a || failed=$((failed + 1))
wait $b || failed=$((failed + 1))
run onnx & a=$!
run cache & b=$!
wait $a || failed=$((failed + 1))
wait $b || failed=$((failed + 1))
echo "fuzz: $((6 - failed)) passed, $failed failed"
[ $failed = 0 ]
