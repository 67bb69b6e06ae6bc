#!/usr/bin/env bash
# The main job from a fresh checkout: install what is missing, build, train SmallerVGGNet on the
# built-in synthetic garments for a few epochs, then classify one of its held-out pictures.
# Extra arguments go to fashion_train (for example --epochs 10, or --dataset DIR for real photos).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Only the network the run trains is compiled (the fashion programs' networks:
# examples/fashion/networks.cmake): SmallerVGGNet at 96 pixels unless --arch or --image-size say
# otherwise.
arch=smallervgg size=96 previous=
for arg in "$@"; do
  case $previous in --arch) arch=$arg ;; --image-size) size=$arg ;; esac
  previous=$arg
done
# It builds in a folder of its own, build-quickstart: a later build of everything in build/ (as
# README's fashion section has it) does not inherit these options. Ninja compiles the programs'
# sources side by side from the start (Make would wait for the network's library before compiling
# train.cpp and classify.cpp); a build folder made earlier keeps its own generator.
build=build-quickstart
generator=(-G Ninja)
[ -f $build/CMakeCache.txt ] && generator=()
cmake "${generator[@]}" -S . -B $build -DCMAKE_BUILD_TYPE=Release -DCMAKE_DISABLE_PRECOMPILE_HEADERS=ON -DTNET_NATIVE=ON -DTNET_FASHION_NETWORKS="$arch:$size" >/dev/null
cmake --build $build -j"$(nproc)" --target fashion_train fashion_classify
mkdir -p out
./$build/examples/fashion_train --epochs 5 --model out/fashion.tnet --labelbin out/labels.txt \
  --plot out/plot.png --history out/history.csv "$@"
if [ -d out/synthetic_examples ]; then
  ./$build/examples/fashion_classify --model out/fashion.tnet --labelbin out/labels.txt \
    --image out/synthetic_examples/red_dress.png --output out/red_dress_labeled.png
fi
echo
echo "Written to out/: the model fashion.tnet, labels.txt, plot.png (training curves), history.csv,"
echo "the split (fashion.train.txt, fashion.val.txt) and red_dress_labeled.png (the photo with its"
echo "top labels drawn on it). The programs are in $build/examples/."
