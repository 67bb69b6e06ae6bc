#!/usr/bin/env bash
# Installs tnet from the build tree into a scratch prefix, then builds and runs the consumer
# project against it with find_package, and again with add_subdirectory.
# Usage: check.sh SOURCE_DIR BUILD_DIR CXX
set -euo pipefail
src=$1 build=$2 cxx=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/tests/consumer" -B "$work/installed" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_CXX_COMPILER="$cxx" >/dev/null
cmake --build "$work/installed" >/dev/null
"$work/installed/consumer"
cmake -S "$src/tests/consumer" -B "$work/subdir" -DTNET_SOURCE_DIR="$src" -DCMAKE_CXX_COMPILER="$cxx" \
  -DTNET_BUILD_TESTS=OFF -DTNET_BUILD_EXAMPLES=OFF -DTNET_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$work/subdir" >/dev/null
"$work/subdir/consumer"
echo "consumer: find_package and add_subdirectory both work"
