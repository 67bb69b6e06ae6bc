#!/usr/bin/env bash
# The Keras multi-label fashion tutorial's own system beside tnet, on the same photos and split
# (issue 29). For each seed, one after the other:
#   1. tnet's fashion_train (the tutorial's settings, its defaults) into OUT/seedS/tnet/; it writes
#      the split it drew beside its model (fashion.train.txt, fashion.val.txt);
#   2. benchmarks/keras/train_keras.py (tf-keras) on that split into OUT/seedS/keras/;
#   3. fashion_classify on the tutorial's seven example photos with tnet's model and with Keras's
#      model converted to ONNX, and benchmarks/keras/check_onnx.py: tnet gives Keras's predict
#      within 1e-4 on the photos fed identically (needs BUILD_DIR/tests/onnx_check);
# then benchmarks/keras/report.py: OUT/report.md (the table) and OUT/curves.png.
#   bash benchmarks/keras/run.sh
# Settings (environment):
#   SEEDS="1 2 3"   EPOCHS=75   THREADS=2 (tnet's threads; Keras's intra-op threads)
#   BUILD_DIR=build  holds examples/fashion_train, examples/fashion_classify (and tests/onnx_check):
#                    cmake --build build --target fashion_train fashion_classify onnx_check
#   ONNX_CHECK=BUILD_DIR/tests/onnx_check   writes the photos as fashion_classify feeds them
#   PYTHON           the peers' Python with tensorflow, tf-keras, tf2onnx, scipy, opencv and
#                    matplotlib (default .cache/peers/bin/python, which benchmarks/peers/setup.sh makes)
#   DATA=../shared/datasets/fashion   its dataset/ and examples/
#   OUT=benchmarks/results/keras
# Every step is skipped when complete and continued when interrupted (Ctrl-C, kill, a lost
# session): run the same command again and it goes on from the last checkpoint. No time limits.
# Peak memory: /usr/bin/time -v, appended to each system's time.txt per session.
set -euo pipefail
cd "$(dirname "$0")/../.."
me=benchmarks/keras/run.sh
die() {
  echo "$me: $2" >&2
  exit "$1"
}
seeds=${SEEDS:-1 2 3} epochs=${EPOCHS:-75} threads=${THREADS:-2} build=${BUILD_DIR:-build}
onnx_check=${ONNX_CHECK:-$build/tests/onnx_check} python=${PYTHON:-.cache/peers/bin/python} data=${DATA:-../shared/datasets/fashion} out=${OUT:-benchmarks/results/keras}
for s in $seeds; do [[ $s =~ ^[0-9]+$ ]] || die 2 "SEEDS takes non-negative integers, got '$s'"; done
[[ $epochs =~ ^[1-9][0-9]*$ ]] || die 2 "EPOCHS needs a positive integer, got '$epochs'"
[[ $threads =~ ^[1-9][0-9]*$ ]] || die 2 "THREADS needs a positive integer, got '$threads'"
for program in fashion_train fashion_classify; do
  [ -x "$build/examples/$program" ] || die 2 "no $build/examples/$program: build it (cmake --build $build --target fashion_train fashion_classify onnx_check) or give BUILD_DIR"
done
[ -x "$python" ] || die 2 "no Python at $python: run bash benchmarks/peers/setup.sh, or give PYTHON"
"$python" -c "import tf_keras, tf2onnx, scipy, cv2, matplotlib" 2>/dev/null ||
  die 2 "$python lacks tf-keras, tf2onnx, scipy, opencv or matplotlib (benchmarks/peers/requirements.txt)"
