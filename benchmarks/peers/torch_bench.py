"""A network in PyTorch 2.x, timed as bench_smallervgg times tnet's (benchmarks/compare.sh runs it).

    .cache/peers/bin/python benchmarks/peers/torch_bench.py --net smallervgg --mode eager
        [--threads 2] [--batch 32] [--steps 20] [--latency-runs 1000]

--net: smallervgg (tnet's examples/fashion/smaller_vgg.hpp, layer for layer), resnet18 or
mobilenetv2 (torchvision's, 6 classes); 96x96x3 inputs, 6 labels, multi-label (a sigmoid per
label, binary cross-entropy) as the fashion example trains.
--mode: eager (fp32), bf16 (eager under torch.autocast("cpu", torch.bfloat16)) or compile
(torch.compile, fp32, one static graph per shape). Every mode stores activations channels-last
(NHWC, as tnet does), oneDNN's fast path.

Prints `name value` lines: train_images_per_s (forward, backward, Adam step on a batch),
infer_images_per_s (the batch, sigmoid included), infer_latency_batch1_ms and
infer_latency_batch1_p99_ms (median and 99th percentile of --latency-runs single-image
predictions, each timed alone), peak_rss_mb (this process's), and for --mode compile compile_s:
the seconds of the first calls, which compile (training, inference at the batch and at batch 1),
not counted in the other figures. Each mode runs in its own process, so that peak_rss_mb is its own.
"""
import argparse
import contextlib
import resource
import time

import torch
import torch.nn as nn


def smaller_vgg(labels):
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)]

    return nn.Sequential(
        *block(3, 32), nn.MaxPool2d(3), nn.Dropout(0.25),
        *block(32, 64), *block(64, 64), nn.MaxPool2d(2), nn.Dropout(0.25),
        *block(64, 128), *block(128, 128), nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Flatten(), nn.Linear(8192, 1024), nn.ReLU(), nn.BatchNorm1d(1024, eps=1e-3, momentum=0.01), nn.Dropout(0.5),
        nn.Linear(1024, labels))  # the sigmoid is fused into BCEWithLogitsLoss (training), applied after (inference)


def network(name, labels):
    if name == "smallervgg":
        return smaller_vgg(labels)
    import torchvision  # only the torchvision networks need it

    if name == "resnet18":
        return torchvision.models.resnet18(num_classes=labels)
    return torchvision.models.mobilenet_v2(num_classes=labels)


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"needs a positive integer, got {text}")
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", choices=["smallervgg", "resnet18", "mobilenetv2"], default="smallervgg")
    parser.add_argument("--mode", choices=["eager", "bf16", "compile"], default="eager")
    parser.add_argument("--threads", type=positive, default=2)
    parser.add_argument("--batch", type=positive, default=32)
    parser.add_argument("--steps", type=positive, default=20)
    parser.add_argument("--latency-runs", type=positive, default=1000)
    args = parser.parse_args()
    if args.mode == "compile" and not hasattr(torch, "compile"):
        raise SystemExit("torch_bench.py: --mode compile needs PyTorch 2.x, this is " + torch.__version__)

    torch.set_num_threads(args.threads)  # torch's default here may be one thread, or all cores
    torch.manual_seed(0)
    labels = 6
    model = network(args.net, labels).to(memory_format=torch.channels_last)
    net = torch.compile(model, dynamic=False) if args.mode == "compile" else model
    precision = torch.autocast("cpu", dtype=torch.bfloat16) if args.mode == "bf16" else contextlib.nullcontext()
    x = torch.rand(args.batch, 3, 96, 96).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(args.batch, labels) > 0.5).float()
    one = x[:1].clone().contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)  # Keras's epsilon, as tnet's
    loss_fn = nn.BCEWithLogitsLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with precision:
            loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()

    def predict(batch):
        with precision:
            return torch.sigmoid(net(batch))

    warm_up = 0.0  # the first calls' seconds, which compile under --mode compile
    net.train()
    start = time.perf_counter()
    step()
    warm_up += time.perf_counter() - start
    step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    train = time.perf_counter() - start

    net.eval()
    with torch.no_grad():
        start = time.perf_counter()
        predict(x)
        warm_up += time.perf_counter() - start
        predict(x)
        start = time.perf_counter()
        for _ in range(args.steps):
            predict(x)
        infer = time.perf_counter() - start
        start = time.perf_counter()
        predict(one)
        warm_up += time.perf_counter() - start
        predict(one)
        times = []
        for _ in range(args.latency_runs):
            start = time.perf_counter()
            predict(one)
            times.append(time.perf_counter() - start)
    times.sort()
    n = len(times)
    median = times[n // 2] if n % 2 else (times[n // 2 - 1] + times[n // 2]) / 2
    p99 = times[max(-(-99 * n // 100), 1) - 1]  # nearest rank, as bench_smallervgg's

    print("torch", torch.__version__)
    print("net", args.net)
    print("mode", args.mode)
    print("precision", "bf16" if args.mode == "bf16" else "f32")
    print("threads", args.threads)
    print("batch", args.batch)
    print("train_images_per_s %.3f" % (args.steps * args.batch / train))
    print("infer_images_per_s %.3f" % (args.steps * args.batch / infer))
    print("infer_latency_batch1_ms %.3f" % (median * 1e3))
    print("infer_latency_batch1_p99_ms %.3f" % (p99 * 1e3))
    print("latency_runs", args.latency_runs)
    print("peak_rss_mb %.1f" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
    if args.mode == "compile":
        print("compile_s %.1f" % warm_up)


if __name__ == "__main__":
    main()
