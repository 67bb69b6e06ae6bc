#!/usr/bin/env bash
# tnet beside its peers, one after another on this machine, in one table per network and thread
# count: tnet (bench_smallervgg, fp32, and Precision::bf16: its dense kernels in bfloat16, and its
# convolutions' products that Winograd's do not take where the CPU has AVX512_BF16); PyTorch 2.x eager fp32,
# bf16 autocast and torch.compile, channels-last (benchmarks/peers/torch_bench.py); ONNX Runtime
# (all graph optimisations) and OpenVINO (f32, and its default precision) on tnet's own ONNX export
# (benchmarks/peers/onnx_bench.py); dlib (benchmarks/dlib_smallervgg.cpp) where libdlib-dev is
# installed. Every runner in its own process. ROUNDS alternating rounds (tnet, the peers, tnet, the
# peers, ...); the table holds each figure's median over the rounds and each peer's ratio to tnet,
# then the goals of issue 27 against those medians.
#   bash benchmarks/compare.sh
# Settings (environment):
#   THREADS       thread counts, e.g. "2 16" (default: 2, and the machine's count where it has more)
#   ROUNDS=3      rounds of every runner
#   STEPS=20      timed training steps and batches of inference (batch 32), after a warm-up
#   LATENCY_RUNS=1000  single-image predictions timed one by one: median and 99th percentile
#   NETS          networks, of smallervgg, resnet18, mobilenetv2 (default: those tnet has, as
#                 bench_smallervgg --list-nets names them; one tnet lacks runs in the peers alone)
#   PEERS         the peers to run (default all): torch-eager torch-bf16 torch-compile ort
#                 openvino-f32 openvino dlib
#   PYTHON        the peers' Python (default .cache/peers/bin/python, which
#                 `bash benchmarks/peers/setup.sh` makes); PYTHON=python3 uses the system's, and a
#                 peer it lacks is shown as not installed
#   BUILD=1       configure and build bench_smallervgg (and dlib_smallervgg) into BUILD_DIR, then
#                 run; BUILD=only builds and stops; BUILD=0 runs what BUILD_DIR holds already
#   BUILD_DIR=build-bench   NATIVE=1 (-march=native; NATIVE=0 for the portable build)
#   STATIC=0      STATIC=1 links bench_smallervgg statically, to carry to a machine without
#                 tnet's libraries: there, BUILD=0 with BUILD_DIR holding
#                 benchmarks/bench_smallervgg (and CMakeCache.txt, for the header)
#   PEER_TIMEOUT=1200       seconds one run may take before it counts as failed
#   LOG_DIR       where each run's output goes (default BUILD_DIR/compare-logs/DATE-TIME)
# Exits non-zero when tnet fails (or a setting is wrong: 2); a peer that fails or is not installed
# is shown so in the table.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
me=benchmarks/compare.sh
die() {
  echo "$me: $2" >&2
  exit "$1"
}
count() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die 2 "$1 needs a positive integer, got '$2'"; }

cores=$(nproc)
threads_list=${THREADS:-2 $([ "$cores" -gt 2 ] && echo "$cores")}
rounds=${ROUNDS:-3} steps=${STEPS:-20} latency_runs=${LATENCY_RUNS:-1000} nets=${NETS:-}
build=${BUILD:-1} out=${BUILD_DIR:-build-bench} native=${NATIVE:-1} peer_timeout=${PEER_TIMEOUT:-1200}
for t in $threads_list; do count THREADS "$t"; done
count ROUNDS "$rounds"
count STEPS "$steps"
count LATENCY_RUNS "$latency_runs"
count PEER_TIMEOUT "$peer_timeout"
for net in $nets; do
  case $net in smallervgg | resnet18 | mobilenetv2) ;; *) die 2 "NETS takes smallervgg, resnet18 and mobilenetv2, got '$net'" ;; esac
done
all_peers="torch-eager torch-bf16 torch-compile ort openvino-f32 openvino dlib"
peers=${PEERS-$all_peers}
for peer in $peers; do
  [[ " $all_peers " == *" $peer "* ]] || die 2 "PEERS takes some of: $all_peers; got '$peer'"
done
case $build in 0 | 1 | only) ;; *) die 2 "BUILD takes 1 (build, then run), only (build) or 0 (run what $out holds), got '$build'" ;; esac
case ${STATIC:-0} in 0 | 1) ;; *) die 2 "STATIC takes 1 (link bench_smallervgg statically) or 0, got '$STATIC'" ;; esac
case $native in 0 | 1) ;; *) die 2 "NATIVE takes 1 (-march=native) or 0 (portable), got '$native'" ;; esac

