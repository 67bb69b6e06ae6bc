#!/usr/bin/python3
"""OpenCV's DNN and fashion_classify on photos already at the network's input size (tests/onnx/run.sh).

    opencv_photos.py BIN_DIR WORK MODEL.onnx LABELS PHOTO...
        makes each PHOTO a SIZE x SIZE PNG (cv2.resize, INTER_AREA), classifies them with
        fashion_classify --json, and feeds OpenCV's DNN each PNG's own pixels (RGB, v / 255, no
        resize): both must agree within 1e-4, so a photo at the input size reaches tnet's network
        unfiltered (its resize to the same size is a copy)
"""
import json
import os
import subprocess
import sys

import cv2
import numpy as np

TOLERANCE = 1e-4


def main(bin_dir, work, model, labels, *photos):
    import onnx
    meta = {p.key: p.value for p in onnx.load(model, load_external_data=False).metadata_props}
    names = json.loads(meta["class_names"])
    net = cv2.dnn.readNetFromONNX(model)
    size = int(onnx.load(model, load_external_data=False).graph.input[0].type.tensor_type.shape.dim[1].dim_value)
    folder = os.path.join(work, "at_input_size")
    os.makedirs(folder, exist_ok=True)
    paths = []
    for i, photo in enumerate(photos[:8]):
        image = cv2.imread(photo, cv2.IMREAD_COLOR)
        assert image is not None, photo
        path = os.path.join(folder, f"{i}.png")
        cv2.imwrite(path, cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
        paths.append(path)
    os.makedirs(os.path.join(folder, "labelled"), exist_ok=True)
    out = subprocess.run([os.path.join(bin_dir, "fashion_classify"), "--model", model, "--labelbin", labels, "--json", "--output",
                          os.path.join(folder, "labelled")] + paths, check=True, capture_output=True, text=True).stdout
    items = json.loads(out)
    want = np.array([[item["probabilities"][n] for n in names] for item in items], dtype=np.float64)
    pixels = np.stack([cv2.cvtColor(cv2.imread(p, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in paths])
    net.setInput(pixels.astype(np.float32) * np.float32(1 / 255))
    got = net.forward().astype(np.float64)
    worst = float(np.abs(got - want).max())
    print(f"{len(paths)} photos of {size}x{size}: OpenCV {cv2.__version__} on their own pixels, largest difference {worst:.3g}")
    if worst > TOLERANCE:
        sys.exit(f"FAILED: OpenCV differs from fashion_classify by {worst:.3g} > {TOLERANCE} on photos at the input size")
    print("ok: OpenCV on photos at the input size gives fashion_classify's probabilities")


if __name__ == "__main__":
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    main(*sys.argv[1:])
