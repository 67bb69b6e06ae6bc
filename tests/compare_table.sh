#!/usr/bin/env bash
# benchmarks/compare.sh's table from stand-in runners (no real benchmark runs): the median of the
# rounds, each peer's ratio to tnet, the goals, rounds alternating, a peer that fails or is not
# installed shown so, and the exit status (1 when tnet fails, 2 for a wrong setting).
#   bash tests/compare_table.sh
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export STUB_DIR=$work
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# tnet: 100, 300 and 200 training images/s in rounds 1 to 3 (median 200); writes --onnx's file.
mkdir -p "$work/build/benchmarks"
cat >"$work/build/benchmarks/bench_smallervgg" <<'EOF'
#!/usr/bin/env bash
[ "$1" = --list-nets ] && { echo smallervgg; exit 0; }
[ -n "${STUB_TNET_FAIL:-}" ] && { echo "stub tnet: failing" >&2; exit 3; }
n=$(( $(cat "$STUB_DIR/tnet_runs" 2>/dev/null || echo 0) + 1 ))
echo $n >"$STUB_DIR/tnet_runs"
while [ $# -gt 0 ]; do [ "$1" = --onnx ] && : >"$2"; shift; done
train=(0 100 300 200)
printf '%s\n' "train_images_per_s ${train[n]}" "infer_images_per_s 1000" "infer_latency_batch1_ms 2" \
  "infer_latency_batch1_p99_ms 4" "infer_images_per_s_bf16 1200" "infer_latency_batch1_ms_bf16 1.5" \
  "infer_latency_batch1_p99_ms_bf16 3" "bf16_convolutions 1" "peak_rss_mb 400"
EOF
# The peers' Python: torch and onnxruntime, no torchvision or openvino; torch.compile fails.
cat >"$work/python" <<'EOF'
#!/usr/bin/env bash
case $1 in
  -) cat >/dev/null; printf '%s\n' "python 3.0" "torch 2.99" "torchvision -" "onnxruntime 1.0" "openvino -" "numpy 1.0" ;;
  */torch_bench.py)
    case " $* " in
      *" eager "*) printf '%s\n' "train_images_per_s 50" "infer_images_per_s 250" "infer_latency_batch1_ms 4" \
        "infer_latency_batch1_p99_ms 8" "peak_rss_mb 1000" ;;
      *" bf16 "*) printf '%s\n' "train_images_per_s 100" "infer_images_per_s 500" "infer_latency_batch1_ms 2.5" \
        "infer_latency_batch1_p99_ms 5" "peak_rss_mb 900" ;;
      *) echo "stub torch: no compiler" >&2; exit 1 ;;
    esac ;;
  */onnx_bench.py)
    printf '%s\n' "precision f32" "infer_images_per_s 800" "infer_latency_batch1_ms 2.4" "infer_latency_batch1_p99_ms 3" "peak_rss_mb 250" ;;
  *) exit 9 ;;
esac
EOF
chmod +x "$work/build/benchmarks/bench_smallervgg" "$work/python"
settings=(BUILD=0 BUILD_DIR="$work/build" PYTHON="$work/python" THREADS=2 ROUNDS=3 STEPS=1 LATENCY_RUNS=3)

env "${settings[@]}" LOG_DIR="$work/logs" bash "$repo/benchmarks/compare.sh" >"$work/table" 2>"$work/progress" ||
  fail "compare.sh exited $? with stand-ins that work: $(cat "$work/progress")"
expect() { grep -qF -- "$1" "$work/table" || fail "no '$1' in the table:"$'\n'"$(cat "$work/table")"; }
expect "| **tnet** fp32 | **200.0** | **1000.0** | **2.00** | **4.00** | **400** |"
expect "| tnet bf16 | - | 1200.0 (0.83x) | 1.50 (1.33x) | 3.00 (1.33x) | - |"
expect "| PyTorch eager fp32 | 50.0 (4.00x) | 250.0 (4.00x) | 4.00 (0.50x) | 8.00 (0.50x) | 1000 (0.40x) |"
expect "| PyTorch bf16 autocast | 100.0 (2.00x) | 500.0 (2.00x) | 2.50 (0.80x) | 5.00 (0.80x) | 900 (0.44x) |"
expect "| PyTorch torch.compile fp32 | failed (see $work/logs) |"
expect "| ONNX Runtime | - | 800.0 (1.25x) | 2.40 (0.83x) | 3.00 (1.33x) | 250 (1.60x) |"
expect "| OpenVINO f32 | not installed |"
expect "| OpenVINO default | not installed |"
expect "| dlib (batch 1: the mean of 4 x STEPS) | not installed |"
expect "- training: tnet / PyTorch eager fp32 = 4.00x (goal >= 3x): met"
expect "- training: tnet / PyTorch bf16 autocast = 2.00x (goal >= 1.5x): met"
expect "- inference, batch 32, fastest fp32 peer: tnet / ONNX Runtime = 1.25x (goal >= 1.5x): **not met**"
expect "- batch-1 latency (median), fastest fp32 peer: tnet / ONNX Runtime = 0.83x (goal <= 0.8x): **not met**"
expect "- inference, batch 32, tnet's bf16 path, fastest bf16 peer: tnet / PyTorch bf16 autocast = 2.40x (goal >= 1x): met"
expect "- batch-1 latency (median) of tnet's bf16 path, fastest bf16 peer: tnet / PyTorch bf16 autocast = 0.60x (goal <= 1x): met"
expect "Python 3.0 ($work/python): PyTorch 2.99, torchvision -, ONNX Runtime 1.0, OpenVINO -"
# Rounds alternate: tnet, its peers, tnet again.
order=$(grep -o '^== [^:]*: smallervgg, 2 threads, round [0-9]' "$work/progress" | sed 's/: smallervgg, 2 threads, round / /' | tr '\n' '|')
[ "$order" = "$(for r in 1 2 3; do printf '== %s %s|' tnet $r "PyTorch eager" $r "PyTorch bf16" $r "PyTorch compile" $r "ONNX Runtime" $r; done)" ] ||
  fail "runs out of order: $order"
[ "$(cat "$work/tnet_runs")" = 3 ] || fail "tnet ran $(cat "$work/tnet_runs") times, not 3"

# tnet failing fails the comparison; a wrong setting is a usage error.
status=0
env "${settings[@]}" LOG_DIR="$work/logs2" STUB_TNET_FAIL=1 bash "$repo/benchmarks/compare.sh" >/dev/null 2>"$work/err" || status=$?
[ "$status" = 1 ] && grep -q "tnet failed" "$work/err" || fail "tnet failing: exit $status, $(cat "$work/err")"
for wrong in ROUNDS=0 NETS=vgg16 PEERS=tensorflow PYTHON="$work/no-such-python" BUILD=2; do
  status=0
  env "${settings[@]}" LOG_DIR="$work/logs3" "$wrong" bash "$repo/benchmarks/compare.sh" >/dev/null 2>"$work/err" || status=$?
  [ "$status" = 2 ] && grep -q "benchmarks/compare.sh: " "$work/err" || fail "$wrong: exit $status, $(cat "$work/err")"
done
echo "compare_table: ok"
