#!/usr/bin/env bash
# Installs what the ONNX tests check tnet's files against, only what is missing: Debian's
# python3-onnx (onnx.checker), and PyPI's onnxruntime into a small virtual environment,
# .cache/onnx-consumers, made from Debian's Python with its packages visible
# (--system-site-packages): Debian's numpy serves onnxruntime too, and numpy stays below 2 for
# Debian's OpenCV and PyTorch, which were built against numpy 1. With --full (scripts/test.sh
# --full, CI) also the large ones: python3-opencv, python3-torch and python3-torchvision (the tests
# labelled `full` run them with /usr/bin/python3).
# Nothing here is needed to build or use tnet. A consumer that cannot be installed (no network)
# is an error when CI=true or TNET_REQUIRE_CONSUMERS=1 (exit 1; the tests then fail rather than
# skip); otherwise it is reported and its test skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
onnxruntime=1.31.1
venv=${TNET_ONNX_VENV:-.cache/onnx-consumers}
required=0
if [ "${CI:-}" = true ] || [ "${TNET_REQUIRE_CONSUMERS:-0}" = 1 ]; then required=1; fi
cannot() {
  if [ $required = 1 ]; then
    echo "error: $1 (CI=true or TNET_REQUIRE_CONSUMERS=1: every ONNX consumer is required)" >&2
    exit 1
  fi
  echo "warning: $1; its test will be skipped" >&2
}
packages=(python3-onnx python3-venv)
case "${1:-}" in
  "") ;;
  --full) packages+=(python3-opencv python3-torch python3-torchvision) ;;
  *) echo "usage: bash scripts/install_onnx_consumers.sh [--full]" >&2 && exit 2 ;;
esac
bash scripts/setup.sh "${packages[@]}" || cannot "could not install ${packages[*]} from Debian"
has_onnxruntime() { "$venv/bin/python" -c "import sys, onnxruntime; sys.exit(onnxruntime.__version__ != '$onnxruntime')" 2>/dev/null; }
if ! has_onnxruntime; then
  echo "installing onnxruntime $onnxruntime from PyPI into $venv"
  { [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$venv"; } &&
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "onnxruntime==$onnxruntime" "numpy<2" &&
    has_onnxruntime || cannot "could not install onnxruntime $onnxruntime from PyPI into $venv"
fi
exit 0
