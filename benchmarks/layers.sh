#!/usr/bin/env bash
# Where the time goes: SmallerVGGNet layer by layer in tnet (bench_smallervgg --layers) and in
# PyTorch 2.x eager fp32 channels-last (benchmarks/peers/torch_layers.py, torch.profiler), side by
# side, one Markdown table per mode: training at batch 32 (forward and backward), inference at
# batch 32, and batch 1. tnet's rows are the steps of its plans (a layer, or the layers a rule
# fuses: "0+1.activation_in_epilogue" is layers 0 and 1); PyTorch's layers, which have the same
# indices, are summed into the same rows. Each row's GFLOP/s counts the FLOPs of its convolution or
# dense layer (2 x multiply-adds; backward twice the forward's, the first layer's once: it has no
# input gradient) and its % of peak divides them by bench_smallervgg's gemm_roofline_gflops
# (tnet::gemm on 1024-cubed products at the same thread count).
#   bash benchmarks/layers.sh
# Settings (environment):
#   NET=smallervgg   the network (the one whose layers tnet and PyTorch index alike)
#   THREADS=2        threads of both
#   STEPS=10         tnet's training steps (its steps are timed over STEPS/2 repeats) and
#                    PyTorch's profiled steps (medians)
#   LATENCY_RUNS=200 tnet's inference steps are each the median of LATENCY_RUNS/4 runs (at least 20)
#   BUILD_DIR=build-bench   a build with benchmarks/bench_smallervgg
#                    (`BUILD=only bash benchmarks/compare.sh` makes one)
#   PYTHON           the peers' Python (default .cache/peers/bin/python, which
#                    `bash benchmarks/peers/setup.sh` makes), with PyTorch 2.x
#   RUN_TIMEOUT=1200 seconds one run may take before it counts as failed
#   LOG_DIR          where each run's output goes (default BUILD_DIR/layers-logs/DATE-TIME)
#   RUN=1            RUN=0 runs nothing: it prints the tables again from LOG_DIR's runs
# Exits 1 when a run fails or the two disagree on the FLOPs (the network's, or a step's: not the
# same layers), 2 for a wrong setting.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
me=benchmarks/layers.sh
die() {
  echo "$me: $2" >&2
  exit "$1"
}
count() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die 2 "$1 needs a positive integer, got '$2'"; }

net=${NET:-smallervgg} threads=${THREADS:-2} steps=${STEPS:-10} latency_runs=${LATENCY_RUNS:-200}
out=${BUILD_DIR:-build-bench} run_timeout=${RUN_TIMEOUT:-1200}
[ "$net" = smallervgg ] || die 2 "NET takes smallervgg (the network whose layers tnet and PyTorch index alike), got '$net'"
count THREADS "$threads"
count STEPS "$steps"
count LATENCY_RUNS "$latency_runs"
count RUN_TIMEOUT "$run_timeout"
case ${RUN:-1} in 1) ;; 0) [ -n "${LOG_DIR:-}" ] && [ -f "$LOG_DIR/header.md" ] ||
  die 2 "RUN=0 needs LOG_DIR set to the directory of an earlier run (with its header.md), got '${LOG_DIR:-}'" ;;
  *) die 2 "RUN takes 1 (run, then print the tables) or 0 (print LOG_DIR's again), got '$RUN'" ;; esac
bench=$out/benchmarks/bench_smallervgg
[ "${RUN:-1}" = 0 ] || [ -x "$bench" ] || die 2 "no $bench: build it (cmake --build $out --target bench_smallervgg, or BUILD=only bash benchmarks/compare.sh) or point BUILD_DIR at a build that has it"
if [ "${RUN:-1}" = 0 ]; then
  :
elif [ -n "${PYTHON:-}" ]; then
  python=$PYTHON
  command -v "$python" >/dev/null || die 2 "PYTHON=$python: no such program"
else
  python=.cache/peers/bin/python
  [ -x $python ] || die 2 "no peers' environment at .cache/peers: make it with 'bash benchmarks/peers/setup.sh', or set PYTHON to a Python with PyTorch 2.x"
