"""ONNX Runtime (PyPI's onnxruntime) runs tnet's two exports on INPUTS.bin and must give
fashion_classify's probabilities (TNET.json) within 1e-4 (tests/onnx/run.sh).

    .cache/onnx-consumers/bin/python onnxruntime_check.py NHWC.onnx NCHW.onnx INPUTS.bin TNET.json
"""
import json
import sys

import numpy as np
import onnxruntime as ort

TOLERANCE = 1e-4
SIZE = 96


def main(nhwc, nchw, inputs_path, tnet_json):
    with open(tnet_json) as f:
        items = json.load(f)
    names = list(items[0]["probabilities"])  # fashion_classify writes them in the model's order
    want = np.array([[item["probabilities"][n] for n in names] for item in items], dtype=np.float64)
    x = np.fromfile(inputs_path, dtype=np.float32).reshape(len(items), SIZE, SIZE, 3)
    worst = 0.0
    for path, data in ((nhwc, x), (nchw, np.ascontiguousarray(x.transpose(0, 3, 1, 2)))):
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: data})[0].astype(np.float64)
        if got.shape != want.shape:
            sys.exit(f"FAILED: {path}: ONNX Runtime's output has shape {got.shape}, fashion_classify's {want.shape}")
        diff = float(np.abs(got - want).max())
        worst = max(worst, diff)
        print(f"{path}: ONNX Runtime {ort.__version__} ({ort.__file__}), {len(items)} photos x {len(names)} classes, "
              f"largest difference {diff:.3g}")
    if not worst <= TOLERANCE:
        sys.exit(f"FAILED: ONNX Runtime differs from fashion_classify by {worst:.3g} > {TOLERANCE}")
    print("ok: ONNX Runtime gives fashion_classify's probabilities")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
