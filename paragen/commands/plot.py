"""`paragen plot RUN_DIR [--output PNG]`: a training run at a glance, from its metrics.jsonl.

Four panels against updates (a top axis gives the training minutes): training and validation
loss, learning rate, the validation metrics (BLEU, accuracy, ...) and training tokens/s.
Needs matplotlib (`pip install 'paragen[bench]'`).
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any, Dict, List

from paragen.errors import ConfigError, DataError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a training run's save_dir (holds metrics.jsonl)")
    parser.add_argument("--output", help="PNG to write (default: RUN_DIR/training.png)")


def run(args: argparse.Namespace) -> int:
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
