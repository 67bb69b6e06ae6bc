#!/usr/bin/python3
"""SmallerVGGNet in PyTorch, timed as bench_smallervgg times tnet's.

    /usr/bin/python3 benchmarks/torch_smallervgg.py --threads 2 --batch 32 --steps 10
        [--channels-last] [--bf16] [--compile]

--channels-last stores activations NHWC (as tnet does; oneDNN's fast path on PyTorch 2.x),
--bf16 runs under torch.autocast("cpu", torch.bfloat16), --compile wraps the network in
torch.compile (PyTorch 2.x only).

Prints `name value` lines: train_images_per_s (forward, backward, Adam step),
infer_images_per_s (batch as given), infer_latency_batch1_ms, peak_rss_mb. torch defaults to one
thread on this machine, so the thread count is always set explicitly.
"""
import argparse
import contextlib
import resource
import time

import torch
import torch.nn as nn


def smaller_vgg(labels=6):
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)]

    return nn.Sequential(
        *block(3, 32), nn.MaxPool2d(3), nn.Dropout(0.25),
        *block(32, 64), *block(64, 64), nn.MaxPool2d(2), nn.Dropout(0.25),
        *block(64, 128), *block(128, 128), nn.MaxPool2d(2), nn.Dropout(0.25),
        nn.Flatten(), nn.Linear(8192, 1024), nn.ReLU(), nn.BatchNorm1d(1024, eps=1e-3, momentum=0.01), nn.Dropout(0.5),
        nn.Linear(1024, labels))  # the sigmoid is fused into BCEWithLogitsLoss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = smaller_vgg()
    x = torch.rand(args.batch, 3, 96, 96)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if args.compile:
        if not hasattr(torch, "compile"):
            raise SystemExit("torch_smallervgg.py: --compile needs PyTorch 2.x, this is " + torch.__version__)
        net = torch.compile(net)
    precision = torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
    y = (torch.rand(args.batch, 6) > 0.5).float()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.BCEWithLogitsLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with precision:
            loss = loss_fn(net(x), y)
        loss.backward()
        optimizer.step()

    net.train()
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    train = time.perf_counter() - start

    net.eval()
    with torch.no_grad(), precision:
        net(x)
        start = time.perf_counter()
        for _ in range(args.steps):
            torch.sigmoid(net(x))
        infer = time.perf_counter() - start
        one = x[:1].clone()
        net(one)
        start = time.perf_counter()
        for _ in range(args.steps * 4):
            torch.sigmoid(net(one))
        latency = (time.perf_counter() - start) / (args.steps * 4)

    print("torch", torch.__version__)
    print("threads", args.threads)
    print("batch", args.batch)
    print("train_images_per_s %.1f" % (args.steps * args.batch / train))
    print("infer_images_per_s %.1f" % (args.steps * args.batch / infer))
    print("infer_latency_batch1_ms %.2f" % (latency * 1e3))
    print("peak_rss_mb %.0f" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


if __name__ == "__main__":
    main()
