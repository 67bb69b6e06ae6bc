#!/usr/bin/env bash
# The ONNX tests as a user meets them. Usage:
#   run.sh BIN_DIR ONNX_CHECK WORK SHARED ORT_PYTHON MAKE_LABEL_DATASET STEP
# STEP export       trains a SmallerVGGNet briefly, exports it with fashion_export (NHWC and
#                   --nchw), and checks that fashion_classify gives the same JSON with the .tnet
#                   model and with either ONNX file; writes WORK/inputs.bin (the photos as
#                   fashion_classify feeds them) for the steps below; and bad input
# STEP checker      onnx.checker (full check) and shape inference on both exports (python3-onnx)
# STEP opencv       OpenCV's DNN (python3-opencv) on inputs.bin: within 1e-4 of fashion_classify
# STEP onnxruntime  ONNX Runtime (PyPI's onnxruntime, run by ORT_PYTHON: the Python of the
#                   environment scripts/install_onnx_consumers.sh makes) likewise
# STEP pytorch      a SmallerVGGNet made and exported by PyTorch (python3-torch) loads into tnet
#                   and gives PyTorch's outputs within 1e-4; fashion_classify runs it
# STEP networks     the networks of tests/onnx_networks.hpp (residual blocks, every activation,
#                   padded, depthwise and average-pooling layers) exported by onnx_check, loaded
#                   back by tnet, checked by onnx.checker, and run by ONNX Runtime: within 1e-4
#                   of tnet
# STEP networks_opencv  the same networks run by OpenCV's DNN: within 1e-4 of tnet
# STEP keras        the tutorial's SmallerVGGNet made by Keras (tf-keras, random weights) and
#                   converted by tf2onnx (tests/fixtures/make_keras_fixtures.py) gives Keras's
#                   predict within 1e-4 on the export step's inputs; fashion_classify runs it.
#                   Needs the peers (benchmarks/peers/setup.sh); skipped without them, in CI too
# STEP torchvision  torchvision's resnet18 and mobilenet_v2 (python3-torchvision), exported by
#                   PyTorch folded, unfolded and with the shortcut first
#                   (tests/onnx/make_torchvision.py), load into tnet::models::ResNet18 and
#                   MobileNetV2 and give PyTorch's outputs within 1e-4; a ResNet18 missing a block
#                   refuses the file; training steps on the imported ResNet18 lower its loss.
#                   TNET_TORCHVISION_PYTHON names another Python (with torch 2.x: its exporters too)
# A step whose consumer is not installed exits 77 (skipped), saying why; with CI=true or
# TNET_REQUIRE_CONSUMERS=1 it fails instead (exit 1), so that CI never passes without a consumer.
set -uo pipefail
export OMP_WAIT_POLICY=passive
bin=$1 onnx_check=$2 work=$3 shared=$4 ort_python=$5 make_label_dataset=$6 step=$7
here=$(cd "$(dirname "$0")" && pwd)
python=/usr/bin/python3
failures=0
pass() { echo "ok: $1"; }
fail() { failures=$((failures + 1)); echo "FAILED: $1"; }
skip() {
  if [ "${CI:-}" = true ] || [ "${TNET_REQUIRE_CONSUMERS:-0}" = 1 ]; then
    echo "FAILED: $1, and CI=true or TNET_REQUIRE_CONSUMERS=1 requires it (scripts/install_onnx_consumers.sh)"
    exit 1
  fi
  echo "SKIPPED: $1"
  exit 77
}
has_python_module() { [ -x "$python" ] && "$python" -c "import $1" 2>/dev/null; }

# expect_error NAME STATUS MESSAGE -- COMMAND...: COMMAND exits with STATUS and prints MESSAGE on stderr.
expect_error() {
  local name=$1 status=$2 message=$3
  shift 4
  "$@" >err.out 2>err.txt
  local got=$?
  if [ "$got" = "$status" ] && grep -qF -- "$message" err.txt; then pass "$name"; else fail "$name: status $got (want $status), stderr '$(cat err.txt)'"; fi
}

photos() {
  if [ -d "$shared/datasets/fashion/examples" ]; then
    ls "$shared"/datasets/fashion/examples/*.jpg
  else
    ls "$work"/generated/*/*.png
  fi
}

