#!/usr/bin/python3
"""tnet's export of padded convolutions and pools, depthwise convolutions and average pools run by
consumers tnet did not write (tests/onnx/run.sh, step mobile; onnx_check mobile DIR makes DIR).

    mobile.py checker DIR        onnx.checker (full check) and strict shape inference (python3-onnx)
    mobile.py opencv DIR         OpenCV's DNN (Debian's python3-opencv, /usr/bin/python3)
    mobile.py onnxruntime DIR    ONNX Runtime (the Python of scripts/install_onnx_consumers.sh)
Each runs DIR/mobile.onnx (NHWC input) and DIR/mobile_nchw.onnx on DIR/inputs.bin and must give
tnet's outputs (DIR/expected.bin) within 1e-4.
"""
import os
import sys

import numpy as np

TOLERANCE = 1e-4
H, W, C = 33, 32, 3  # onnx_check.cpp's Mobile


def run_opencv(path, x):
    import cv2
    net = cv2.dnn.readNetFromONNX(path)
    net.setInput(x)
    return net.forward(), "OpenCV " + cv2.__version__


def run_onnxruntime(path, x):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0], "ONNX Runtime " + ort.__version__


def checker(folder):
    import onnx
    for name in ("mobile.onnx", "mobile_nchw.onnx"):
        model = onnx.load(os.path.join(folder, name))
        onnx.checker.check_model(model, full_check=True)
        out = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph.output[0].type.tensor_type.shape.dim
        shape = [d.dim_param or d.dim_value for d in out]
        assert shape == ["N", 5], f"{name}: output shape {shape}, expected ['N', 5]"
        print(f"ok: {name}: onnx {onnx.__version__} check_model passes; output {shape}")


def main(consumer, folder):
    if consumer == "checker":
        return checker(folder)
    run = {"opencv": run_opencv, "onnxruntime": run_onnxruntime}[consumer]
    want = np.fromfile(os.path.join(folder, "expected.bin"), dtype=np.float32).astype(np.float64)
    x = np.fromfile(os.path.join(folder, "inputs.bin"), dtype=np.float32)
    x = x.reshape(x.size // (H * W * C), H, W, C)
    want = want.reshape(len(x), -1)
    worst = 0.0
    for name, data in (("mobile.onnx", x), ("mobile_nchw.onnx", np.ascontiguousarray(x.transpose(0, 3, 1, 2)))):
        got, who = run(os.path.join(folder, name), data)
        got = np.asarray(got, dtype=np.float64).reshape(want.shape)
        diff = float(np.abs(got - want).max())
        worst = max(worst, diff)
        print(f"{name}: {who}, {len(x)} inputs x {want.shape[1]} outputs, largest difference {diff:.3g}")
    if not worst <= TOLERANCE:
        sys.exit(f"FAILED: {consumer} differs from tnet by {worst:.3g} > {TOLERANCE}")
    print(f"ok: {consumer} gives tnet's outputs for padded, depthwise and average-pooling layers")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("checker", "opencv", "onnxruntime"):
        sys.exit(__doc__)
    main(*sys.argv[1:])
