#!/usr/bin/env bash
# SmallerVGGNet inference in tnet beside its own ONNX export run by the two runtimes a user would
# ship it with instead: ONNX Runtime (PyPI's onnxruntime) and OpenCV's DNN (python3-opencv);
# batch 32 and batch 1, one after another on this machine, then a table with each one's ratio
# to tnet. The peers get the NCHW export (their own order).
#   bash benchmarks/onnx_runtimes.sh        (THREADS=2 STEPS=10 by default)
# Needs what scripts/install_onnx_consumers.sh installs; ONNX Runtime runs in the peers'
# environment (benchmarks/peers/setup.sh) where there is one, else in the ONNX tests' (same version).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2} steps=${STEPS:-10}
out=build-bench
cmake -S . -B $out -DCMAKE_BUILD_TYPE=Release -DTNET_NATIVE=ON -DTNET_BUILD_TESTS=OFF -DTNET_BUILD_EXAMPLES=ON >/dev/null
cmake --build $out -j"$(nproc)" --target bench_smallervgg fashion_train fashion_export >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A SmallerVGGNet model file to export: one short epoch on the synthetic garments.
$out/examples/fashion_train --epochs 1 --synthetic-count 10 --model "$work/m.tnet" --labelbin "$work/labels.txt" \
  --plot "$work/plot.png" --history "$work/history.csv" >/dev/null
$out/examples/fashion_export --model "$work/m.tnet" --labelbin "$work/labels.txt" --onnx "$work/m_nchw.onnx" --nchw >/dev/null

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%F); $threads threads, $steps steps"
run() { echo "== $1" >&2; shift; "$@" | tee /dev/stderr; }
tnet=$(run "tnet" $out/benchmarks/bench_smallervgg --threads "$threads" --steps "$steps")
ort_python=.cache/peers/bin/python
[ -x $ort_python ] || ort_python=.cache/onnx-consumers/bin/python
ort=$(run "ONNX Runtime" $ort_python benchmarks/peers/onnx_bench.py --runtime ort "$work/m_nchw.onnx" --threads "$threads" --steps "$steps")
cv=$(run "OpenCV DNN" /usr/bin/python3 benchmarks/opencv_bench.py "$work/m_nchw.onnx" "$threads" "$steps")

get() { echo "$1" | awk -v k="$2" '$1 == k { print $2 }'; }
echo
printf '| %-24s | %10s | %12s | %10s | %19s | %13s |\n' figure tnet "ONNX Runtime" OpenCV "tnet / ONNX Runtime" "tnet / OpenCV"
printf '|%s|%s|%s|%s|%s|%s|\n' -------------------------- ------------ -------------- ------------ --------------------- ---------------
for k in infer_images_per_s infer_latency_batch1_ms; do
  a=$(get "$tnet" $k) b=$(get "$ort" $k) c=$(get "$cv" $k)
  printf '| %-24s | %10s | %12s | %10s | %19s | %13s |\n' "$k" "$a" "$b" "$c" \
    "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')" "$(awk -v a="$a" -v c="$c" 'BEGIN { printf "%.2f", a / c }')"
done
echo "ONNX Runtime $(get "$ort" version) ($ort_python)."
echo "tnet with its dense kernels read in bfloat16 (Sequential::set_inference_precision):" \
  "$(get "$tnet" infer_images_per_s_bf16_dense) images/s, $(get "$tnet" infer_latency_batch1_ms_bf16_dense) ms at batch 1"