case $step in
export)
  rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
  [ -d "$shared/datasets/fashion/examples" ] || "$make_label_dataset" generated 3 3 1 >/dev/null
  mapfile -t images < <(photos)
  "$bin/fashion_train" --epochs 1 --synthetic-count 20 --model m.tnet --labelbin labels.txt --plot plot.png --history history.csv \
    >train.txt 2>&1 || { cat train.txt; fail "fashion_train"; exit 1; }
  if "$bin/fashion_export" --model m.tnet --labelbin labels.txt --onnx m.onnx >export.txt 2>&1 &&
    "$bin/fashion_export" --model m.tnet --labelbin labels.txt --onnx m_nchw.onnx --nchw >>export.txt 2>&1; then
    pass "fashion_export: $(head -1 export.txt)"
  else
    fail "fashion_export: $(cat export.txt)"
  fi
  ls m.onnx.tnet-tmp.* >/dev/null 2>&1 && fail "a temporary file left beside m.onnx"
  mkdir -p labelled
  "$bin/fashion_classify" --model m.tnet --labelbin labels.txt --json --output labelled "${images[@]}" >tnet.json || fail "classify with m.tnet"
  for model in m.onnx m_nchw.onnx; do
    "$bin/fashion_classify" --model $model --labelbin labels.txt --json --output labelled "${images[@]}" >onnx.json || fail "classify with $model"
    if cmp -s tnet.json onnx.json; then pass "fashion_classify with $model prints what it prints with m.tnet"; else fail "classify with $model differs: $(diff tnet.json onnx.json | head -5)"; fi
  done
  "$onnx_check" inputs 96 inputs.bin "${images[@]}" || fail "onnx_check inputs"
  # Bad input: a clear message, exit 2, nothing overwritten.
  cp m.onnx kept.onnx
  expect_error "export over the model itself" 2 "is the model itself" -- "$bin/fashion_export" --model m.tnet --onnx ./m.tnet
  expect_error "export into a missing folder" 2 "folder /no-such-dir does not exist" -- "$bin/fashion_export" --model m.tnet --onnx /no-such-dir/m.onnx
  printf '# tnet MultiLabelBinarizer v1\na\nb\n' >two.txt
  expect_error "export with another label file" 2 "two.txt lists 2 classes, but m.tnet has 6 outputs" -- \
    "$bin/fashion_export" --model m.tnet --labelbin two.txt --onnx m.onnx
  cmp -s m.onnx kept.onnx && pass "m.onnx untouched by the failed export" || fail "a failed export changed m.onnx"
  head -c 100000 m.onnx >truncated.onnx
  expect_error "classify with a truncated ONNX file" 2 "truncated.onnx: not a valid ONNX file: truncated protobuf" -- \
    "$bin/fashion_classify" --model truncated.onnx --labelbin labels.txt "${images[0]}"
  printf 'not onnx at all' >text.onnx
  expect_error "classify with a text file named .onnx" 2 "text.onnx: not a valid ONNX file" -- \
    "$bin/fashion_classify" --model text.onnx --labelbin labels.txt "${images[0]}"
  expect_error "classify an ONNX model with another label file" 2 "two.txt lists 2 classes, but m.onnx has 6 outputs" -- \
    "$bin/fashion_classify" --model m.onnx --labelbin two.txt "${images[0]}"
  ;;
checker)
  has_python_module onnx || skip "python3-onnx is not installed"
  "$python" "$here/consumers.py" checker "$work/m.onnx" "$work/m_nchw.onnx" || fail "onnx.checker"
  ;;
opencv)
  has_python_module cv2 || skip "python3-opencv is not installed"
  "$python" "$here/consumers.py" opencv "$work/m.onnx" "$work/m_nchw.onnx" "$work/inputs.bin" "$work/tnet.json" || fail "OpenCV"
  # And on photos already at the input size, fed their own pixels: tnet must not filter them.
  mapfile -t images < <(photos)
  "$python" "$here/opencv_photos.py" "$bin" "$work" "$work/m.onnx" "$work/labels.txt" "${images[@]}" || fail "OpenCV on photos at the input size"
  ;;
onnxruntime)
  [ -x "$ort_python" ] && "$ort_python" -c "import onnxruntime" 2>/dev/null || skip "onnxruntime is not installed ($ort_python cannot import it)"
  "$ort_python" "$here/onnxruntime_check.py" "$work/m.onnx" "$work/m_nchw.onnx" "$work/inputs.bin" "$work/tnet.json" || fail "ONNX Runtime"
  ;;
pytorch)
  has_python_module torch || skip "python3-torch is not installed"
  out="$work-pytorch"
  rm -rf "$out" && mkdir -p "$out" && cd "$out" || exit 1
  "$python" "$here/torch_smallervgg.py" "$out" 96 6 || { fail "PyTorch's export"; exit 1; }
  "$onnx_check" compare torch_smallervgg.onnx inputs.bin expected.bin 1e-4 && pass "tnet runs PyTorch's SmallerVGGNet as PyTorch does" ||
    fail "PyTorch's SmallerVGGNet in tnet"
  "$onnx_check" compare torch_smallervgg_view.onnx inputs.bin expected.bin 1e-4 &&
    pass "and the same network flattening with x.view(x.size(0), -1)" || fail "PyTorch's SmallerVGGNet with view() in tnet"
  if [ -d "$shared/datasets/fashion/examples" ]; then image=$(ls "$shared"/datasets/fashion/examples/*.jpg | head -1); else
    "$make_label_dataset" generated 2 2 1 >/dev/null && image=$(ls generated/*/*.png | head -1); fi
  "$bin/fashion_classify" --model torch_smallervgg.onnx --labelbin labels.txt --output photo.png "$image" >classify.txt 2>&1 &&
    grep -q "label0: " classify.txt && pass "fashion_classify runs PyTorch's model" || fail "fashion_classify with PyTorch's model: $(cat classify.txt)"
  ;;
