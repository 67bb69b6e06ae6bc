#!/usr/bin/python3
"""tnet's ONNX exports read by consumers tnet did not write (tests/onnx/run.sh).

    consumers.py checker NHWC.onnx NCHW.onnx
        onnx.checker.check_model (full check) and strict shape inference: the output is (N, classes)
    consumers.py opencv NHWC.onnx NCHW.onnx INPUTS.bin TNET.json
        OpenCV's DNN runs both on INPUTS.bin (NHWC float32, as fashion_classify feeds its network)
        and must give fashion_classify's probabilities (TNET.json, from --json) within 1e-4
"""
import json
import sys

import numpy as np

TOLERANCE = 1e-4


def class_names(model_path):
    import onnx
    meta = {p.key: p.value for p in onnx.load(model_path, load_external_data=False).metadata_props}
    return json.loads(meta["class_names"])


def expected(tnet_json, names):
    with open(tnet_json) as f:
        items = json.load(f)
    return np.array([[item["probabilities"][n] for n in names] for item in items], dtype=np.float64)


def checker(nhwc, nchw):
    import onnx
    for path in (nhwc, nchw):
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        out = inferred.graph.output[0].type.tensor_type.shape.dim
        shape = [d.dim_param or d.dim_value for d in out]
        names = json.loads({p.key: p.value for p in model.metadata_props}["class_names"])
        assert shape == ["N", len(names)], f"{path}: output shape {shape}, expected ['N', {len(names)}]"
        assert model.opset_import[0].version == 13 and model.ir_version == 7
        print(f"ok: {path}: onnx {onnx.__version__} check_model passes; output {shape}; classes {names}")


def opencv(nhwc, nchw, inputs_path, tnet_json):
    import cv2
    names = class_names(nhwc)
    want = expected(tnet_json, names)
    x = np.fromfile(inputs_path, dtype=np.float32).reshape(len(want), 96, 96, 3)
    worst = 0.0
    for path, blob in ((nhwc, x), (nchw, np.ascontiguousarray(x.transpose(0, 3, 1, 2)))):
        net = cv2.dnn.readNetFromONNX(path)
        net.setInput(blob)
        got = net.forward().astype(np.float64)
        diff = float(np.abs(got - want).max())
        worst = max(worst, diff)
        print(f"{path}: OpenCV {cv2.__version__}, {len(want)} photos x {len(names)} classes, largest difference {diff:.3g}")
    if worst > TOLERANCE:
        sys.exit(f"FAILED: OpenCV differs from fashion_classify by {worst:.3g} > {TOLERANCE}")
    print("ok: OpenCV gives fashion_classify's probabilities")


if __name__ == "__main__":
    if sys.argv[1] == "checker":
        checker(*sys.argv[2:4])
    elif sys.argv[1] == "opencv":
        opencv(*sys.argv[2:6])
    else:
        sys.exit("usage: consumers.py checker|opencv ...")