# tnet (and dlib where it is installed), built apart from running them.
have_dlib=0
if [ "$build" != 0 ]; then
  march=$([ "$native" = 1 ] && echo ON || echo OFF)
  echo "== building bench_smallervgg in $out (TNET_NATIVE=$march)" >&2
  cmake -S . -B "$out" -DCMAKE_BUILD_TYPE=Release -DTNET_NATIVE="$march" -DTNET_BUILD_TESTS=OFF -DTNET_BUILD_EXAMPLES=OFF >/dev/null ||
    die 1 "configuring $out failed"
  cmake --build "$out" -j"$cores" --target bench_smallervgg >/dev/null || die 1 "building bench_smallervgg in $out failed"
  if [ "${STATIC:-0}" = 1 ]; then
    # Linked again as CMake links it, with -static and each shared library's archive (libgomp.a, ...).
    echo "== linking bench_smallervgg statically" >&2
    read -ra words <"$out/benchmarks/CMakeFiles/bench_smallervgg.dir/link.txt"
    link=("${words[0]}" -static)
    for word in "${words[@]:1}"; do
      [[ $word == *.so && -f ${word%.so}.a ]] && word=${word%.so}.a
      [[ $word == bench_smallervgg ]] && word=bench_static  # the output, after -o
      link+=("$word")
    done
    (cd "$out/benchmarks" && "${link[@]}" >bench_static.log 2>&1 && mv bench_static bench_smallervgg) ||
      die 1 "linking bench_smallervgg statically failed (a library without its archive?): $out/benchmarks/bench_static.log"
  fi
  if pkg-config --exists dlib-1 2>/dev/null; then
    echo "== building dlib_smallervgg" >&2
    # shellcheck disable=SC2046  # pkg-config's flags are words
    g++ -std=c++17 -O3 $([ "$native" = 1 ] && echo -march=native) -DNDEBUG benchmarks/dlib_smallervgg.cpp -o "$out/dlib_smallervgg" \
      $(pkg-config --cflags --libs dlib-1) -lopenblas >"$out/dlib_build.log" 2>&1 && have_dlib=1 ||
      echo "$me: building dlib_smallervgg failed (dlib is left out; why: $out/dlib_build.log)" >&2
  fi
else
  [ -x "$out/dlib_smallervgg" ] && have_dlib=1
fi
bench=$out/benchmarks/bench_smallervgg
[ -x "$bench" ] || die 1 "no $bench: build it (BUILD=1, the default) or point BUILD_DIR at a build that has it"
[ "$build" = only ] && exit 0
if [ -n "${PYTHON:-}" ]; then
  python=$PYTHON
  command -v "$python" >/dev/null || die 2 "PYTHON=$python: no such program"
else
  python=.cache/peers/bin/python
  [ -x $python ] || die 2 "no peers' environment at .cache/peers: make it with 'bash benchmarks/peers/setup.sh' (about 5 GB), or run with PYTHON=python3 to use the system's Python (the peers it lacks are shown as not installed)"
fi

tnet_nets=$("$bench" --list-nets) || die 1 "$bench --list-nets failed"
nets=${nets:-$(tr '\n' ' ' <<<"$tnet_nets")}

logs=${LOG_DIR:-$out/compare-logs/$(date -u +%Y%m%d-%H%M%S)}
mkdir -p "$logs" || die 1 "cannot make $logs"

# What the peers' Python has: "name version" per module, "name -" where it cannot be imported.
versions=$("$python" - <<'PY' 2>/dev/null
import importlib, sys
print("python", sys.version.split()[0])
for name in ["torch", "torchvision", "onnxruntime", "openvino", "numpy"]:
    try:
        module = importlib.import_module(name)
        version = module.get_version() if name == "openvino" else module.__version__
        print(name, version.split("-")[0])
    except Exception:
        print(name, "-")
PY
) || versions="python -"
version() { echo "$versions" | awk -v k="$1" '$1 == k { print $2 }'; }
installed() { local v; v=$(version "$1"); [ -n "$v" ] && [ "$v" != - ]; }

# run NAME FILE COMMAND...: one run, its output to FILE (name value lines) or FILE.failed.
run() {
  local name=$1 file=$2
  shift 2
  echo "== $name" >&2
  if timeout "$peer_timeout" "$@" >"$file.out" 2>"$file.err"; then
    mv "$file.out" "$file"
  else
    echo "   failed (exit $?): $file.err" >&2
    mv "$file.out" "$file.failed"
    return 1
  fi
}