keras)
  # Where the peers are installed (benchmarks/peers/setup.sh; TNET_KERAS_PYTHON names another
  # Python with tensorflow, tf-keras and tf2onnx): CI does not install them, so this step is skipped
  # without them even there, saying so.
  keras_python=${TNET_KERAS_PYTHON:-$here/../../.cache/peers/bin/python}
  if ! [ -x "$keras_python" ] || ! "$keras_python" -c "import tf_keras, tf2onnx" 2>/dev/null; then
    echo "SKIPPED: tensorflow, tf-keras and tf2onnx are not installed ($keras_python; bash benchmarks/peers/setup.sh installs them)"
    exit 77
  fi
  out="$work-keras"
  rm -rf "$out" && mkdir -p "$out" && cd "$out" || exit 1
  "$keras_python" "$here/../fixtures/make_keras_fixtures.py" smallervgg keras.onnx "$work/inputs.bin" 6 >keras.log 2>&1 ||
    { cat keras.log; fail "tf2onnx's conversion of a Keras SmallerVGGNet"; exit 1; }
  "$onnx_check" compare keras.onnx "$work/inputs.bin" keras.onnx.expected.bin 1e-4 &&
    pass "tnet runs the tutorial's Keras SmallerVGGNet, converted by tf2onnx, as Keras's predict does" || fail "Keras's SmallerVGGNet in tnet"
  "$keras_python" "$here/../fixtures/make_keras_fixtures.py" smallervgg3 keras3.onnx "$work/inputs.bin" 6 >keras3.log 2>&1 ||
    { cat keras3.log; fail "Keras 3's export of a SmallerVGGNet"; exit 1; }
  "$onnx_check" compare keras3.onnx "$work/inputs.bin" keras3.onnx.expected.bin 1e-4 &&
    pass "and the same network made with Keras 3 and its own ONNX export" || fail "Keras 3's SmallerVGGNet in tnet"
  mapfile -t images < <(photos)
  "$bin/fashion_classify" --model keras.onnx --labelbin "$work/labels.txt" --output photo.png "${images[0]}" >classify.txt 2>&1 &&
    grep -qE "^  [a-z]+_?[a-z]*: [0-9.]+%$" classify.txt && pass "fashion_classify runs Keras's model" ||
    fail "fashion_classify with Keras's model: $(cat classify.txt)"
  ;;
torchvision)
  python=${TNET_TORCHVISION_PYTHON:-$python}
  has_python_module torchvision || skip "python3-torchvision is not installed ($python cannot import torchvision)"
  out="$work-torchvision"
  rm -rf "$out" && mkdir -p "$out" || exit 1
  "$python" "$here/make_torchvision.py" "$out" || { fail "PyTorch's exports of torchvision's networks"; exit 1; }
  if "$onnx_check" torchvision "$out"; then
    pass "tnet runs torchvision's ResNet18 and MobileNetV2 as PyTorch does"
    rm -f "$out"/*.onnx "$out"/*.onnx.data  # some 150 MB
  else
    fail "torchvision's networks in tnet"
  fi
  ;;
networks)
  [ -x "$ort_python" ] && "$ort_python" -c "import onnxruntime" 2>/dev/null || skip "onnxruntime is not installed ($ort_python cannot import it)"
  has_python_module onnx || skip "python3-onnx is not installed"
  out="$work-networks"
  rm -rf "$out" && mkdir -p "$out" || exit 1
  "$onnx_check" networks "$out" && pass "tnet's exports load back into tnet with the same outputs" || fail "tnet's exports read back by tnet"
  "$python" "$here/networks_check.py" checker "$out" && pass "onnx.checker passes them" || fail "onnx.checker"
  "$ort_python" "$here/networks_check.py" onnxruntime "$out" && pass "ONNX Runtime runs them as tnet does" || fail "ONNX Runtime"
  ;;
networks_opencv)
  has_python_module cv2 || skip "python3-opencv is not installed"
  out="$work-networks-opencv"
  rm -rf "$out" && mkdir -p "$out" || exit 1
  "$onnx_check" networks "$out" >/dev/null || fail "tnet's exports read back by tnet"
  "$python" "$here/networks_check.py" opencv "$out" && pass "OpenCV's DNN runs them as tnet does" || fail "OpenCV"
  ;;
*)
  echo "unknown step $step" && exit 2
  ;;
esac
[ $failures = 0 ] && echo "all passed" || echo "$failures failed"
[ $failures = 0 ]
