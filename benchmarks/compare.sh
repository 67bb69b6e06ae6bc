#!/usr/bin/env bash
# SmallerVGGNet (batch 32, 96x96x3) in tnet, PyTorch and dlib, built and run one after another
# on this machine, then a table of the figures and each peer's ratio to tnet.
#   bash benchmarks/compare.sh            (THREADS=2 STEPS=10 by default)
# Needs: python3-torch (PyTorch), libdlib-dev and libopenblas-dev (dlib on OpenBLAS).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2} steps=${STEPS:-10}
out=build-bench
cmake -S . -B $out -DCMAKE_BUILD_TYPE=Release -DTNET_NATIVE=ON -DTNET_BUILD_TESTS=OFF -DTNET_BUILD_EXAMPLES=OFF >/dev/null
cmake --build $out -j"$(nproc)" --target bench_smallervgg >/dev/null
g++ -std=c++17 -O3 -march=native -DNDEBUG benchmarks/dlib_smallervgg.cpp -o $out/dlib_smallervgg $(pkg-config --cflags --libs dlib-1) -lopenblas

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; $(date -u +%F); $threads threads, $steps steps"
run() { echo "== $1" >&2; shift; "$@" | tee /dev/stderr; }
tnet1=$(run "tnet, 1 thread" $out/benchmarks/bench_smallervgg --threads 1 --steps "$steps")
tnet=$(run "tnet" $out/benchmarks/bench_smallervgg --threads "$threads" --steps "$steps")
torch=$(run "PyTorch" /usr/bin/python3 benchmarks/torch_smallervgg.py --threads "$threads" --steps "$steps")
dlib=$(OPENBLAS_NUM_THREADS=$threads run "dlib" $out/dlib_smallervgg --steps "$steps")

get() { echo "$1" | awk -v k="$2" '$1 == k { print $2 }'; }
echo
printf '| %-24s | %10s | %10s | %10s | %14s | %13s |\n' figure tnet PyTorch dlib "tnet / PyTorch" "tnet / dlib"
printf '|%s|%s|%s|%s|%s|%s|\n' -------------------------- ------------ ------------ ------------ ---------------- ---------------
for k in train_images_per_s infer_images_per_s infer_latency_batch1_ms peak_rss_mb; do
  a=$(get "$tnet" $k) b=$(get "$torch" $k) c=$(get "$dlib" $k)
  printf '| %-24s | %10s | %10s | %10s | %14s | %13s |\n' "$k" "$a" "$b" "$c" \
    "$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')" "$(awk -v a="$a" -v c="$c" 'BEGIN { printf "%.2f", a / c }')"
done
echo
echo "tnet training scales $(awk -v a="$(get "$tnet" train_images_per_s)" -v b="$(get "$tnet1" train_images_per_s)" 'BEGIN { printf "%.2f", a / b }')x from 1 to $threads threads;" \
  "$(get "$tnet" train_gflops) effective GFLOP/s (direct-convolution FLOPs), $(get "$tnet" train_percent_of_roofline) % of the $(get "$tnet" gemm_roofline_gflops) GFLOP/s GEMM roofline"
