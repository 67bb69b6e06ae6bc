#!/usr/bin/env bash
# The main job from a fresh checkout: install what is missing, build, train the demo network,
# save it, load it back and classify new pictures.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DTNET_NATIVE=ON >/dev/null
cmake --build build -j"$(nproc)" --target tnet_demo
./build/examples/tnet_demo --model build/demo.tnet "$@"
echo "The trained model is at build/demo.tnet"
