"""SmallerVGGNet's ONNX export in ONNX Runtime (PyPI's onnxruntime), timed as bench_smallervgg times
tnet: inference on a batch of 32 (images/s) and batch-1 latency, after a warm-up run.

    .cache/peers/bin/python benchmarks/onnx_runtime_bench.py MODEL.onnx THREADS STEPS
"""
import resource
import sys
import time

import numpy as np
import onnxruntime as ort


def main(model, threads, steps):
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    nchw = "nchw" in model  # fashion_export --nchw's file, by its name here

    def feed(n):
        i = np.arange(n * 96 * 96 * 3, dtype=np.int64)
        data = ((i * 2654435761) % 1000 / 1000).astype(np.float32)
        return {name: data.reshape((n, 3, 96, 96) if nchw else (n, 96, 96, 3))}

    batch, one = feed(32), feed(1)
    session.run(None, batch)
    start = time.perf_counter()
    for _ in range(steps):
        session.run(None, batch)
    infer = time.perf_counter() - start
    session.run(None, one)
    start = time.perf_counter()
    for _ in range(steps * 4):
        session.run(None, one)
    latency = (time.perf_counter() - start) / (steps * 4)
    print(f"infer_images_per_s {steps * 32 / infer:.3f}")
    print(f"infer_latency_batch1_ms {latency * 1e3:.3f}")
    print(f"peak_rss_mb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.3f}")
    print(f"version {ort.__version__}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2, int(sys.argv[3]) if len(sys.argv) > 3 else 10)
