"""SmallerVGGNet's layers in PyTorch 2.x, each timed alone by torch.profiler (benchmarks/layers.sh runs it).

    .cache/peers/bin/python benchmarks/peers/torch_layers.py --mode train|infer
        [--net smallervgg] [--threads 2] [--batch 32] [--steps 10]

The network is benchmarks/peers/torch_bench.py's (imported, the same modules in the same order as
tnet's examples/fashion/smaller_vgg.hpp), eager fp32, channels-last, on random 96x96x3 inputs.
--mode train times forward and backward of a batch (no optimizer step); --mode infer times
the forward under torch.no_grad() in eval mode. Layer i is the network's i-th module; the last
index, one past them, is the sigmoid: BCEWithLogitsLoss in training (it fuses the sigmoid, as
torch_bench.py trains), torch.sigmoid in inference. tnet's layer indices are the same.

Attribution: each module's forward runs inside torch.profiler.record_function("layer I"); a
layer's forward is that range's time. Its backward is the time of the autograd nodes
("autograd::engine::evaluate_function: ...") whose sequence number is that of an operation the
layer's forward recorded; nodes no layer recorded (AccumulateGrad, which adds a parameter's
gradient to .grad) add up in `other_backward_ms`; a layer with weights that gets no node stops
the run with an error (a PyTorch whose events link otherwise). Each of --steps steps is profiled
on its own, after two warm-up steps; each figure is the median over the steps.

Prints `name value` lines: torch, net, mode, threads, batch, steps; per layer
`layer I KIND forward_ms X backward_ms Y forward_flops F` (backward_ms 0 in inference;
forward_flops: 2 x the multiply-adds of a Conv2d or Linear over the batch, 0 for the others);
other_backward_ms; profiled_ms (the median of the profiled steps' summed layers); and step_ms: the
median of --steps steps timed without the profiler (forward, or forward and backward), so that the
profiler's own cost shows as profiled_ms - step_ms.
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_bench  # noqa: E402  (the networks, as compare.sh times them)


def flops_per_batch(model, x):
    """2 x multiply-adds of each Conv2d and Linear of the Sequential `model` on x, by index."""
    counts = []
    h = x
    with torch.no_grad():
        for module in model:
            out = module(h)
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                macs = out.numel() * (module.in_channels // module.groups) * kh * kw
            elif isinstance(module, nn.Linear):
                macs = out.numel() * module.in_features
            else:
                macs = 0
            counts.append(2 * macs)
            h = out
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--net", choices=["smallervgg"], default="smallervgg")
    parser.add_argument("--mode", choices=["train", "infer"], required=True)
    parser.add_argument("--threads", type=torch_bench.positive, default=2)
    parser.add_argument("--batch", type=torch_bench.positive, default=32)
    parser.add_argument("--steps", type=torch_bench.positive, default=10)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    labels = 6
    model = torch_bench.network(args.net, labels).to(memory_format=torch.channels_last)
    if not isinstance(model, nn.Sequential):
        raise SystemExit(f"torch_layers.py: --net {args.net} is not a Sequential; its layers have no tnet index")
    x = torch.rand(args.batch, 3, 96, 96).contiguous(memory_format=torch.channels_last)
    y = (torch.rand(args.batch, labels) > 0.5).float()
    loss_fn = nn.BCEWithLogitsLoss()
    training = args.mode == "train"
    model.train(training)
    depth = len(model)
    kinds = [type(m).__name__ for m in model] + ["BCEWithLogitsLoss" if training else "Sigmoid"]
    flops = flops_per_batch(model.eval(), x) + [0]
    model.train(training)

    def forward(profiled):
        h = x
        for i, module in enumerate(model):
            if profiled:
                with record_function(f"layer {i}"):
                    h = module(h)
            else:
                h = module(h)
        if profiled:
            with record_function(f"layer {depth}"):
                return loss_fn(h, y) if training else torch.sigmoid(h)
        return loss_fn(h, y) if training else torch.sigmoid(h)

    def step(profiled=False):
        if training:
            model.zero_grad(set_to_none=True)
            forward(profiled).backward()
        else:
            with torch.no_grad():
                forward(profiled)

    for _ in range(2):
        step()
    whole = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        whole.append(time.perf_counter() - start)

    forward_us = [[] for _ in range(depth + 1)]
    backward_us = [[] for _ in range(depth + 1)]
    other_us, profiled_us = [], []
    prefix = "autograd::engine::evaluate_function: "
    for _ in range(args.steps):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step(profiled=True)
        events = prof.events()
        layer_of = {}  # sequence number of a forward operation -> its layer
        fwd = [0.0] * (depth + 1)
        for e in events:
            if e.name.startswith("layer "):
                i = int(e.name.split()[1])
                fwd[i] += e.time_range.elapsed_us()
                stack = list(e.cpu_children)
                while stack:
                    child = stack.pop()
                    if child.sequence_nr >= 0:
                        layer_of.setdefault(child.sequence_nr, i)
                    stack.extend(child.cpu_children)
        bwd = [0.0] * (depth + 1)
        other = 0.0
        for e in events:
            if e.name.startswith(prefix):
                i = layer_of.get(e.sequence_nr)
                if i is None:
                    other += e.time_range.elapsed_us()
                else:
                    bwd[i] += e.time_range.elapsed_us()
        # Every layer with weights has a backward node of its own; none found means this
        # PyTorch's profiler links backward nodes to forward operations differently.
        for i, module in enumerate(model):
            if training and any(True for _ in module.parameters()) and bwd[i] == 0:
                raise SystemExit(f"torch_layers.py: torch.profiler showed no backward node of layer {i} ({kinds[i]}): "
                                 f"torch {torch.__version__}'s events do not link backward to forward by sequence number")
        for i in range(depth + 1):
            forward_us[i].append(fwd[i])
            backward_us[i].append(bwd[i])
        other_us.append(other)
        profiled_us.append(sum(fwd) + sum(bwd) + other)

    print("torch", torch.__version__)
    print("net", args.net)
    print("mode", args.mode)
    print("threads", args.threads)
    print("batch", args.batch)
    print("steps", args.steps)
    for i in range(depth + 1):
        print("layer %d %s forward_ms %.4f backward_ms %.4f forward_flops %d" % (
            i, kinds[i], statistics.median(forward_us[i]) / 1e3, statistics.median(backward_us[i]) / 1e3, flops[i]))
    print("other_backward_ms %.4f" % (statistics.median(other_us) / 1e3))
    print("profiled_ms %.4f" % (statistics.median(profiled_us) / 1e3))
    print("step_ms %.4f" % (statistics.median(whole) * 1e3))


if __name__ == "__main__":
    main()