[ -d "$data/dataset" ] && [ -d "$data/examples" ] || die 2 "$data has no dataset/ and examples/ (give DATA)"
[ -x /usr/bin/time ] || die 2 "/usr/bin/time is missing (apt-get install time): it measures peak memory"
photos=("$data"/examples/*.jpg)
mkdir -p "$out"

# write FILE COMMAND...: COMMAND's standard output into FILE, replacing it only when COMMAND succeeds.
write() {
  local file=$1
  shift
  "$@" >"$file.tmp" && mv "$file.tmp" "$file"
}

for s in $seeds; do
  t=$out/seed$s/tnet k=$out/seed$s/keras
  mkdir -p "$t" "$k"
  model=$t/fashion.tnet
  # tnet: complete when the model is written and its checkpoint gone (fashion_train removes it last).
  if [ -f "$model" ] && ! [ -e "$model.checkpoint" ]; then
    echo "seed $s: tnet's run is complete ($model)"
  else
    resume=()
    [ -e "$model.checkpoint" ] && resume=(--resume)
    echo "seed $s: tnet's fashion_train ${resume[*]:-(a fresh run)}; log $t/train.log"
    echo "=== $(date -u '+%F %T') UTC: fashion_train, seed $s, ${resume[*]:-fresh}" >>"$t/train.log"
    # tee -i: Ctrl-C reaches fashion_train (which saves its checkpoint), not the log.
    /usr/bin/time -v -a -o "$t/time.txt" "$build/examples/fashion_train" --dataset "$data/dataset" --seed "$s" \
      --threads "$threads" --epochs "$epochs" --model "$model" --labelbin "$t/labels.txt" --plot "$t/plot.png" \
      --history "$t/history.csv" "${resume[@]}" 2>&1 | tee -i -a "$t/train.log"
  fi
  # Keras: complete when run.json is written (train_keras.py writes it last).
  if [ -f "$k/run.json" ]; then
    echo "seed $s: Keras's run is complete ($k/run.json)"
  else
    resume=()
    [ -e "$k/checkpoint.pkl" ] && resume=(--resume)
    echo "seed $s: Keras (tf-keras) ${resume[*]:-(a fresh run)}; log $k/train.log"
    /usr/bin/time -v -a -o "$k/time.txt" "$python" benchmarks/keras/train_keras.py --dataset "$data/dataset" \
      --train-list "$t/fashion.train.txt" --val-list "$t/fashion.val.txt" --seed "$s" --threads "$threads" \
      --epochs "$epochs" --examples "$data/examples" --out "$k" "${resume[@]}"
  fi
  # The example photos through fashion_classify: tnet's model, and Keras's model in tnet.
  classify() { "$build/examples/fashion_classify" --output "$1" "${@:2}" "${photos[@]}"; }
  mkdir -p "$t/labelled" "$k/labelled" "$k/labelled_bgr"
  if ! [ -f "$t/examples.json" ]; then
    write "$t/examples.txt" classify "$t/labelled" --model "$model" --labelbin "$t/labels.txt"
    write "$t/examples.json" classify "$t/labelled" --model "$model" --labelbin "$t/labels.txt" --json
  fi
  if ! [ -f "$k/tnet_classify.json" ]; then
    write "$k/tnet_classify.txt" classify "$k/labelled" --model "$k/keras_rgb.onnx" --labelbin "$k/labels.txt"
    write "$k/tnet_classify_bgr.json" classify "$k/labelled_bgr" --model "$k/keras.onnx" --labelbin "$k/labels.txt" --json
    write "$k/tnet_classify.json" classify "$k/labelled" --model "$k/keras_rgb.onnx" --labelbin "$k/labels.txt" --json
  fi
  if [ -f "$k/onnx_check.txt" ]; then
    echo "seed $s: $(head -1 "$k/onnx_check.txt")"
  elif [ -x "$onnx_check" ]; then
    "$onnx_check" inputs 96 "$k/inputs.bin" "${photos[@]}"
    if "$python" benchmarks/keras/check_onnx.py "$k" "$k/inputs.bin" "$k/tnet_classify.json" "$k/tnet_classify_bgr.json" \
      >"$k/onnx_check.tmp"; then
      mv "$k/onnx_check.tmp" "$k/onnx_check.txt"
      cat "$k/onnx_check.txt"
    else
      cat "$k/onnx_check.tmp"
      die 1 "seed $s: fashion_classify does not give Keras's probabilities within 1e-4 ($k/onnx_check.tmp)"
    fi
  else
    echo "seed $s: no $onnx_check, so tnet's run of Keras's model is not compared with Keras's predict" \
      "(cmake --build $build --target onnx_check)"
  fi
done
"$python" benchmarks/keras/report.py "$out" >"$out/report.md.tmp" && mv "$out/report.md.tmp" "$out/report.md"
cat "$out/report.md"
