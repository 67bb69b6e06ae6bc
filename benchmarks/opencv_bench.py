#!/usr/bin/python3
"""SmallerVGGNet's ONNX export in OpenCV's DNN module (Debian's python3-opencv), timed as
bench_smallervgg times tnet: inference on a batch of 32 (images/s) and batch-1 latency.

    /usr/bin/python3 benchmarks/opencv_bench.py MODEL_NCHW.onnx THREADS STEPS
"""
import resource
import sys
import time

import cv2
import numpy as np

model, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
cv2.setNumThreads(threads)
net = cv2.dnn.readNetFromONNX(model)
batch = np.random.default_rng(2).random((32, 3, 96, 96), dtype=np.float32)
one = np.ascontiguousarray(batch[:1])


def timed(x, runs):
    net.setInput(x)
    net.forward()
    start = time.perf_counter()
    for _ in range(runs):
        net.setInput(x)
        net.forward()
    return time.perf_counter() - start


infer = timed(batch, steps)
latency = timed(one, steps * 4) / (steps * 4)
print(f"infer_images_per_s {steps * 32 / infer:.3f}")
print(f"infer_latency_batch1_ms {latency * 1e3:.3f}")
print(f"peak_rss_mb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.3f}")
