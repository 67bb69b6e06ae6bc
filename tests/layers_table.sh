#!/usr/bin/env bash
# benchmarks/layers.sh's tables from stand-in runs (no real benchmark runs): tnet's steps as rows,
# PyTorch's layers summed into them by index, a layer no step holds as its own row, the sums,
# GFLOP/s and % of the roofline (backward counting the first layer's FLOPs once, the others'
# twice), the ratio, and the exit status (1 when a run fails or the FLOP counts disagree, 2 for a
# wrong setting).
#   bash tests/layers_table.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export STUB_DIR=$work
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# tnet: a 4-layer stand-in (0 convolution, 1 ReLU, 2 dense, 3 sigmoid); roofline 400 GFLOP/s;
# 0.8 training GFLOP per image (3.2 GFLOP per batch of 32 in layer 0, counted twice; 6.4 in
# layer 2, three times). Its training plan holds no step for layer 3.
mkdir -p "$work/build/benchmarks"
cat >"$work/build/benchmarks/bench_smallervgg" <<'EOF'
#!/usr/bin/env bash
[ -n "${STUB_TNET_FAIL:-}" ] && { echo "stub tnet: failing" >&2; exit 3; }
batch=
while [ $# -gt 0 ]; do [ "$1" = --batch ] && batch=$2; shift; done
printf '%s\n' "gemm_kernel avx2" "threads 2" "batch $batch" "train_images_per_s 200" "infer_images_per_s 1000" \
  "infer_latency_batch1_ms 0.75" "gemm_roofline_gflops 400" "train_gflop_per_image ${STUB_GFLOP:-0.8}"
printf 'step %-32s forward_ms %8.3f backward_ms %8.3f forward_flops %.0f\n' 0+1.activation_in_epilogue 10 20 $((batch * 100000000)) \
  2.layer 40 80 $((batch * 200000000))
if [ "$batch" = 32 ]; then
  printf 'infer_step %-26s ms %8.3f forward_flops %.0f\n' 0+1+2.activation_in_epilogue 20 9600000000 3.layer 2 "${STUB_STEP_FLOPS:-0}"
else
  printf 'infer_step %-26s ms %8.3f forward_flops %.0f\n' 0+1+2.activation_in_epilogue 0.5 300000000 3.layer 0.05 0
fi
EOF
# PyTorch: per layer forward and backward ms and forward FLOPs per batch.
cat >"$work/python" <<'EOF'
#!/usr/bin/env bash
mode= batch=
while [ $# -gt 0 ]; do case $1 in --mode) mode=$2 ;; --batch) batch=$2 ;; esac; shift; done
printf '%s\n' "torch 2.99" "net smallervgg" "mode $mode" "threads 2" "batch $batch" "steps 1"
case $mode-$batch in
  train-32) printf '%s\n' "layer 0 Conv2d forward_ms 20 backward_ms 30 forward_flops 3200000000" \
    "layer 1 ReLU forward_ms 5 backward_ms 5 forward_flops 0" "layer 2 Linear forward_ms 40 backward_ms 160 forward_flops 6400000000" \
    "layer 3 BCEWithLogitsLoss forward_ms 1 backward_ms 1 forward_flops 0" "other_backward_ms 0.5" "profiled_ms 262.5" "step_ms 250" ;;
  infer-32) printf '%s\n' "layer 0 Conv2d forward_ms 10 backward_ms 0 forward_flops 3200000000" \
    "layer 1 ReLU forward_ms 2 backward_ms 0 forward_flops 0" "layer 2 Linear forward_ms 20 backward_ms 0 forward_flops 6400000000" \
    "layer 3 Sigmoid forward_ms 1 backward_ms 0 forward_flops 0" "other_backward_ms 0" "profiled_ms 33" "step_ms 31" ;;
  infer-1) printf '%s\n' "layer 0 Conv2d forward_ms 0.3 backward_ms 0 forward_flops 100000000" \
    "layer 1 ReLU forward_ms 0.1 backward_ms 0 forward_flops 0" "layer 2 Linear forward_ms 0.2 backward_ms 0 forward_flops 200000000" \
    "layer 3 Sigmoid forward_ms 0.01 backward_ms 0 forward_flops 0" "other_backward_ms 0" "profiled_ms 0.61" "step_ms 0.7" ;;
  *) exit 9 ;;
esac
EOF
chmod +x "$work/build/benchmarks/bench_smallervgg" "$work/python"
settings=(BUILD_DIR="$work/build" PYTHON="$work/python" THREADS=2 STEPS=1 LATENCY_RUNS=4)

env "${settings[@]}" LOG_DIR="$work/logs" bash "$repo/benchmarks/layers.sh" >"$work/table" 2>"$work/progress" ||
  fail "layers.sh exited $? with stand-ins that work: $(cat "$work/progress")"
