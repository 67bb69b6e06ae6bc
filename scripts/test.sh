#!/usr/bin/env bash
# The tests, in two tiers.
#   bash scripts/test.sh          installs what is missing (Open MPI; python3-onnx, and ONNX Runtime
#                                 from PyPI into .cache/onnx-consumers), builds once with GCC at -O2
#                                 (warnings as errors; the fashion programs for SmallerVGGNet at 64
#                                 and 96 pixels) and runs every test not labelled `full`: the unit
#                                 tests, the programs as a user runs them, ONNX files read back by
#                                 onnx.checker and ONNX Runtime, MPI.
#   bash scripts/test.sh --full   what CI runs (.ci/run): built at -O2, the fashion programs at
#                                 every size and for ResNet18 and MobileNetV2 too, and every test,
#                                 the large consumers too (OpenCV's DNN, PyTorch and torchvision
#                                 from Debian); README and the docs checked (scripts/check_docs.sh:
#                                 no path outside the repository, no broken link, README's C++
#                                 compiled); then the unit tests built with clang-19 under
#                                 AddressSanitizer and UndefinedBehaviorSanitizer, the sources of
#                                 the examples, benchmarks and test tools through clang-19 with
#                                 warnings as errors (scripts/clang_check.sh), and each libFuzzer
#                                 target for 60 seconds (fuzz/run.sh). TNET_SKIP_SANITIZERS=1 and
#                                 TNET_SKIP_FUZZ=1 leave those out.
# Each phase's time is printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
full=0
case "${1:-}" in
  "") ;;
  --full) full=1 ;;
  *) echo "usage: bash scripts/test.sh [--full]" >&2 && exit 2 ;;
esac
jobs=$(nproc)
timings=()
phase_start=$(date +%s)
phase() {  # phase NAME: the time since the previous phase ended is NAME's
  local now
  now=$(date +%s)
  timings+=("$(printf '%-44s %4d s' "$1" $((now - phase_start)))")
  phase_start=$now
}

if [ $full = 1 ]; then
  bash scripts/setup.sh openmpi-bin libopenmpi-dev clang-19 libomp-19-dev
  bash scripts/install_onnx_consumers.sh --full
else
  bash scripts/setup.sh openmpi-bin libopenmpi-dev
  bash scripts/install_onnx_consumers.sh
fi
phase "installing what was missing"

# The benchmarks are not built here: clang_check.sh (--full) compiles their sources through
# clang-19's front end, and tests/compare_table.sh tests compare.sh with stand-ins.
# Both tiers compile at -O2, in about two thirds of -O3's time (CI builds the quick start's
# programs at -O3 and runs them); the quick tier compiles the unit tests and test tools at -O1
# (two thirds again), and only the fashion programs' sizes that the tests run.
# On a CPU without AVX-512 the quick tier compiles no AVX-512 code (TNET_NO_AVX512), which could
# not run there; the full tier compiles it everywhere.
if [ $full = 1 ]; then
  tier=(-DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" -DTNET_TEST_OPTIMIZATION= -DTNET_FASHION_TORCHVISION=ON -DTNET_FASHION_NETWORKS=
    -DTNET_NO_AVX512=OFF)
else
  no_avx512=OFF
  for flag in avx512f avx512dq avx512bw avx512vl; do
    grep -qw $flag /proc/cpuinfo || no_avx512=ON
  done
  tier=(-DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" -DTNET_TEST_OPTIMIZATION=-O1 -DTNET_FASHION_TORCHVISION=OFF
    "-DTNET_FASHION_NETWORKS=smallervgg:64;smallervgg:96" -DTNET_NO_AVX512=$no_avx512)
fi
# The tests' own build folder, apart from build/ (the README's) and build-quickstart/: both tiers
# set every option they depend on. Ninja compiles every program's sources side by side (Make
# waits for a target's dependencies); a folder made earlier keeps its own generator.
build=build-tests
generator=(-G Ninja)
[ -f $build/CMakeCache.txt ] && generator=()
cmake "${generator[@]}" -S . -B $build -DCMAKE_BUILD_TYPE=Release -DTNET_NATIVE=OFF -DTNET_SANITIZE=OFF -DTNET_WERROR=ON -DTNET_MPI=ON \
  -DTNET_BUILD_EXAMPLES=ON -DTNET_BUILD_TESTS=ON -DTNET_BUILD_BENCHMARKS=OFF "${tier[@]}" >/dev/null
cmake --build $build -j"$jobs"
phase "building (GCC)"
if [ $full = 1 ]; then
  bash scripts/check_docs.sh
  phase "README and docs (check_docs.sh)"
  ctest --test-dir $build --output-on-failure -j"$jobs"
  phase "every test"
else
  ctest --test-dir $build --output-on-failure -j"$jobs" -LE full
  phase "the tests (not those labelled full)"
fi

if [ $full = 1 ] && [ "${TNET_SKIP_SANITIZERS:-0}" != 1 ]; then
  # The second compiler and the sanitizers in one build: the unit tests under clang-19 with ASan
  # and UBSan; then the other programs' sources (examples, benchmarks, test tools) through
  # clang-19's front end, warnings as errors.
  cmake -S . -B build-sanitize-clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-19 -DTNET_SANITIZE=ON \
    -DTNET_WERROR=ON -DTNET_BUILD_BENCHMARKS=OFF -DTNET_BUILD_EXAMPLES=OFF >/dev/null
  cmake --build build-sanitize-clang -j"$jobs" --target tnet_tests
  phase "building the unit tests (clang-19, ASan + UBSan)"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./build-sanitize-clang/tests/tnet_tests
  phase "the unit tests under ASan + UBSan"
  bash scripts/clang_check.sh
  phase "clang-19 over the other sources"
fi
if [ $full = 1 ] && [ "${TNET_SKIP_FUZZ:-0}" != 1 ]; then
  bash fuzz/run.sh 60
  phase "fuzzing (60 s a target)"
fi

echo
echo "tests passed; time taken:"
printf '  %s\n' "${timings[@]}"
