"""The table and the plot of benchmarks/keras/run.sh's results.

    python report.py [RESULTS]      (default benchmarks/results/keras)

Reads RESULTS/seedN/{tnet,keras}/ and prints Markdown: per seed and as mean, standard deviation
and range over the seeds, each system's validation binary accuracy and exact match of its final
model (tnet: the saved model, as fashion_train's report gives it after its final passes; Keras:
the last epoch, the model the tutorial saves), the best epoch of each, the median seconds per
epoch (training and validation) and peak memory (tnet: /usr/bin/time's maximum resident set
over the run's sessions; Keras: ru_maxrss at its epochs' ends, before the ONNX export); then the
seven example photos' top two labels. Draws RESULTS/curves.png: both systems' validation binary accuracy and exact match per epoch,
every seed. A run still in progress is shown with the epochs it has.
"""
import csv
import json
import os
import re
import statistics
import sys


def read_history(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def peak_from_time(path):
    """The largest 'Maximum resident set size' of /usr/bin/time -v's reports in path, in MB."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        sizes = [int(m) for m in re.findall(r"Maximum resident set size \(kbytes\): (\d+)", f.read())]
    return max(sizes) / 1024 if sizes else None


def tnet_final(log):
    """The saved model's validation figures, from fashion_train's report (the last one in the log)."""
    if not os.path.exists(log):
        return None
    with open(log, errors="replace") as f:
        found = re.findall(r"validation \((\d+) images\): binary accuracy ([\d.]+), exact match ([\d.]+)", f.read())
    return {"acc": float(found[-1][1]), "exact": float(found[-1][2])} if found else None


def read_run(root, seed):
    t, k = os.path.join(root, seed, "tnet"), os.path.join(root, seed, "keras")
    runs = {}
    for name, folder in (("tnet", t), ("Keras", k)):
        history = read_history(os.path.join(folder, "history.csv"))
        if not history:
            continue
        r = {"history": history, "epochs": len(history), "peak": peak_from_time(os.path.join(folder, "time.txt")),
             "seconds": statistics.median(h["seconds"] for h in history)}
        r["best_acc"] = max(history, key=lambda h: h["val_acc"])
        r["best_exact"] = max(history, key=lambda h: h["val_exact_match"])
        if name == "tnet":
            final = tnet_final(os.path.join(folder, "train.log"))
            r["complete"] = final is not None and os.path.exists(os.path.join(folder, "fashion.tnet")) and not os.path.exists(
                os.path.join(folder, "fashion.tnet.checkpoint"))
            r["final"] = final if r["complete"] else None
            examples = os.path.join(folder, "examples.json")
            r["examples"] = {os.path.basename(i["image"]): i["top"] for i in json.load(open(examples))} if os.path.exists(examples) else {}
        else:
            summary = os.path.join(folder, "run.json")
            r["complete"] = os.path.exists(summary)
            last = history[-1]
            r["final"] = {"acc": last["val_acc"], "exact": last["val_exact_match"]} if r["complete"] else None
            r["examples"] = {}
            if r["complete"]:
                s = json.load(open(summary))
                r["peak"] = s["peak_mb"]  # training's, over its sessions (time.txt's includes the ONNX export)
                r["examples"] = {name: e["top"] for name, e in s["examples"].items()}
            in_tnet = os.path.join(folder, "tnet_classify.json")
            r["examples_in_tnet"] = {os.path.basename(i["image"]): i["top"] for i in json.load(open(in_tnet))} if os.path.exists(in_tnet) else {}
        runs[name] = r
    return runs


def spread(values, form=".4f"):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], form)
    mean, sd = statistics.mean(values), statistics.stdev(values)
    return f"{mean:{form}} ± {sd:{form}} ({min(values):{form}}-{max(values):{form}})"


def compare_finals(runs, seeds):
    """tnet's final model against Keras's on the seeds where both completed: the differences seed by
    seed, and whether the two systems' ranges over the seeds overlap (issue 29's goal is tnet ahead
    beyond the seed-to-seed spread: its worst seed above Keras's best)."""
    both = [s for s in seeds if all(runs[s].get(n) and runs[s][n]["final"] for n in ("tnet", "Keras"))]
    if not both:
        return
    print("\ntnet's final model against Keras's, in points (seeds " + ", ".join(s[4:] for s in both) + "):\n")
    for key, title in (("acc", "val binary acc"), ("exact", "val exact match")):
        diff = [100 * (runs[s]["tnet"]["final"][key] - runs[s]["Keras"]["final"][key]) for s in both]
        worst_tnet = min(runs[s]["tnet"]["final"][key] for s in both)
        best_keras = max(runs[s]["Keras"]["final"][key] for s in both)
        verdict = (f"tnet's worst seed ({100 * worst_tnet:.2f} %) is above Keras's best ({100 * best_keras:.2f} %)"
                   if worst_tnet > best_keras else
                   f"the ranges overlap (tnet's worst seed {100 * worst_tnet:.2f} %, Keras's best {100 * best_keras:.2f} %)")
        mean = f"; mean {statistics.mean(diff):+.2f}" + (f" ± {statistics.stdev(diff):.2f}" if len(diff) > 1 else "")
        print(f"- {title}: " + ", ".join(f"{d:+.2f}" for d in diff) + f"{mean}; {verdict}.")


def main(argv):
    root = argv[0] if argv else "benchmarks/results/keras"
    seeds = sorted((d for d in os.listdir(root) if re.fullmatch(r"seed\d+", d)), key=lambda d: int(d[4:])) if os.path.isdir(root) else []
    if not seeds:
        sys.exit(f"report.py: no seedN folders in {root}")
    runs = {seed: read_run(root, seed) for seed in seeds}

    print("| seed | system | epochs | final val binary acc | final val exact match | best val acc (epoch) | "
          "best exact match (epoch) | s/epoch (median) | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed in seeds:
        for name in ("tnet", "Keras"):
            r = runs[seed].get(name)
            if not r:
                print(f"| {seed[4:]} | {name} | not run | | | | | | |")
                continue
            final = r["final"]
            epochs = str(r["epochs"]) + ("" if r["complete"] else " (running)")
            acc = f"{final['acc']:.4f}" if final else "-"
            exact = f"{final['exact']:.4f}" if final else "-"
            peak = f"{r['peak']:.0f}" if r["peak"] else "-"
            best_acc, best_exact = r["best_acc"], r["best_exact"]
            print(f"| {seed[4:]} | {name} | {epochs} | {acc} | {exact} | {best_acc['val_acc']:.4f} ({int(best_acc['epoch'])}) | "
                  f"{best_exact['val_exact_match']:.4f} ({int(best_exact['epoch'])}) | {r['seconds']:.1f} | {peak} |")
    print("\nOver the complete seeds (mean ± standard deviation (min-max)):\n")
    print("| system | seeds | final val binary acc | final val exact match | s/epoch (median) | peak MB |")
    print("|---|---|---|---|---|---|")
    seconds = {}
    for name in ("tnet", "Keras"):
        done = [runs[s][name] for s in seeds if name in runs[s] and runs[s][name]["complete"]]
        seconds[name] = [r["seconds"] for r in done]
        print(f"| {name} | {len(done)} | {spread([r['final']['acc'] for r in done if r['final']])} | "
              f"{spread([r['final']['exact'] for r in done if r['final']])} | {spread(seconds[name], '.1f')} | "
              f"{spread([r['peak'] for r in done], '.0f')} |")
    if seconds["tnet"] and seconds["Keras"]:
        print(f"\nKeras's epoch takes {statistics.mean(seconds['Keras']) / statistics.mean(seconds['tnet']):.1f}x tnet's "
              "(means of the seeds' medians).")
    compare_finals(runs, seeds)

    photos = sorted({p for s in seeds for r in runs[s].values() for p in list(r["examples"]) + list(r.get("examples_in_tnet", {}))})
    if photos:
        print("\nThe example photos' top two labels (tnet's model; Keras's model in Keras, read as the tutorial's classify.py "
              "reads; Keras's model in tnet's fashion_classify, keras_rgb.onnx):\n")
        print("| photo | " + " | ".join(f"seed {s[4:]}: tnet / Keras / Keras in tnet" for s in seeds) + " |")
        print("|---|" + "---|" * len(seeds))
        for p in photos:
            cells = []
            for s in seeds:
                r = runs[s]
                get = lambda name, key: " ".join(r[name][key].get(p, ["-"])) if name in r and key in r[name] else "-"
                cells.append(f"{get('tnet', 'examples')} / {get('Keras', 'examples')} / {get('Keras', 'examples_in_tnet')}")
            print(f"| {p} | " + " | ".join(cells) + " |")
    for s in seeds:
        check = os.path.join(root, s, "keras", "onnx_check.txt")
        if os.path.exists(check):
            with open(check) as f:
                print(f"\n{s}: {f.readline().strip()}")
    plot(root, seeds, runs)


def plot(root, seeds, runs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, seed in enumerate(seeds):
        for name, style in (("tnet", "-"), ("Keras", "--")):
            r = runs[seed].get(name)
            if not r:
                continue
            epochs = [h["epoch"] for h in r["history"]]
            for ax, key in zip(axes, ("val_acc", "val_exact_match")):
                ax.plot(epochs, [h[key] for h in r["history"]], style, color=colours[i % len(colours)], linewidth=1.2,
                        label=f"{name}, seed {seed[4:]}")
    for ax, title in zip(axes, ("validation binary accuracy", "validation exact match")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    lowest = min([h["val_acc"] for s in seeds for r in runs[s].values() for h in r["history"]] + [0.6])
    axes[0].set_ylim(max(0.0, lowest - 0.02), 1.0)
    axes[1].set_ylim(0.0, 1.0)
    for ax in axes:
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle("tnet (solid) and the tutorial's Keras (dashed), same photos and split per seed")
    fig.tight_layout()
    path = os.path.join(root, "curves.png")
    tmp = f"{path}.tmp.{os.getpid()}"
    fig.savefig(tmp, dpi=100, format="png")
    os.replace(tmp, path)


if __name__ == "__main__":
    main(sys.argv[1:])
