"""`paragen plot RUN_DIR [--output PNG]`: a training run at a glance, from its metrics.jsonl.
`paragen plot BENCH.json`: the speed–quality chart of a `paragen bench` result.

A run: four panels against updates (a top axis gives the training minutes): training and
validation loss, learning rate, the validation metrics (BLEU, accuracy, ...) and training
tokens/s. A bench result scored with --reference: BLEU (x) against sentences/s (y), batch 1
and batched, one point per system at its fastest thread count, the Pareto front (no other
point both faster and better) marked; without BLEU, bars of speed.
Needs matplotlib (`pip install 'paragen[bench]'`).
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Dict, List

from paragen.errors import ConfigError, DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a training run's save_dir (holds metrics.jsonl), or "
                                        "the JSON file of a `paragen bench` run")
    parser.add_argument("--output", help="PNG to write (default: RUN_DIR/training.png; for a "
                                         "bench JSON, the same name with .png)")


def run(args: argparse.Namespace) -> int:
    if os.path.isfile(args.run_dir):
        output = args.output or os.path.splitext(args.run_dir)[0] + ".png"
        plot_bench(read_bench(args.run_dir), output)
        return 0
    path = os.path.join(args.run_dir, "metrics.jsonl")
    output = args.output or os.path.join(args.run_dir, "training.png")
    plot_run(read_metrics(path), output, title=os.path.basename(os.path.normpath(args.run_dir)))
    print(f"wrote {output}")
    return 0


def read_metrics(path: str) -> List[Dict[str, Any]]:
    """The records of a metrics.jsonl; a line that is not JSON names its line number."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no metrics.jsonl (is this a training run's save_dir?)")
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{number}: not a JSON record ({err.msg})") from err
    if not any("loss" in r and not r.get("validation") for r in records):
        raise DataError(f"{path}: no training records yet (one is logged every log_interval "
                        f"updates)")
    return records


def read_bench(path: str) -> List[Dict[str, Any]]:
    """The rows of a `paragen bench` JSON result."""
    try:
        with open(path, encoding="utf-8") as f:
            rows = json.load(f).get("rows")
    except (json.JSONDecodeError, AttributeError) as err:
        raise DataError(f"{path}: not the JSON result of `paragen bench` ({err})") from err
    if not rows:
        raise DataError(f"{path}: no timed rows (expected the JSON of `paragen bench`)")
    return rows


def pareto_front(points: List[tuple]) -> List[int]:
    """Indices of the (quality, speed) points that no other point beats on both."""
    return [i for i, (q, v) in enumerate(points)
            if not any(q2 >= q and v2 >= v and (q2, v2) != (q, v) for q2, v2 in points)]


def fastest_per_system(rows: List[Dict[str, Any]], key: str) -> List[Dict[str, Any]]:
    """One row per (system, model): the thread count at which `key` is fastest."""
    best: Dict[tuple, Dict[str, Any]] = {}
    for row in rows:
        name = (row["system"], row["model"])
        if name not in best or row[key]["sentences_per_s"] > best[name][key]["sentences_per_s"]:
            best[name] = row
    return list(best.values())


def plot_bench(rows: List[Dict[str, Any]], output: str) -> None:
    """The chart `paragen bench` writes beside its JSON (skipped without matplotlib there)."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib not installed: no chart (pip install 'paragen[bench]')")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = all("bleu" in r for r in rows)
    models = {r["model"] for r in rows}

    def label(row: Dict[str, Any]) -> str:
        folder = f"{model_label(row['model'])}, " if len(models) > 1 else ""
        return f"{row['system']} ({folder}{row['threads']} thr)"

    figure, axes = plt.subplots(1, 2, figsize=(13, 5.5) if scored
                                else (max(8, len(rows) * 1.2), 4.5))
    for ax, key, title in ((axes[0], "batch1", "batch 1"), (axes[1], "batched", "batched")):
        ax.set_ylabel("sentences / s")
        if not scored:
            ax.bar(range(len(rows)), [r[key]["sentences_per_s"] for r in rows])
            ax.set_xticks(range(len(rows)), [label(r) for r in rows], rotation=60, fontsize=7)
            ax.set_title(f"decoding speed, {title}")
            continue
        shown = fastest_per_system(rows, key)
        points = [(r["bleu"], r[key]["sentences_per_s"]) for r in shown]
        front = set(pareto_front(points))
        for i, (row, (bleu, speed)) in enumerate(zip(shown, points)):
            ax.scatter(bleu, speed, s=60 if i in front else 25,
                       color="tab:red" if i in front else "tab:blue", zorder=3)
            ax.annotate(label(row), (bleu, speed), fontsize=7, xytext=(4, 3),
                        textcoords="offset points")
        ordered = sorted(points[i] for i in front)
        ax.plot([p[0] for p in ordered], [p[1] for p in ordered], "--", color="tab:red",
                label="Pareto front", zorder=2)
        ax.set_yscale("log")
        ax.set_xlabel("BLEU")
        ax.set_title(f"speed against quality, {title}")
        ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(output, dpi=120)
    plt.close(figure)
    print(f"wrote {output}")


def plot_run(records: List[Dict[str, Any]], output: str, title: str = "") -> None:
    try:
        import matplotlib
    except ImportError as err:
        raise ConfigError("paragen plot needs matplotlib: pip install 'paragen[bench]'") from err
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    train = [r for r in records if not r.get("validation") and "loss" in r]
    valid = [r for r in records if r.get("validation")]
    steps = np.array([r["step"] for r in train], dtype=float)
    minutes = np.array([r.get("train_seconds", 0.0) / 60 for r in train], dtype=float)
    figure, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    (loss_ax, lr_ax), (metric_ax, speed_ax) = axes
    loss_ax.plot(steps, [r["loss"] for r in train], label="train")
    if valid and "valid.loss" in valid[0]:
        loss_ax.plot([r["step"] for r in valid], [r["valid.loss"] for r in valid], "o-",
                     label="valid")
    loss_ax.set_ylabel("loss")
    loss_ax.legend()
    lr_ax.plot(steps, [r.get("lr", float("nan")) for r in train])
    lr_ax.set_ylabel("learning rate")
    names = sorted({k for r in valid for k in r if k.startswith("valid.") and k != "valid.loss"})
    for name in names:
        metric_ax.plot([r["step"] for r in valid if name in r],
                       [r[name] for r in valid if name in r], "o-", label=name[6:])
    metric_ax.set_ylabel("validation")
    if names:
        metric_ax.legend()
    speed_ax.plot(steps, [r.get("tokens_per_s", float("nan")) for r in train])
    speed_ax.set_ylabel("training tokens/s")
    for ax in (metric_ax, speed_ax):
        ax.set_xlabel("updates")
    if len(steps) > 1 and minutes[-1] > 0:  # a top axis in training minutes
        for ax in (loss_ax, lr_ax):
            top = ax.secondary_xaxis("top", functions=(
                lambda s: np.interp(s, steps, minutes), lambda m: np.interp(m, minutes, steps)))
            top.set_xlabel("training minutes")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(output, dpi=100)
    plt.close(figure)


def model_label(model: str) -> str:
    """`runs/multi30k-cmlm/best.pt` → `multi30k-cmlm/best.pt`; a folder → its name. Every
    run's checkpoint is called best.pt: the folder tells the models apart."""
    path = os.path.normpath(model)
    if os.path.splitext(path)[1] == ".pt":
        return os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))
    return os.path.basename(path)
