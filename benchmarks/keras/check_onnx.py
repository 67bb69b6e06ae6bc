"""Does tnet run the Keras-trained model as Keras does? Compares fashion_classify's probabilities with Keras's predict.

    python check_onnx.py KERAS_DIR INPUTS.bin RGB.json [BGR.json]

INPUTS.bin: the photos exactly as fashion_classify feeds them (tnet's decoder and resize, RGB,
/255; float32 NHWC, written by `onnx_check inputs 96 INPUTS.bin PHOTO...`). RGB.json:
`fashion_classify --json --model KERAS_DIR/keras_rgb.onnx` on the same photos in the same order;
Keras's predict with KERAS_DIR/model.h5 on the same pixels in BGR (the order it was trained on)
must agree within 1e-4. BGR.json, optional: fashion_classify with KERAS_DIR/keras.onnx (the plain
conversion), to agree with Keras's predict on the pixels as given. Prints the largest differences
and each photo's top two labels; exits 1 when a difference exceeds 1e-4.
"""
import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

TOLERANCE = 1e-4


def main(argv):
    if len(argv) not in (3, 4):
        sys.exit(__doc__)
    keras_dir, inputs = argv[0], argv[1]
    import numpy as np
    import tf_keras as keras

    with open(os.path.join(keras_dir, "labels.txt")) as f:
        classes = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    model = keras.models.load_model(os.path.join(keras_dir, "model.h5"), compile=False)
    x = np.fromfile(inputs, dtype=np.float32).reshape(-1, 96, 96, 3)
    worst = 0.0
    for name, path, pixels in (("keras_rgb.onnx, RGB input", argv[2], x[..., ::-1]),
                               ("keras.onnx, the plain conversion", argv[3] if len(argv) == 4 else None, x)):
        if path is None:
            continue
        with open(path) as f:
            items = json.load(f)
        if len(items) != len(x):
            sys.exit(f"check_onnx.py: {path} has {len(items)} photos, {inputs} {len(x)}")
        expected = model.predict(np.ascontiguousarray(pixels), verbose=0)
        got = np.array([[item["probabilities"][c] for c in classes] for item in items])
        difference = float(np.abs(got - expected).max())
        worst = max(worst, difference)
        print(f"fashion_classify with {name}: largest difference from Keras's predict {difference:.2e} over {len(x)} photos "
              f"({'within' if difference <= TOLERANCE else 'NOT within'} {TOLERANCE:g})")
        for item, p in zip(items, expected):
            top = [classes[j] for j in np.argsort(p)[::-1][:2]]
            print(f"  {os.path.basename(item['image'])}: tnet {' '.join(item['top'])}, Keras {' '.join(top)}")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
