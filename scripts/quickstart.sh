#!/usr/bin/env bash
# The main job from a fresh checkout: install what is missing, build, train SmallerVGGNet on the
# built-in synthetic garments for a few epochs, then classify one of its held-out pictures.
# Extra arguments go to fashion_train (for example --epochs 10, or --dataset DIR for real photos).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# ResNet18 and MobileNetV2 double the build: compiled only when an --arch other than SmallerVGGNet's
# is asked for.
torchvision=OFF
for arg in "$@"; do
  case $arg in resnet18 | mobilenetv2 | --arch=resnet18 | --arch=mobilenetv2) torchvision=ON ;; esac
done
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DTNET_NATIVE=ON -DTNET_FASHION_TORCHVISION=$torchvision >/dev/null
cmake --build build -j"$(nproc)" --target fashion_train fashion_classify
mkdir -p out
./build/examples/fashion_train --epochs 5 --model out/fashion.tnet --labelbin out/labels.txt \
  --plot out/plot.png --history out/history.csv "$@"
if [ -d out/synthetic_examples ]; then
  ./build/examples/fashion_classify --model out/fashion.tnet --labelbin out/labels.txt \
    --image out/synthetic_examples/red_dress.png --output out/red_dress_labeled.png
fi
echo
echo "Written to out/: the model fashion.tnet, labels.txt, plot.png (training curves), history.csv,"
echo "the split (fashion.train.txt, fashion.val.txt) and red_dress_labeled.png (the photo with its"
echo "top labels drawn on it)."
