#!/usr/bin/env bash
# Peak memory and speed of fashion_train with the photos in memory against --cache (decoded once
# into an image cache, read as batches need it, batches prepared in the background), on a generated
# folder dataset of 48 classes x PER_FOLDER photos (tests/make_label_dataset; 420 a folder:
# 20,160 photos, 248 MB of pixels at 64x64).
#   benchmarks/streaming.sh BUILD_DIR [PER_FOLDER] [THREADS]
# BUILD_DIR holds examples/fashion_train and tests/make_label_dataset. Prints one line a run.
set -euo pipefail
build=$1 per_folder=${2:-420} threads=${3:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
"$build/tests/make_label_dataset" photos 24 20 "$per_folder" >/dev/null
echo "dataset: $(find photos -name '*.png' | wc -l) photos, $(du -sh photos | cut -f1) of PNG files; $threads threads; 1 epoch at 64x64"
run() {
  local name=$1
  shift
  local start=$(date +%s.%N)
  "$build/examples/fashion_train" --dataset photos --image-size 64 --epochs 1 --threads "$threads" --average-epochs 0 \
    --no-recalibrate-bn --model "$name.tnet" --labelbin "$name.txt" --plot "$name.png" --history "$name.csv" "$@" >"$name.log" 2>&1
  local end=$(date +%s.%N)
  printf '%-28s loading %6s s, training %7s img/s, peak memory %5s MB, %5.0f s in all\n' "$name" \
    "$(grep -oE 'loaded [0-9]+ images in [0-9.]+' "$name.log" | awk '{print $5}')" \
    "$(grep -oE '[0-9.]+ img/s' "$name.log" | tail -1 | cut -d' ' -f1)" \
    "$(grep -oE 'peak memory [0-9]+' "$name.log" | awk '{print $3}')" "$(echo "$end - $start" | bc)"
}
run in-memory
run cache-built --cache cache
run cache-reused --cache cache
