"""tnet's exports of ReLU6, LeakyReLU, SiLU, HardSwish and GlobalAveragePooling2D read by consumers
tnet did not write (tests/onnx/run.sh, step activations). DIR holds what `onnx_check activations
DIR` writes: the models, the inputs (NHWC float32) and tnet's outputs for them.

    python3 activations_check.py checker DIR        onnx.checker (full check), strict shape inference
    python3 activations_check.py opencv DIR         OpenCV's DNN, within 1e-4 of tnet
    .cache/onnx-consumers/bin/python activations_check.py onnxruntime DIR    ONNX Runtime, likewise

OpenCV runs activations_no_clip.onnx: OpenCV 4.6 reads Clip only with its bounds as attributes,
which opset 11 on does not allow (they are inputs), so it cannot run ReLU6 at opset 13.
"""
import os
import sys

import numpy as np

TOLERANCE = 1e-4
SHAPE = (10, 9, 3)  # the networks' input, NHWC


def load(directory, name):
    x = np.fromfile(os.path.join(directory, "activations_inputs.bin"), dtype=np.float32).reshape(-1, *SHAPE)
    want = np.fromfile(os.path.join(directory, name + "_expected.bin"), dtype=np.float32).reshape(len(x), -1)
    return x, want.astype(np.float64)


def report(consumer, path, got, want):
    diff = float(np.abs(got.astype(np.float64) - want).max())
    print(f"{path}: {consumer}, {want.shape[0]} inputs x {want.shape[1]} outputs (spread {np.ptp(want):.3g}), "
          f"largest difference {diff:.3g}")
    if not diff <= TOLERANCE:
        sys.exit(f"FAILED: {consumer} differs from tnet by {diff:.3g} > {TOLERANCE} on {path}")


def checker(directory):
    import onnx
    for name in ("activations", "activations_nchw", "activations_no_clip"):
        path = os.path.join(directory, name + ".onnx")
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        shape = [d.dim_param or d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
        assert shape == ["N", 5], f"{path}: output shape {shape}"
        ops = sorted({n.op_type for n in model.graph.node})
        print(f"ok: {path}: onnx {onnx.__version__} check_model passes; operators {ops}")


def opencv(directory):
    import cv2
    x, want = load(directory, "activations_no_clip")
    path = os.path.join(directory, "activations_no_clip.onnx")
    net = cv2.dnn.readNetFromONNX(path)
    net.setInput(x)
    report(f"OpenCV {cv2.__version__}", path, net.forward(), want)
    print("ok: OpenCV gives tnet's outputs")


def onnxruntime(directory):
    import onnxruntime as ort
    for name, expected, nchw in (("activations", "activations", False), ("activations_nchw", "activations", True),
                                 ("activations_no_clip", "activations_no_clip", False)):
        x, want = load(directory, expected)
        if nchw:
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        path = os.path.join(directory, name + ".onnx")
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x})[0]
        report(f"ONNX Runtime {ort.__version__}", path, got, want)
    print("ok: ONNX Runtime gives tnet's outputs")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("checker", "opencv", "onnxruntime"):
        sys.exit(__doc__)
    globals()[sys.argv[1]](sys.argv[2])
