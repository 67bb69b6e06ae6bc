#!/usr/bin/env bash
# fashion_train --arch: ResNet18 and MobileNetV2 beside SmallerVGGNet. Each trains briefly on the
# synthetic set; fashion_classify and fashion_export follow the model file; fashion_export's ONNX
# file classifies as the model does, found by its recorded signature, or, with that record
# removed, by trying each network; and the usage errors. Usage:
#   fashion_arch.sh BIN_DIR SIZES
# SIZES: SmallerVGGNet's compiled sizes as fashion_train names them ("64, 96 or 128").
set -uo pipefail
bin=$1 vgg_sizes=$2
train="$bin/fashion_train" classify="$bin/fashion_classify" export_="$bin/fashion_export"
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"

expect_error "an unknown --arch" 2 "--arch must be smallervgg, resnet18 or mobilenetv2, got 'vgg16'" -- "$train" --arch vgg16
expect_error "--arch in another case" 2 "--arch must be smallervgg, resnet18 or mobilenetv2, got 'ResNet18'" -- "$train" --arch ResNet18
expect_error "--arch resnet18 at 64 pixels" 2 \
  "--image-size must be 96 (the sizes fashion_train is compiled for with --arch resnet18), got 64" -- "$train" --arch resnet18 --image-size 64
expect_error "--arch mobilenetv2 at 128 pixels" 2 \
  "--image-size must be 96 (the sizes fashion_train is compiled for with --arch mobilenetv2), got 128" -- \
  "$train" --arch mobilenetv2 --image-size 128
expect_error "SmallerVGGNet's sizes" 2 "--image-size must be $vgg_sizes (the sizes fashion_train is compiled for), got 50" -- \
  "$train" --image-size 50
expect_error "fashion_classify --arch unknown" 2 "--arch must be smallervgg, resnet18 or mobilenetv2, got 'lenet'" -- \
  "$classify" --arch lenet --image x.png

# Each architecture, briefly: it trains, names itself, and its model file says what it is.
common=(--epochs 2 --synthetic-count 6 --batch-size 8)
declare -A names=([resnet18]=ResNet18 [mobilenetv2]=MobileNetV2)
for arch in resnet18 mobilenetv2; do
  name=${names[$arch]}
  "$train" --arch $arch "${common[@]}" --model $arch.tnet --labelbin $arch.txt --plot $arch.png --history $arch.csv >$arch.log 2>&1
  status=$?
  if [ $status = 0 ] && grep -q "^$name: [0-9,]* parameters, 96x96x3 input, 6 labels" $arch.log && [ "$(wc -l <$arch.csv)" = 3 ] &&
    [ -s $arch.tnet ] && [ ! -e $arch.tnet.checkpoint ]; then
    pass "--arch $arch trains $name: $(grep -o "^$name: [0-9,]* parameters" $arch.log)"
  else
    fail "--arch $arch: status $status, $(tail -5 $arch.log)"
  fi
  # fashion_classify needs no --arch: the model file says which network it holds.
  "$classify" --model $arch.tnet --labelbin $arch.txt --image synthetic_examples --json --output ${arch}_out >$arch.json 2>$arch.err
  status=$?
  [ $status = 0 ] && [ "$(grep -o '"probabilities"' $arch.json | wc -l)" = 6 ] && pass "fashion_classify runs the $name model file" ||
    fail "fashion_classify with $arch.tnet: status $status, $(cat $arch.err)"
  "$classify" --model $arch.tnet --labelbin $arch.txt --arch $arch --image synthetic_examples --json --output ${arch}_out >given.json 2>&1
  cmp -s $arch.json given.json && pass "fashion_classify --arch $arch on its own model file" || fail "--arch $arch on $arch.tnet: $(head -3 given.json)"
  expect_error "fashion_classify --arch smallervgg on a $name model file" 2 \
    "--arch smallervgg names another network than $work/$arch.tnet holds, a $name for 96-pixel images (--arch $arch)" -- \
    "$classify" --model "$work/$arch.tnet" --labelbin "$work/$arch.txt" --arch smallervgg --image "$work/synthetic_examples/red_dress.png"
  # fashion_export follows the model file too; its ONNX file classifies as the model does.
  "$export_" --model $arch.tnet --labelbin $arch.txt --onnx $arch.onnx >export.txt 2>&1 && [ -s $arch.onnx ] &&
    pass "fashion_export writes the $name model as ONNX: $(head -1 export.txt)" || fail "fashion_export $arch: $(cat export.txt)"
  "$classify" --model $arch.onnx --labelbin $arch.txt --image synthetic_examples --json --output ${arch}_out >onnx.json 2>&1
  cmp -s $arch.json onnx.json && pass "fashion_classify with the $name ONNX file prints what it prints with the model file" ||
    fail "$arch.onnx: $(diff $arch.json onnx.json | head -5)"
  # An ONNX file without tnet's record of the network (as one from elsewhere): each network for
  # its input size is tried, the first that fits taken.
  perl -0777 -pe 's/tnet_signature/tnet_signaturX/g' $arch.onnx >untagged_$arch.onnx
  "$classify" --model untagged_$arch.onnx --labelbin $arch.txt --image synthetic_examples --json --output ${arch}_out >untagged.json 2>&1
  ! grep -q tnet_signature untagged_$arch.onnx && cmp -s $arch.json untagged.json &&
    pass "an ONNX $name without tnet's signature is recognised by trying each network" ||
    fail "untagged $arch.onnx: $(head -3 untagged.json)"
done
expect_error "--arch names a network an ONNX file does not fit" 2 "untagged_mobilenetv2.onnx: " -- \
  "$classify" --model "$work/untagged_mobilenetv2.onnx" --labelbin "$work/mobilenetv2.txt" --arch resnet18 \
  --image "$work/synthetic_examples/red_dress.png"

# A checkpoint of one network is not resumed as another.
"$train" --arch resnet18 "${common[@]}" --model r.tnet --labelbin r.txt --plot r.png --history r.csv --interrupt-after-steps 1 \
  >interrupted.txt 2>&1
status=$?
[ $status = 130 ] && [ -e r.tnet.checkpoint ] && pass "a ResNet18 run interrupted keeps its checkpoint" || fail "interrupt: status $status"
expect_error "--resume of a ResNet18 checkpoint without --arch" 2 \
  "r.tnet.checkpoint holds a ResNet18 for 96-pixel images: resume with --arch resnet18 --image-size 96" -- \
  "$train" "${common[@]}" --model "$work/r.tnet" --labelbin "$work/r.txt" --plot "$work/r.png" --history "$work/r.csv" --resume

finish
