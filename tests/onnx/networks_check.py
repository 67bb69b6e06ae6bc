"""Consumers tnet did not write run the exports of tests/onnx_networks.hpp (tests/onnx/run.sh,
step networks) and must give tnet's outputs within 1e-4.

    python3 networks_check.py checker DIR        onnx.checker (full check), strict shape inference
    python3 networks_check.py opencv DIR         OpenCV's DNN
    .cache/onnx-consumers/bin/python networks_check.py onnxruntime DIR
DIR holds what `onnx_check networks DIR` wrote: networks.txt, and for each network NAME.onnx
(NHWC input), NAME_nchw.onnx, NAME.input.bin and NAME.expected.bin. A network marked no-opencv
is one OpenCV 4.6 cannot read (ReLU6's Clip with its bounds as inputs) and is left to the others.
"""
import os
import sys

import numpy as np

TOLERANCE = 1e-4


def run_onnxruntime(path, x):
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0], f"ONNX Runtime {ort.__version__}"


def run_opencv(path, x):
    import cv2
    net = cv2.dnn.readNetFromONNX(path)
    net.setInput(x)
    return net.forward(), f"OpenCV {cv2.__version__}"


def checker(folder, networks):
    import onnx
    for name, n, h, w, c, outputs, _ in networks:
        for suffix in (".onnx", "_nchw.onnx"):
            path = os.path.join(folder, name + suffix)
            model = onnx.load(path)
            onnx.checker.check_model(model, full_check=True)
            inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
            shape = [d.dim_param or d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim]
            if shape != ["N", int(outputs)]:
                sys.exit(f"FAILED: {path}: output shape {shape}, expected ['N', {outputs}]")
            ops = sorted({node.op_type for node in model.graph.node})
            print(f"ok: {name}{suffix}: onnx {onnx.__version__} check_model passes; operators {ops}")


def main(consumer, folder):
    with open(os.path.join(folder, "networks.txt")) as f:
        networks = [line.split() for line in f if line.strip()]
    if not networks:
        sys.exit(f"FAILED: {folder}/networks.txt lists no network")
    if consumer == "checker":
        return checker(folder, networks)
    run = {"onnxruntime": run_onnxruntime, "opencv": run_opencv}[consumer]
    failures = 0
    for name, n, h, w, c, outputs, readers in networks:
        if consumer == "opencv" and readers == "no-opencv":
            print(f"{name}: not for OpenCV 4.6 (Clip with its bounds as inputs)")
            continue
        n, h, w, c, outputs = int(n), int(h), int(w), int(c), int(outputs)
        x = np.fromfile(os.path.join(folder, name + ".input.bin"), dtype=np.float32).reshape(n, h, w, c)
        want = np.fromfile(os.path.join(folder, name + ".expected.bin"), dtype=np.float32).reshape(n, outputs).astype(np.float64)
        for suffix, data in ((".onnx", x), ("_nchw.onnx", np.ascontiguousarray(x.transpose(0, 3, 1, 2)))):
            path = os.path.join(folder, name + suffix)
            try:
                got, who = run(path, data)
                got = np.asarray(got, dtype=np.float64).reshape(n, -1)
                diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
            except Exception as e:  # a consumer that refuses the file fails the check, naming why
                print(f"FAILED: {name}{suffix}: {consumer} cannot run it: {e}")
                failures += 1
                continue
            ok = diff <= TOLERANCE
            failures += not ok
            print(f"{'ok' if ok else 'FAILED'}: {name}{suffix}: {who}, {n} x {outputs} outputs, largest difference {diff:.3g}")
    if failures:
        sys.exit(f"FAILED: {failures} export(s) not run as tnet runs them")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("checker", "onnxruntime", "opencv"):
        sys.exit(__doc__)
    main(*sys.argv[1:])
