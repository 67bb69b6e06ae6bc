#!/usr/bin/env bash
# tnet's bench_smallervgg beside PyTorch 2.x (fp32, bf16 autocast, torch.compile; channels-last)
# on a lent device machine (benchmarks/RESULTS.md), 2 and 16 threads, in one call. Prepared here:
# bench_smallervgg linked statically (-static, libgomp.a, libstb.a, libturbojpeg.a) for
# `-march=x86-64-v4` and for plain x86-64 (the default build), at this commit and at the one
# before, copied to .device/bench-{v4,port,before-v4,before-port} (.device is ignored by git).
# Run there with .device carried: bash benchmarks/pytorch_device.sh
set -u
D=$PWD/.device
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u '+%F %T')"
python3 -c 'import torch; print("torch", torch.__version__, "onednn", torch.backends.mkldnn.is_available())'
tnet() { echo "== tnet $1 threads $2 ${3:-}"; timeout 120 $D/bench-$1 --threads $2 --steps 10 ${3:-} 2>&1 | tr '\n' ' ' | sed 's/layer /\nlayer /g'; echo; }
torch() { echo "== torch threads $1 ${*:2}"; timeout 240 python3 benchmarks/torch_smallervgg.py --threads $1 --steps 10 --channels-last "${@:2}" 2>&1 | grep -v Warning | tr '\n' ' '; echo; }
for round in 1 2; do
  tnet before-v4 2; tnet v4 2; tnet port 2; tnet before-port 2; torch 2; torch 2 --bf16
  tnet before-v4 16; tnet v4 16; tnet port 16; torch 16; torch 16 --bf16
done
tnet port 2 "--kernel avx2"
tnet v4 2 --layers
torch 2 --compile
