#!/usr/bin/python3
"""SmallerVGGNet built in PyTorch and exported to ONNX as a PyTorch user would, for tnet's import test.

    /usr/bin/python3 tests/onnx/torch_smallervgg.py OUT_DIR [SIZE] [LABELS]
    /usr/bin/python3 tests/onnx/torch_smallervgg.py --fuzz-seed tests/fixtures/fuzz/onnx/pytorch_tiny.onnx

Writes OUT_DIR/torch_smallervgg.onnx (NCHW input, opset 13, PyTorch's default BatchNorm epsilon
1e-5 and its CHW flatten order, both of which tnet's importer converts), the same network
flattening with x.view(x.size(0), -1) as OUT_DIR/torch_smallervgg_view.onnx, OUT_DIR/inputs.bin (4
inputs, NHWC float32, as tnet takes them), OUT_DIR/expected.bin (PyTorch's outputs for them,
float32) and OUT_DIR/labels.txt. The weights are random but not trivial: every BatchNorm has its
own running statistics, scale and shift, so a wrong permutation or statistic shows.
"""
import os
import sys

import numpy as np
import torch
from torch import nn


class ViewFlatten(nn.Module):
    """x.view(x.size(0), -1), the other way PyTorch code flattens: exported as a shape computed
    from the input (Shape, Gather, Unsqueeze, Concat) and a Reshape."""

    def forward(self, x):
        return x.view(x.size(0), -1)


def smaller_vgg(size, labels, flatten=nn.Flatten):
    def block(c_in, c_out):
        return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(c_out)]

    features = size // 3 // 2 // 2
    return nn.Sequential(
        *block(3, 32), nn.MaxPool2d(3), nn.Dropout(0.25),
        *block(32, 64), *block(64, 64), nn.MaxPool2d(2), nn.Dropout(0.25),
        *block(64, 128), *block(128, 128), nn.MaxPool2d(2), nn.Dropout(0.25),
        flatten(), nn.Linear(128 * features * features, 1024), nn.ReLU(), nn.BatchNorm1d(1024), nn.Dropout(0.5),
        nn.Linear(1024, labels), nn.Sigmoid())


def fuzz_seed(path):
    """The fuzz target's network (fuzz/fuzz_onnx.cpp) as PyTorch exports it, flattening with
    nn.Flatten and with view(): small seeds."""
    for flatten, name in ((nn.Flatten, path), (ViewFlatten, path.replace(".onnx", "_view.onnx"))):
        torch.manual_seed(7)
        net = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(3), flatten(), nn.Linear(48, 3), nn.Sigmoid())
        net.eval()
        torch.onnx.export(net, torch.rand(1, 2, 4, 4), name, opset_version=13, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})


def main():
    if sys.argv[1] == "--fuzz-seed":
        return fuzz_seed(sys.argv[2])
    out = sys.argv[1]
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 96
    labels = int(sys.argv[3]) if len(sys.argv) > 3 else 6
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(1234)
    net = smaller_vgg(size, labels)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.02, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        net[-2].weight.uniform_(-0.5, 0.5)  # logits spread widely: outputs far from 0.5 and from each other
    net.eval()
    x = torch.rand(4, 3, size, size)
    with torch.no_grad():
        y = net(x)
    path = os.path.join(out, "torch_smallervgg.onnx")
    torch.onnx.export(net, x, path, opset_version=13, input_names=["image"], output_names=["probabilities"],
                      dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}})
    viewed = smaller_vgg(size, labels, ViewFlatten)
    viewed.load_state_dict(net.state_dict())
    viewed.eval()
    torch.onnx.export(viewed, x, os.path.join(out, "torch_smallervgg_view.onnx"), opset_version=13, input_names=["image"],
                      output_names=["probabilities"], dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}})
    x.permute(0, 2, 3, 1).contiguous().numpy().astype(np.float32).tofile(os.path.join(out, "inputs.bin"))
    y.numpy().astype(np.float32).tofile(os.path.join(out, "expected.bin"))
    with open(os.path.join(out, "labels.txt"), "w") as f:
        f.write("# tnet MultiLabelBinarizer v1\n" + "".join("label%d\n" % i for i in range(labels)))
    print("wrote", path, "with PyTorch", torch.__version__, "; outputs from", float(y.min()), "to", float(y.max()))


if __name__ == "__main__":
    main()
