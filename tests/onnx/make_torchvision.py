"""torchvision's resnet18 and mobilenet_v2 exported to ONNX by PyTorch, for tnet's import test
(tests/onnx/run.sh, step torchvision: each loads into tnet::models::ResNet18<96, 96, 3> or
MobileNetV2<96, 96, 3> and must give PyTorch's outputs within 1e-4).

    python3 make_torchvision.py OUT_DIR [EXPORTERS]

EXPORTERS is a comma-separated list of the ways a user exports (default: every one this PyTorch
has):
  folded     torch.onnx.export(model.eval(), x, path) as most users call it: BatchNorm folded into
             the convolution before it (a Conv with a bias, no BatchNormalization)
  unfolded   the same with training=TrainingMode.PRESERVE and do_constant_folding=False: every
             BatchNormalization kept
  shortcut_first  ResNet18 only: folded, from a BasicBlock whose forward computes the projection
             shortcut before the body and adds them the other way round, so that the shortcut's
             nodes come first in the graph
  dynamo     torch 2.x's default, dynamo=True (when onnxscript is installed): opset 18 or later,
             the weights in NET_dynamo.onnx.data beside the model (external data)
For each network NET and exporter E: OUT_DIR/NET_E.onnx, one line "NET_E.onnx NET BATCH OUTPUTS" in
OUT_DIR/models.txt; for each network, OUT_DIR/NET.input.bin (a batch, NHWC float32, as tnet takes
it) and OUT_DIR/NET.expected.bin (PyTorch's outputs, float32). The weights are torchvision's
random initialisation from a fixed seed, and every batch norm has its own running statistics,
scale and shift away from the defaults, so a statistic read wrongly shows.
"""
import os
import sys
import warnings

import numpy as np
import torch
import torchvision

NETWORKS = {"resnet18": torchvision.models.resnet18, "mobilenet_v2": torchvision.models.mobilenet_v2}
SIZE, CLASSES, BATCH = 96, 6, 2


def build(name):
    torch.manual_seed(2024)
    net = NETWORKS[name](num_classes=CLASSES)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
            if isinstance(m, torch.nn.Linear):
                m.weight.uniform_(-0.1, 0.1)  # torchvision's MobileNetV2 starts it at N(0, 0.01): outputs near 0
                m.bias.uniform_(-0.3, 0.3)
    return net.eval()


def shortcut_first(self, x):
    """torchvision's BasicBlock.forward with the shortcut computed first and added first."""
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    return self.relu(identity + out)


def export(net, x, path, exporter):
    if exporter == "shortcut_first":
        torchvision.models.resnet.BasicBlock.forward, original = shortcut_first, torchvision.models.resnet.BasicBlock.forward
        try:
            return export(net, x, path, "folded")
        finally:
            torchvision.models.resnet.BasicBlock.forward = original
    kwargs = dict(input_names=["image"], output_names=["logits"])
    if exporter == "dynamo":
        torch.onnx.export(net, (x,), path, dynamo=True, **kwargs)
        return
    kwargs["dynamic_axes"] = {"image": {0: "batch"}, "logits": {0: "batch"}}
    if int(torch.__version__.split(".")[0]) >= 2:
        kwargs["dynamo"] = False
    if exporter == "unfolded":
        kwargs.update(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    torch.onnx.export(net, x, path, **kwargs)


def available():
    ways = ["folded", "unfolded", "shortcut_first"]
    try:
        import onnxscript  # noqa: F401  (torch's dynamo exporter needs it)
        if int(torch.__version__.split(".")[0]) >= 2:
            ways.append("dynamo")
    except ImportError:
        pass
    return ways


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    out = sys.argv[1]
    exporters = sys.argv[2].split(",") if len(sys.argv) == 3 else available()
    os.makedirs(out, exist_ok=True)
    warnings.filterwarnings("ignore")
    lines = []
    for name in NETWORKS:
        net = build(name)
        torch.manual_seed(7)
        x = torch.rand(BATCH, 3, SIZE, SIZE) * 4 - 2
        with torch.no_grad():
            y = net(x)
        x.permute(0, 2, 3, 1).contiguous().numpy().astype(np.float32).tofile(os.path.join(out, name + ".input.bin"))
        y.numpy().astype(np.float32).tofile(os.path.join(out, name + ".expected.bin"))
        for exporter in exporters:
            if exporter == "shortcut_first" and name != "resnet18":
                continue
            file = f"{name}_{exporter}.onnx"
            export(net, x, os.path.join(out, file), exporter)
            lines.append(f"{file} {name} {BATCH} {CLASSES}\n")
        print(f"{name}: PyTorch {torch.__version__}, torchvision {torchvision.__version__}, exported {', '.join(exporters)}; "
              f"outputs from {float(y.min()):.3g} to {float(y.max()):.3g}")
    with open(os.path.join(out, "models.txt"), "w") as f:
        f.writelines(lines)


if __name__ == "__main__":
    main()
