#!/usr/bin/env bash
# Installs the peers of benchmarks/compare.sh into one virtual environment, .cache/peers (ignored
# by git): PyTorch and torchvision, ONNX Runtime, OpenVINO, onnx, and TensorFlow with tf-keras and
# tf2onnx, with SciPy, OpenCV and matplotlib for benchmarks/keras, at the versions pinned in
# benchmarks/peers/requirements.txt. Idempotent: when the environment already holds that file's
# versions it installs nothing. Prints the versions it has.
#   bash benchmarks/peers/setup.sh        (PYTHON=python3, PEERS_VENV=.cache/peers by default)
# Downloads about 5 GB the first time (PyPI's torch comes with CUDA libraries), nothing after.
set -euo pipefail
cd "$(dirname "$0")/../.."
requirements=benchmarks/peers/requirements.txt
venv=${PEERS_VENV:-.cache/peers}
python=${PYTHON:-python3}
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  [ "$python" = /usr/bin/python3 ] || [ "$(command -v "$python")" = /usr/bin/python3 ] || {
    echo "error: $python cannot make a virtual environment (no venv or ensurepip module)" >&2
    exit 1
  }
  bash scripts/setup.sh python3-venv
fi
# What the environment was made from: the pins and the Python that runs them.
want="$(sha256sum <"$requirements" | cut -d' ' -f1) $("$python" -c 'import sys; print(sys.version.split()[0])')"
stamp=$venv/.tnet-peers
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "peers: $venv is up to date, nothing installed"
else
  start=$SECONDS
  echo "peers: installing $requirements into $venv (about 5 GB to download the first time)"
  rm -f "$stamp"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  # No pip cache: the wheels are gigabytes and live in the environment once installed.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir -r "$requirements"
  "$venv/bin/python" -m pip check --disable-pip-version-check >/dev/null
  echo "$want" >"$stamp"
  echo "peers: installed in $((SECONDS - start)) s; $venv takes $(du -sh "$venv" | cut -f1)"
fi
"$venv/bin/python" - "$requirements" <<'PY'
import sys
from importlib.metadata import version
names = [line.split("==")[0] for line in open(sys.argv[1]) if "==" in line and not line.startswith("#")]
print(f"peers: Python {sys.version.split()[0]}; " + ", ".join(f"{n} {version(n)}" for n in names))
PY