fi
logs=${LOG_DIR:-$out/layers-logs/$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$logs" || die 1 "cannot make $logs"

# run NAME FILE COMMAND...: one run, its output to FILE, or exit 1 naming its error output.
run() {
  local name=$1 file=$2
  shift 2
  echo "== $name" >&2
  timeout "$run_timeout" env OMP_NUM_THREADS="$threads" "$@" >"$file" 2>"$file.err" ||
    die 1 "$name failed (exit $?): $file.err"
}
value() { awk -v k="$2" '$1 == k { print $2; exit }' "$1"; }
if [ "${RUN:-1}" = 1 ]; then
  start=$SECONDS
  run "tnet, batch 32" "$logs/tnet-32" "$bench" --net "$net" --threads "$threads" --batch 32 --steps "$steps" \
    --latency-runs "$latency_runs" --layers
  run "tnet, batch 1" "$logs/tnet-1" "$bench" --net "$net" --threads "$threads" --batch 1 --steps "$steps" \
    --latency-runs "$latency_runs" --layers
  torch_layers=(benchmarks/peers/torch_layers.py --net "$net" --threads "$threads" --steps "$steps")
  run "PyTorch training, batch 32" "$logs/torch-train-32" "$python" "${torch_layers[@]}" --mode train --batch 32
  run "PyTorch inference, batch 32" "$logs/torch-infer-32" "$python" "${torch_layers[@]}" --mode infer --batch 32
  run "PyTorch inference, batch 1" "$logs/torch-infer-1" "$python" "${torch_layers[@]}" --mode infer --batch 1
  elapsed=$((SECONDS - start))
  # What the tables do not show: the machine, the builds, the command.
  flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -x -E 'avx2|fma|avx512f|avx512_vnni|avx512_bf16|avx512_fp16|amx_tile|amx_bf16|amx_int8|avx_vnni' | tr '\n' ' ')
  compiler=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$out/CMakeCache.txt" 2>/dev/null)
  [ -n "$compiler" ] && compiler=$("$compiler" --version 2>/dev/null | head -1)
  {
    echo "- machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo);" \
      "$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"), Linux $(uname -r); $(date -u '+%F %H:%M') UTC"
    echo "- CPU flags: ${flags:-none of avx2, avx512f, avx512_bf16, amx}"
    echo "- tnet $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo " (uncommitted changes)"):" \
      "$bench ($(sed -n 's/^TNET_NATIVE:BOOL=//p' "$out/CMakeCache.txt" 2>/dev/null | grep -q ON && echo "native, -march=native" || echo "portable")" \
      "build${compiler:+, $compiler}), gemm kernel $(value "$logs/tnet-32" gemm_kernel)"
    echo "- PyTorch $(value "$logs/torch-train-32" torch) eager fp32, channels-last ($python), times from torch.profiler"
    echo "- command: \`NET=$net THREADS=$threads STEPS=$steps LATENCY_RUNS=$latency_runs bash $me\` ($elapsed s); raw output in $logs"
  } >"$logs/header.md"
fi
threads=$(value "$logs/tnet-32" threads)
roofline=$(value "$logs/tnet-32" gemm_roofline_gflops)
[ -n "$roofline" ] || die 1 "no gemm_roofline_gflops in $logs/tnet-32"
for f in tnet-32 tnet-1; do grep -q '^infer_step ' "$logs/$f" || die 1 "no infer_step lines in $logs/$f (a bench_smallervgg without --layers?)"; done
grep -q '^step ' "$logs/tnet-32" || die 1 "no step lines in $logs/tnet-32"
for f in torch-train-32 torch-infer-32 torch-infer-1; do grep -q '^layer ' "$logs/$f" || die 1 "no layer lines in $logs/$f"; done

# Both count the FLOPs of the convolutions and dense layers; a difference means the two networks
# differ, and the rows would not be the same layers.
tnet_flops=$(value "$logs/tnet-32" train_gflop_per_image)
torch_flops=$(awk '$1 == "layer" { f += $9 * ($2 == 0 ? 2 : 3) } END { printf "%.6f", f / 32 / 1e9 }' "$logs/torch-train-32")
awk -v a="$tnet_flops" -v b="$torch_flops" 'BEGIN { exit !(a > 0 && (a - b) ^ 2 <= (1e-3 * a) ^ 2) }' ||
  die 1 "tnet counts ${tnet_flops:-no} training GFLOP per image, PyTorch's layers $torch_flops: not the same network"