expect() { grep -qF -- "$1" "$work/table" || fail "no '$1' in the table:"$'\n'"$(cat "$work/table")"; }
# Training: layer 0's backward counts its FLOPs once (3.2 GFLOP in 20 ms: 160 GFLOP/s, 40 % of
# 400), layer 2's twice (12.8 GFLOP in 80 ms).
expect "| 0+1.activation_in_epilogue | Conv2d+ReLU | 3200.0 | 10.000 | 20.000 | 25.000 | 35.000 | 2.00x | 320.0 (80%) | 160.0 (40%) | 128.0 (32%) | 91.4 (23%) |"
expect "| 2.layer | Linear | 6400.0 | 40.000 | 80.000 | 40.000 | 160.000 | 1.67x | 160.0 (40%) | 160.0 (40%) | 160.0 (40%) | 80.0 (20%) |"
expect "| (no tnet step) 3 | BCEWithLogitsLoss | 0.0 | - | - | 1.000 | 1.000 | - | - | - | - | - |"
expect "| **sum** | | 9600.0 | **50.000** | **100.000** | **66.000** | **196.000** | 1.75x | 192.0 (48%) | 160.0 (40%) | 145.5 (36%) | 81.6 (20%) |"
expect "Whole steps, measured apart: tnet 160.000 ms (with its Adam step); PyTorch 250.000 ms without the profiler (forward and backward), 262.500 ms profiled, of which 0.500 ms"
# Inference at batch 32 and 1: an effective rate above the roofline shows as above 100 %.
expect "| 0+1+2.activation_in_epilogue | Conv2d+ReLU+Linear | 9600.0 | 20.000 | 32.000 | 1.60x | 480.0 (120%) | 300.0 (75%) |"
expect "| 3.layer | Sigmoid | 0.0 | 2.000 | 1.000 | 0.50x | - | - |"
expect "| **sum** | | 9600.0 | **22.000** | **33.000** | 1.50x | 436.4 (109%) | 290.9 (73%) |"
expect "| 0+1+2.activation_in_epilogue | Conv2d+ReLU+Linear | 300.0 | 0.500 | 0.600 | 1.20x | 600.0 (150%) | 500.0 (125%) |"
expect "| 3.layer | Sigmoid | 0.0 | 0.050 | 0.010 | 0.20x | - | - |"
expect "Whole passes, measured apart: tnet 32.000 ms (the batch); PyTorch 31.000 ms without the profiler, 33.000 ms profiled."
expect "Whole passes, measured apart: tnet 0.750 ms (median latency); PyTorch 0.700 ms without the profiler, 0.610 ms profiled."
expect "- PyTorch 2.99 eager fp32, channels-last ($work/python), times from torch.profiler"
expect "gemm kernel avx2"
[ "$(grep -c '^### ' "$work/table")" = 3 ] || fail "not three tables: $(cat "$work/table")"
# RUN=0 prints the same tables from the runs' output, running nothing (neither program is there).
RUN=0 LOG_DIR="$work/logs" BUILD_DIR="$work/no-build" PYTHON="$work/no-such-python" bash "$repo/benchmarks/layers.sh" >"$work/again" 2>"$work/err" ||
  fail "RUN=0 exited $?: $(cat "$work/err")"
cmp -s "$work/table" "$work/again" || fail "RUN=0 printed other tables: $(diff "$work/table" "$work/again")"

# A run failing, or the FLOP counts disagreeing (in all, or of a step), fails it; a wrong setting
# is a usage error.
status=0
env "${settings[@]}" LOG_DIR="$work/logs2" STUB_TNET_FAIL=1 bash "$repo/benchmarks/layers.sh" >/dev/null 2>"$work/err" || status=$?
[ "$status" = 1 ] && grep -q "tnet, batch 32 failed" "$work/err" || fail "tnet failing: exit $status, $(cat "$work/err")"
status=0
env "${settings[@]}" LOG_DIR="$work/logs3" STUB_GFLOP=0.9 bash "$repo/benchmarks/layers.sh" >/dev/null 2>"$work/err" || status=$?
[ "$status" = 1 ] && grep -q "not the same network" "$work/err" || fail "FLOPs disagreeing: exit $status, $(cat "$work/err")"
status=0
env "${settings[@]}" LOG_DIR="$work/logs5" STUB_STEP_FLOPS=1000000 bash "$repo/benchmarks/layers.sh" >/dev/null 2>"$work/err" || status=$?
[ "$status" = 1 ] && grep -qF "count differently, not the same layers: 3.layer (tnet 1000000, PyTorch 0)" "$work/err" ||
  fail "a step's FLOPs disagreeing: exit $status, $(cat "$work/err")"
for wrong in NET=resnet18 THREADS=0 STEPS=x PYTHON="$work/no-such-python" BUILD_DIR="$work/no-build" RUN=2; do
  status=0
  env "${settings[@]}" LOG_DIR="$work/logs4" "$wrong" bash "$repo/benchmarks/layers.sh" >/dev/null 2>"$work/err" || status=$?
  [ "$status" = 2 ] && grep -q "benchmarks/layers.sh: " "$work/err" || fail "$wrong: exit $status, $(cat "$work/err")"
done
status=0
RUN=0 LOG_DIR="$work/none" bash "$repo/benchmarks/layers.sh" >/dev/null 2>"$work/err" || status=$?
[ "$status" = 2 ] && grep -q "RUN=0 needs LOG_DIR" "$work/err" || fail "RUN=0 without runs: exit $status, $(cat "$work/err")"
echo "layers_table: ok"