start=$SECONDS
for round in $(seq "$rounds"); do
  for net in $nets; do
    for t in $threads_list; do
      at="$net, $t thread$([ "$t" = 1 ] || echo s), round $round of $rounds"
      onnx=$logs/$net.onnx
      if echo "$tnet_nets" | grep -qx "$net"; then
        run "tnet: $at" "$logs/$net-$t-tnet-$round" env OMP_NUM_THREADS="$t" "$bench" --net "$net" --threads "$t" --steps "$steps" \
          --latency-runs "$latency_runs" --onnx "$onnx" || die 1 "tnet failed: $logs/$net-$t-tnet-$round.err"
      fi
      for peer in $peers; do
        file=$logs/$net-$t-$peer-$round
        peer_env=(env OMP_NUM_THREADS="$t" OPENBLAS_NUM_THREADS="$t")
        case $peer in
          torch-*)
            installed torch && { [ "$net" = smallervgg ] || installed torchvision; } &&
              run "PyTorch ${peer#torch-}: $at" "$file" "${peer_env[@]}" "$python" benchmarks/peers/torch_bench.py --net "$net" \
                --mode "${peer#torch-}" --threads "$t" --steps "$steps" --latency-runs "$latency_runs" ;;
          ort | openvino*)
            case $peer in ort) module=onnxruntime name="ONNX Runtime" ;; openvino-f32) module=openvino name="OpenVINO f32" ;;
              *) module=openvino name="OpenVINO default" ;; esac
            installed $module && installed numpy && [ -f "$onnx" ] &&
              run "$name: $at" "$file" "${peer_env[@]}" "$python" benchmarks/peers/onnx_bench.py "$onnx" --runtime "$peer" \
                --threads "$t" --steps "$steps" --latency-runs "$latency_runs" ;;
          dlib)
            [ "$have_dlib" = 1 ] && [ "$net" = smallervgg ] &&
              run "dlib: $at" "$file" "${peer_env[@]}" "$out/dlib_smallervgg" --steps "$steps" ;;
        esac
      done
    done
  done
done
elapsed=$((SECONDS - start))

# The figures: FIGURE of RUNNER, median over the rounds that ran ("" when none did).
median() { # net threads runner key
  local r
  for r in $(seq "$rounds"); do
    [ -f "$logs/$1-$2-$3-$r" ] && awk -v k="$4" '$1 == k { print $2 }' "$logs/$1-$2-$3-$r"
  done | sort -g | awk '{ v[NR] = $1 } END { if (NR) print NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
first() { # net threads runner key: the value of the first round that has it
  local r
  for r in $(seq "$rounds"); do
    [ -f "$logs/$1-$2-$3-$r" ] && awk -v k="$4" '$1 == k { print $2; found = 1 } END { exit !found }' "$logs/$1-$2-$3-$r" && return
  done
}
# Why RUNNER has no figures for NET.
absent() { # net threads runner
  case $3 in
    tnet*) echo "not in tnet yet" ;;
    torch-*) installed torch || { echo "not installed"; return; }
      [ "$1" = smallervgg ] || installed torchvision || { echo "not installed (torchvision)"; return; } ;;&
    ort) installed onnxruntime || { echo "not installed"; return; } ;;&
    openvino*) installed openvino || { echo "not installed"; return; } ;;&
    ort | openvino*) installed numpy || { echo "not installed (numpy)"; return; }
      [ -f "$logs/$1.onnx" ] || { echo "no tnet export"; return; } ;;&
    dlib) [ "$have_dlib" = 1 ] || { echo "not installed"; return; }
      [ "$1" = smallervgg ] || { echo "(SmallerVGGNet only)"; return; } ;;&
    *) if ls "$logs/$1-$2-$3-"*.failed >/dev/null 2>&1; then echo "failed (see $logs)"
      elif [[ " $peers " != *" $3 "* ]]; then echo "not run (PEERS)"; fi ;;
  esac
}