# Step by step where tnet prints each step's FLOPs (forward_flops, per batch): PyTorch's layers of
# the same indices count as many.
for pair in "tnet-32 torch-train-32 step" "tnet-32 torch-infer-32 infer_step" "tnet-1 torch-infer-1 infer_step"; do
  read -r t p kind <<<"$pair"
  differ=$(awk -v kind="$kind" 'FNR == 1 { file++ }
    file == 1 && $1 == "layer" { flops[$2] = $9 }
    file == 2 && $1 == kind && $(NF - 1) == "forward_flops" {
      split($2, parts, "."); n = split(parts[1], idx, "+"); f = 0
      for (i = 1; i <= n; ++i) f += flops[idx[i]]
      if ((f - $NF) ^ 2 > (1e-3 * $NF) ^ 2 + 1) printf "%s (tnet %.0f, PyTorch %.0f) ", $2, $NF, f
    }' "$logs/$p" "$logs/$t")
  [ -z "$differ" ] || die 1 "steps whose FLOPs tnet ($logs/$t) and PyTorch ($logs/$p) count differently, not the same layers: $differ"
done

# table TNET TORCH KIND BATCH: the Markdown rows of one mode (KIND step: training, infer_step:
# inference), tnet's steps in order, then any PyTorch layer no step holds.
table() {
  awk -v kind="$3" -v batch="$4" -v peak="$roofline" '
    function ms(v) { return v == "" ? "-" : sprintf("%.3f", v) }
    function rate(flops, t) {
      if (flops == 0 || t == "" || t <= 0) return "-"
      return sprintf("%.1f (%.0f%%)", flops / t / 1e6, 100 * flops / t / 1e6 / peak)
    }
    function ratio(p, t) { return p == "" || t == "" || t <= 0 ? "-" : sprintf("%.2fx", p / t) }
    function mflop(f) { return f >= 1e6 || f == 0 ? sprintf("%.1f", f / 1e6) : sprintf("%.3g", f / 1e6) }
    # A row: its layers (indices in `list`), their kinds, FLOPs and PyTorch times, then the cells.
    function row(label, list, tf, tb,    n, idx, i, k, names, ff, bf, pf, pb, have) {
      n = split(list, idx, "+")
      names = ""; ff = 0; bf = 0; pf = 0; pb = 0; have = 0
      for (i = 1; i <= n; ++i) {
        k = idx[i]
        names = names (i > 1 ? "+" : "") (k in kinds ? kinds[k] : "?")
        if (k in fwd) { pf += fwd[k]; pb += bwd[k]; have = 1; used[k] = 1 }
        ff += flops[k]; bf += flops[k] * (k == 0 ? 1 : 2)
      }
      if (!have) { pf = ""; pb = "" }
      if (kind == "step") {
        sum_tf += tf; sum_tb += tb; sum_pf += pf; sum_pb += pb; sum_ff += ff; sum_bf += bf
        printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", label, names, mflop(ff),
          ms(tf), ms(tb), ms(pf), ms(pb), ratio(pf + pb, tf + tb),
          rate(ff, tf), rate(bf, tb), rate(ff, pf), rate(bf, pb)
      } else {
        sum_tf += tf; sum_pf += pf; sum_ff += ff
        printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", label, names, mflop(ff), ms(tf), ms(pf), ratio(pf, tf),
          rate(ff, tf), rate(ff, pf)
      }
    }
    FNR == 1 { file++ }
    file == 1 && $1 == kind { steps[++nsteps] = $2; tf_of[nsteps] = $4; tb_of[nsteps] = kind == "step" ? $6 : "" }
    file == 2 && $1 == "layer" { kinds[$2] = $3; fwd[$2] = $5; bwd[$2] = $7; flops[$2] = $9; order[++nlayers] = $2 }
    END {
      for (s = 1; s <= nsteps; ++s) {
        split(steps[s], parts, ".")
        row(steps[s], parts[1], tf_of[s], tb_of[s])
      }
      for (l = 1; l <= nlayers; ++l)
        if (!(order[l] in used)) row("(no tnet step) " order[l], order[l], "", "")
      if (kind == "step")
        printf "| **sum** | | %s | **%.3f** | **%.3f** | **%.3f** | **%.3f** | %s | %s | %s | %s | %s |\n", mflop(sum_ff),
          sum_tf, sum_tb, sum_pf, sum_pb, ratio(sum_pf + sum_pb, sum_tf + sum_tb),
          rate(sum_ff, sum_tf), rate(sum_bf, sum_tb), rate(sum_ff, sum_pf), rate(sum_bf, sum_pb)
      else
        printf "| **sum** | | %s | **%.3f** | **%.3f** | %s | %s | %s |\n", mflop(sum_ff), sum_tf, sum_pf,
          ratio(sum_pf, sum_tf), rate(sum_ff, sum_tf), rate(sum_ff, sum_pf)
    }' "$1" "$2"
}
fmt() { awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }'; }
# ms FILE KEY: a millisecond figure of a run, 3 decimals ("-" when it has none).
ms() { local v; v=$(value "$1" "$2"); [ -n "$v" ] && fmt "$v" 3 || echo -; }
# ms_of FILE KEY BATCH: milliseconds per batch from an images/s figure.
ms_of() { awk -v v="$(value "$1" "$2")" -v b="$3" 'BEGIN { if (v > 0) printf "%.3f", 1000 * b / v; else printf "-" }'; }

{
  echo "## Where the time goes: SmallerVGGNet layer by layer, $threads thread$([ "$threads" = 1 ] || echo s)"
  echo
  cat "$logs/header.md"
  echo "- peak: tnet::gemm's $(fmt "$roofline" 1) GFLOP/s at $threads thread$([ "$threads" = 1 ] || echo s) (gemm_roofline_gflops); GFLOP/s count" \
    "the convolutions' and dense layers' FLOPs as a direct convolution does them: tnet's Winograd convolutions do fewer, so" \
    "their figure is an effective one and may pass 100 %"
  echo "- ms and MFLOP per batch; PyTorch / tnet: PyTorch's time over tnet's (above 1 tnet is faster); a row is one step of tnet's plan," \
    "PyTorch's same layers summed; layer $(awk '$1 == "layer" { k = $2 } END { print k }' "$logs/torch-train-32") is the sigmoid (in training PyTorch's BCEWithLogitsLoss, which fuses it);" \
    "each row is timed apart (a median; tnet's training steps: the mean of STEPS/2 repeats), so on a busy machine the rows can sum to less than a whole pass"
  echo
  echo "### Training, batch 32 (forward and backward; the optimizer step is in no row)"
  echo
  echo "| tnet step | layers | MFLOP fwd | tnet fwd ms | tnet bwd ms | PyTorch fwd ms | PyTorch bwd ms | PyTorch / tnet | tnet fwd GFLOP/s (% peak) | tnet bwd GFLOP/s (% peak) | PyTorch fwd GFLOP/s (% peak) | PyTorch bwd GFLOP/s (% peak) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  table "$logs/tnet-32" "$logs/torch-train-32" step 32
  echo
  echo "Whole steps, measured apart: tnet $(ms_of "$logs/tnet-32" train_images_per_s 32) ms (with its Adam step);" \
    "PyTorch $(ms "$logs/torch-train-32" step_ms) ms without the profiler (forward and backward), $(ms "$logs/torch-train-32" profiled_ms) ms" \
    "profiled, of which $(ms "$logs/torch-train-32" other_backward_ms) ms in autograd nodes of no layer (AccumulateGrad)."
  for b in 32 1; do
    echo
    echo "### Inference, batch $b"
    echo
    echo "| tnet step | layers | MFLOP | tnet ms | PyTorch ms | PyTorch / tnet | tnet GFLOP/s (% peak) | PyTorch GFLOP/s (% peak) |"
    echo "|---|---|---|---|---|---|---|---|"
    table "$logs/tnet-$b" "$logs/torch-infer-$b" infer_step "$b"
    echo
    if [ "$b" = 1 ]; then whole=$(ms "$logs/tnet-1" infer_latency_batch1_ms) what="median latency"
    else whole=$(ms_of "$logs/tnet-32" infer_images_per_s 32) what="the batch"; fi
    echo "Whole passes, measured apart: tnet ${whole:--} ms ($what); PyTorch $(ms "$logs/torch-infer-$b" step_ms) ms without the profiler," \
      "$(ms "$logs/torch-infer-$b" profiled_ms) ms profiled."
  done
} | tee "$logs/report.md"
