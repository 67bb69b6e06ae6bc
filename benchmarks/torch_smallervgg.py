#!/usr/bin/python3
"""SmallerVGGNet in PyTorch (Debian's python3-torch), timed as bench_smallervgg times tnet's.

    /usr/bin/python3 benchmarks/torch_smallervgg.py --threads 2 --batch 32 --steps 10

Prints `name value` lines: train_images_per_s (forward, backward, Adam step),
infer_images_per_s (batch as given), infer_latency_batch1_ms, peak_rss_mb. torch defaults to one
thread on this machine, so the thread count is always set explicitly.
"""
import argparse
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = smaller_vgg()
    x = torch.rand(args.batch, 3, 96, 96)
    y = (torch.rand(args.batch, 6) > 0.5).float()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.BCEWithLogitsLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        optimizer.step()

    net.train()
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    train = time.perf_counter() - start

    net.eval()
    with torch.no_grad():
        net(x)
        start = time.perf_counter()
        for _ in range(args.steps):
            torch.sigmoid(net(x))
        infer = time.perf_counter() - start
        one = x[:1].contiguous()
        net(one)
        start = time.perf_counter()
        for _ in range(args.steps * 4):
            torch.sigmoid(net(one))
        latency = (time.perf_counter() - start) / (args.steps * 4)

    print("threads", args.threads)
    print("batch", args.batch)
    print("train_images_per_s %.1f" % (args.steps * args.batch / train))
    print("infer_images_per_s %.1f" % (args.steps * args.batch / infer))
    print("infer_latency_batch1_ms %.2f" % (latency * 1e3))
    print("peak_rss_mb %.0f" % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


if __name__ == "__main__":
    main()
