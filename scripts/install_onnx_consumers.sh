#!/usr/bin/env bash
# Installs what the ONNX tests check tnet's files against, only what is missing: Debian's
# python3-onnx, python3-opencv and python3-torch, nodejs and npm, and npm's onnxruntime-node into
# .cache/onnxruntime-node (its install step, which fetches GPU libraries from elsewhere, is
# skipped: the CPU library comes in the package). A consumer that cannot be installed (no
# network) is reported and its test skipped; nothing here is needed to build or use tnet.
set -uo pipefail
cd "$(dirname "$0")/.."
node=()
command -v npm >/dev/null || node=(nodejs npm)  # a machine's own Node.js (with its npm) is kept
bash scripts/setup.sh python3-onnx python3-opencv python3-torch "${node[@]}" || echo "warning: could not install the ONNX consumers from Debian; their tests will be skipped"
version=1.30.0
target=.cache/onnxruntime-node
if [ ! -f "$target/node_modules/onnxruntime-node/package.json" ] || ! grep -q "\"version\": \"$version\"" "$target/node_modules/onnxruntime-node/package.json"; then
  mkdir -p "$target"
  if ! (cd "$target" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund --loglevel=error "onnxruntime-node@$version" >/dev/null); then
    echo "warning: could not install onnxruntime-node $version with npm; the ONNX Runtime test will be skipped"
  fi
fi
