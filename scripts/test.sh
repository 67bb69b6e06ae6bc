#!/usr/bin/env bash
# Every test: install what is missing (the ONNX consumers too: scripts/install_onnx_consumers.sh,
# and Open MPI for data-parallel training), build, run the suite; then the unit tests again under
# AddressSanitizer and UndefinedBehaviorSanitizer (skip those with TNET_SKIP_SANITIZERS=1).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh openmpi-bin libopenmpi-dev
bash scripts/install_onnx_consumers.sh
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DTNET_WERROR=ON -DTNET_MPI=ON -DTNET_FASHION_TORCHVISION=ON >/dev/null
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"
if [ "${TNET_SKIP_SANITIZERS:-0}" != 1 ]; then
  cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTNET_SANITIZE=ON -DTNET_WERROR=ON \
    -DTNET_BUILD_EXAMPLES=OFF -DTNET_BUILD_BENCHMARKS=OFF >/dev/null
  cmake --build build-sanitize -j"$jobs" --target tnet_tests
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./build-sanitize/tests/tnet_tests
fi
