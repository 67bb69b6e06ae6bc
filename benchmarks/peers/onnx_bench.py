"""tnet's own ONNX export in ONNX Runtime or OpenVINO, timed as bench_smallervgg times tnet's
inference (benchmarks/compare.sh runs it).

    .cache/peers/bin/python benchmarks/peers/onnx_bench.py --runtime ort MODEL.onnx
        [--threads 2] [--batch 32] [--steps 20] [--latency-runs 1000]

MODEL.onnx: an NCHW export of 96x96x3 images (bench_smallervgg --onnx writes one).
--runtime: ort (ONNX Runtime's CPU provider, all graph optimisations, ORT_ENABLE_ALL),
openvino-f32 (OpenVINO's CPU plugin with INFERENCE_PRECISION_HINT f32) or openvino (its default
precision: bf16 on CPUs with AVX512_BF16 or AMX, f32 elsewhere). OpenVINO compiles the graph once
for the batch and once for batch 1 (static shapes, as one deploys it), one stream of --threads
threads (PERFORMANCE_HINT LATENCY).

Prints `name value` lines: precision (what the runtime ran: OpenVINO's compiled model asked for its
INFERENCE_PRECISION_HINT), infer_images_per_s (the batch), infer_latency_batch1_ms and
infer_latency_batch1_p99_ms (median and 99th percentile of --latency-runs single-image runs, each
timed alone), peak_rss_mb (this process's), and the runtime's version.
"""
import argparse
import resource
import time

import numpy as np


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"needs a positive integer, got {text}")
    return value


def images(n):
    i = np.arange(n * 3 * 96 * 96, dtype=np.int64)
    return ((i * 2654435761) % 1000 / 1000).astype(np.float32).reshape(n, 3, 96, 96)


def ort_runner(model, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def make(n):
        return lambda data: session.run(None, {name: data})

    return make, "f32", "onnxruntime " + ort.__version__


def openvino_runner(model, threads, f32):
    import openvino as ov

    core = ov.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": threads}
    if f32:
        config["INFERENCE_PRECISION_HINT"] = "f32"
    precisions = set()

    def make(n):
        graph = core.read_model(model)
        graph.reshape([n, 3, 96, 96])
        compiled = core.compile_model(graph, "CPU", config)
        precisions.add(str(compiled.get_property("INFERENCE_PRECISION_HINT")))
        request = compiled.create_infer_request()
        return lambda data: request.infer({0: data})

    return make, precisions, "openvino " + ov.get_version().split("-")[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--runtime", choices=["ort", "openvino-f32", "openvino"], default="ort")
    parser.add_argument("--threads", type=positive, default=2)
    parser.add_argument("--batch", type=positive, default=32)
    parser.add_argument("--steps", type=positive, default=20)
    parser.add_argument("--latency-runs", type=positive, default=1000)
    args = parser.parse_args()

    if args.runtime == "ort":
        make, precision, version = ort_runner(args.model, args.threads)
    else:
        make, precision, version = openvino_runner(args.model, args.threads, args.runtime == "openvino-f32")
    batch, one = images(args.batch), images(1)
    run_batch, run_one = make(args.batch), make(1)

    run_batch(batch)  # warm-up
    start = time.perf_counter()
    for _ in range(args.steps):
        run_batch(batch)
    infer = time.perf_counter() - start
    run_one(one)
    times = []
    for _ in range(args.latency_runs):
        start = time.perf_counter()
        run_one(one)
        times.append(time.perf_counter() - start)
    times.sort()
    n = len(times)
    median = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
    p99 = times[max(-(-99 * n // 100), 1) - 1]  # nearest rank, as bench_smallervgg's

    if not isinstance(precision, str):  # OpenVINO's, as its compiled models report it
        names = {"f32": "f32", "float32": "f32", "<Type: 'float32'>": "f32", "bf16": "bf16", "<Type: 'bfloat16'>": "bf16",
                 "f16": "f16", "<Type: 'float16'>": "f16"}
        precision = ",".join(sorted(names.get(p, p.replace(" ", "_")) for p in precision))
    print("runtime", args.runtime)
    print("version", version.split()[1])
    print("precision", precision)
    print("threads", args.threads)
    print("batch", args.batch)
    print("infer_images_per_s %.3f" % (args.steps * args.batch / infer))
    print("infer_latency_batch1_ms %.3f" % (median * 1e3))
    print("infer_latency_batch1_p99_ms %.3f" % (p99 * 1e3))
    print("latency_runs", args.latency_runs)
    print("peak_rss_mb %.1f" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


if __name__ == "__main__":
    main()