fmt() { awk -v v="$1" -v d="$2" 'BEGIN { printf "%.*f", d, v }'; }
# cell VALUE TNET DIGITS: the value and tnet's figure over it.
cell() {
  if [ -z "$1" ]; then echo "-"
  elif [ -z "$2" ]; then fmt "$1" "$3"
  else awk -v v="$1" -v t="$2" -v d="$3" 'BEGIN { printf "%.*f (%.2fx)", d, v, t / v }'; fi
}
label() { # net threads runner
  local precision
  case $3 in
    tnet) echo "**tnet** fp32" ;;
    tnet-bf16)
      if [ "$(first "$1" "$2" tnet bf16_convolutions)" = 1 ]; then echo "tnet bf16"
      else echo "tnet bf16 (dense kernels only: no AVX512_BF16)"; fi ;;
    torch-eager) echo "PyTorch eager fp32" ;;
    torch-bf16) echo "PyTorch bf16 autocast" ;;
    torch-compile) echo "PyTorch torch.compile fp32" ;;
    ort) echo "ONNX Runtime" ;;
    openvino-f32) echo "OpenVINO f32" ;;
    openvino)
      precision=$(first "$1" "$2" openvino precision)
      echo "OpenVINO default${precision:+ (ran $precision)}" ;;
    dlib) echo "dlib (batch 1: the mean of 4 x STEPS)" ;;
  esac
}
keys="train_images_per_s infer_images_per_s infer_latency_batch1_ms infer_latency_batch1_p99_ms peak_rss_mb"
digits() { case $1 in *_ms) echo 2 ;; peak_rss_mb) echo 0 ;; *) echo 1 ;; esac; }

# goal NAME TNET PEER_LABEL PEER OP BOUND: "tnet / peer = r (goal OP bound): met".
goal() {
  if [ -z "$2" ] || [ -z "$4" ]; then
    printf -- '- %s: no figure (%s)\n' "$1" "$([ -z "$2" ] && echo "tnet has none" || echo "${3:+$3: none}${3:-no such peer ran}")"
  else
    awk -v n="$1" -v t="$2" -v l="$3" -v p="$4" -v op="$5" -v b="$6" 'BEGIN {
      r = t / p; ok = op == ">=" ? r >= b : r <= b
      printf "- %s: tnet / %s = %.2fx (goal %s %sx): %s\n", n, l, r, op, b, ok ? "met" : "**not met**" }'
  fi
}
# best NET THREADS KEY min|max RUNNER...: "value label" of the best runner that has the figure.
best() {
  local net=$1 t=$2 key=$3 way=$4 runner v
  shift 4
  for runner in "$@"; do
    v=$(median "$net" "$t" "$runner" "$key")
    [ -n "$v" ] && echo "$v $runner"
  done | sort -g -k1,1 | if [ "$way" = min ]; then head -1; else tail -1; fi
}

flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -x -E 'avx2|fma|avx512f|avx512_vnni|avx512_bf16|avx512_fp16|amx_tile|amx_bf16|amx_int8|avx_vnni' | tr '\n' ' ')
compiler=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$out/CMakeCache.txt" 2>/dev/null)
[ -n "$compiler" ] && compiler=$("$compiler" --version 2>/dev/null | head -1)
{
  echo "## tnet beside its peers"
  echo
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p'), $cores cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo);" \
    "$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"), Linux $(uname -r); $(date -u '+%F %H:%M') UTC"
  echo "- CPU flags: ${flags:-none of avx2, avx512f, avx512_bf16, amx}"
  echo "- tnet $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo " (uncommitted changes)"):" \
    "$bench ($(sed -n 's/^TNET_NATIVE:BOOL=//p' "$out/CMakeCache.txt" 2>/dev/null | grep -q ON && echo "native, -march=native" || echo "portable")" \
    "build${compiler:+, $compiler})"
  echo "- peers: Python $(version python) ($python): PyTorch $(version torch), torchvision $(version torchvision)," \
    "ONNX Runtime $(version onnxruntime), OpenVINO $(version openvino); dlib $([ "$have_dlib" = 1 ] && pkg-config --modversion dlib-1 2>/dev/null || echo -)" \
    "(- where not installed)"
  echo "- settings: batch 32, 96x96x3, 6 labels; $steps timed steps after a warm-up; batch-1 latency over $latency_runs" \
    "single-image runs; median of $rounds alternating rounds ($elapsed s in all); raw output in $logs"
  echo "- (x): tnet's figure over the runner's: above 1 tnet does more images/s; below 1 tnet takes fewer" \
    "ms or MB. Training is forward, backward and an Adam step; inference includes the sigmoid. Peak" \
    "memory is each process's maximum resident set."
  for net in $nets; do
    case $net in smallervgg) name=SmallerVGGNet ;; resnet18) name=ResNet18 ;; mobilenetv2) name=MobileNetV2 ;; esac
    for t in $threads_list; do
      echo
      echo "### $name, $t thread$([ "$t" = 1 ] || echo s)"
      echo
      echo "| runner | training img/s | inference img/s, batch 32 | batch-1 median ms | batch-1 p99 ms | peak MB |"
      echo "|---|---|---|---|---|---|"
      declare -A tnet_fig=()
      for key in $keys; do tnet_fig[$key]=$(median "$net" "$t" tnet "$key"); done
      for runner in tnet tnet-bf16 $all_peers; do
        row="| $(label "$net" "$t" "$runner") |"
        src=$runner suffix=
        [ "$runner" = tnet-bf16 ] && src=tnet suffix=_bf16
        have=0
        for key in $keys; do
          v=
          case $runner:$key in tnet-bf16:train_* | tnet-bf16:peak_*) ;; *) v=$(median "$net" "$t" "$src" "$key$suffix") ;; esac
          [ -n "$v" ] && have=1
          if [ "$runner" = tnet ]; then row+=" **$(cell "$v" "" "$(digits "$key")")** |"
          else row+=" $(cell "$v" "${tnet_fig[$key]}" "$(digits "$key")") |"; fi
        done
        if [ "$have" = 0 ]; then
          why=$(absent "$net" "$t" "$runner")
          [ -z "$why" ] && [ "$runner" = tnet-bf16 ] && why="not in tnet yet"
          row="| $(label "$net" "$t" "$runner") | ${why:-no figures} | | | | |"
        fi
        echo "$row"
      done
      compile=$(median "$net" "$t" torch-compile compile_s)
      [ -n "$compile" ] && echo && echo "torch.compile's first calls (compiling; not in its figures): $(fmt "$compile" 1) s."

      echo
      echo "Issue 27's goals, $name at $t thread$([ "$t" = 1 ] || echo s)$([ "$t" != 2 ] && echo " (set for 2 threads)"):"
      # The bf16 peers: PyTorch's autocast, and OpenVINO's default where it ran bf16.
      bf16_peers=(torch-bf16) fp32_peers=(torch-eager torch-compile ort openvino-f32)
      case $(first "$net" "$t" openvino precision) in *bf16*) bf16_peers+=(openvino) ;; *) fp32_peers+=(openvino) ;; esac
      train=${tnet_fig[train_images_per_s]} infer=${tnet_fig[infer_images_per_s]} latency=${tnet_fig[infer_latency_batch1_ms]}
      infer_bf16=$(median "$net" "$t" tnet infer_images_per_s_bf16) latency_bf16=$(median "$net" "$t" tnet infer_latency_batch1_ms_bf16)
      if [ "$net" = smallervgg ]; then
        read -r v r <<<"$(best "$net" "$t" train_images_per_s max torch-eager torch-compile)"
        goal "training" "$train" "$(label "$net" "$t" "$r")" "$v" ">=" 3
        goal "training" "$train" "$(label "$net" "$t" torch-bf16)" "$(median "$net" "$t" torch-bf16 train_images_per_s)" ">=" 1.5
        read -r v r <<<"$(best "$net" "$t" infer_images_per_s max "${fp32_peers[@]}")"
        goal "inference, batch 32, fastest fp32 peer" "$infer" "$(label "$net" "$t" "$r")" "$v" ">=" 1.5
        read -r v r <<<"$(best "$net" "$t" infer_images_per_s max "${bf16_peers[@]}")"
        goal "inference, batch 32, tnet's bf16 path, fastest bf16 peer" "$infer_bf16" "$(label "$net" "$t" "$r")" "$v" ">=" 1
        read -r v r <<<"$(best "$net" "$t" infer_latency_batch1_ms min "${fp32_peers[@]}")"
        goal "batch-1 latency (median), fastest fp32 peer" "$latency" "$(label "$net" "$t" "$r")" "$v" "<=" 0.8
        read -r v r <<<"$(best "$net" "$t" infer_latency_batch1_ms min "${bf16_peers[@]}")"
        goal "batch-1 latency (median) of tnet's bf16 path, fastest bf16 peer" "$latency_bf16" "$(label "$net" "$t" "$r")" "$v" "<=" 1
      else
        read -r v r <<<"$(best "$net" "$t" train_images_per_s max torch-eager torch-compile)"
        goal "training" "$train" "$(label "$net" "$t" "$r")" "$v" ">=" 2
        goal "inference, batch 32" "$infer" "ONNX Runtime" "$(median "$net" "$t" ort infer_images_per_s)" ">=" 1
        goal "batch-1 latency (median)" "$latency" "ONNX Runtime" "$(median "$net" "$t" ort infer_latency_batch1_ms)" "<=" 1
      fi
    done
  done
} | tee "$logs/report.md"
rm -f "$logs"/*.onnx
