#!/usr/bin/env python3
"""A trained fashion model's validation accuracy in float and in bfloat16 (fashion_classify
--precision: its dense kernels rounded, and on CPUs with AVX512_BF16 its convolutions computed in
bfloat16), side by side.

    python3 benchmarks/precision_accuracy.py --classify build/examples/fashion_classify \\
        --model out/fashion.tnet --labelbin out/labels.txt \\
        --dataset ../shared/datasets/fashion/dataset --val-list out/fashion.val.txt

The validation list is the one fashion_train writes beside the model (paths relative to the
dataset, one a line); a photo's true labels are its folder's name, colour_garment. Prints, for each
precision, the binary accuracy (every label of every photo, present when its probability is above
0.5) and the exact-match rate (all of a photo's labels right), then how far the probabilities
moved and how many decisions changed.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def classify(args, precision, images, out):
    command = [args.classify, "--model", args.model, "--labelbin", args.labelbin, "--json", "--precision", precision,
               "--output", out] + images
    result = subprocess.run(command, check=True, capture_output=True, text=True)
    return {os.path.relpath(item["image"], args.dataset): item["probabilities"] for item in json.loads(result.stdout)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for name in ("--classify", "--model", "--labelbin", "--dataset", "--val-list"):
        parser.add_argument(name, required=True)
    args = parser.parse_args()
    with open(args.val_list) as f:
        relative = [line.strip() for line in f if line.strip()]
    images = [os.path.join(args.dataset, path) for path in relative]
    results = {}
    with tempfile.TemporaryDirectory() as out:
        for precision in ("fp32", "bf16"):
            results[precision] = classify(args, precision, images, out)
    for precision, probabilities in results.items():
        right = exact = 0
        for path in relative:
            truth = set(os.path.basename(os.path.dirname(path)).split("_"))
            decisions = [(p is not None and p > 0.5) == (label in truth) for label, p in probabilities[path].items()]
            right += sum(decisions)
            exact += all(decisions)
        labels = len(next(iter(probabilities.values())))
        print(f"{precision}: {len(relative)} photos, binary accuracy {right / (len(relative) * labels):.4f}, "
              f"exact match {exact / len(relative):.4f}")
    moved, changed = 0.0, 0
    for path in relative:
        for label, p in results["fp32"][path].items():
            q = results["bf16"][path][label]
            moved = max(moved, abs(p - q))
            changed += (p > 0.5) != (q > 0.5)
    print(f"bf16 against fp32: largest probability change {moved:.6f}, decisions changed {changed}")


if __name__ == "__main__":
    sys.exit(main())
