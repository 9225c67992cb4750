"""How many target tokens/s can a training config reach on this CPU at all?

    python benchmarks/train_ceiling.py --config examples/multi30k/transformer.yaml \
        --output benchmarks/results/train_ceiling_transformer.json

Counts the floating-point operations of real training updates (forward + backward, with
`torch.utils.flop_counter`, on the config's own batches), measures this machine's fp32
matrix-multiply rate on the shapes those updates use, then times the same updates. The
ceiling is matmul rate / FLOPs per target token: what the config would reach if every
update were nothing but matrix products at that rate (no softmax, dropout, attention
kernels, optimizer). A throughput target above the ceiling cannot be met in fp32 on this
machine by any implementation of the same model and batch.

To compare code revisions on the same batches, run it with PYTHONPATH pointing at another
checkout (e.g. a `git worktree` of an older commit); the JSON records which was imported.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode


def matmul_rate(m: int, k: int, n: int, repeats: int = 10) -> float:
    """GFLOP/s of an (m×k)·(k×n) fp32 product, median of `repeats` after warm-up."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * m * k * n / statistics.median(times) / 1e9


def code_revision() -> str:
    """The git commit of the imported `paragen` (before/after runs may import another tree)."""
    import paragen

    folder = os.path.dirname(os.path.abspath(paragen.__file__))
    commit = subprocess.run(["git", "-C", folder, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", folder, "status", "--porcelain", "--", "."],
                           capture_output=True, text=True).stdout.strip()
    return f"{commit}{'+changes' if dirty else ''} ({folder})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="examples/multi30k/transformer.yaml")
    parser.add_argument("--updates", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", required=True)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from paragen.tasks.build import build_task
    from paragen.config import load_config

    config = load_config(args.config, ["task.trainer.init_from=null",
                                       "task.trainer.save_dir=/tmp/paragen-ceiling",
                                       *args.overrides])
    task = build_task(config)
    model, criterion = task.model.train(), task.criterion
    if hasattr(criterion, "set_progress"):
        criterion.set_progress(0, 1000)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    batches = list(itertools.islice(task.train_loader.epoch_batches(0, 0), 2 + args.updates))

    def update(batch) -> int:
        loss, logs = criterion(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return int(logs["ntokens"])

    for batch in batches[:2]:  # warm-up
        update(batch)
    counter = FlopCounterMode(display=False)
    with counter:
        tokens = sum(update(batch) for batch in batches[2:])
    flops_per_token = counter.get_total_flops() / tokens
    started = time.perf_counter()
    timed_tokens = sum(update(batch) for batch in batches[2:])
    measured = timed_tokens / (time.perf_counter() - started)

    vocab, d_model = model.decoder.output_projection.weight.shape
    ffn = model.decoder.layers[0].ffn.fc1.out_features
    rows = int(timed_tokens / args.updates)
    shapes = {"ffn_in": (rows, d_model, ffn), "ffn_out": (rows, ffn, d_model),
              "qkv": (rows, d_model, 3 * d_model), "output_layer": (rows, d_model, vocab),
              "square_2048": (2048, 2048, 2048)}
    rates = {name: round(matmul_rate(*shape), 1) for name, shape in shapes.items()}
    best_rate = max(rates.values())
    result = {
        "command": " ".join(["python"] + sys.argv),
        "machine": f"{os.cpu_count()} cores, torch {torch.__version__}, {args.threads} threads",
        "paragen": code_revision(),
        "target_tokens_per_update": rows,
        "gflop_per_target_token": round(flops_per_token / 1e9, 4),
        "matmul_gflop_per_s": rates,
        "ceiling_tokens_per_s": round(best_rate * 1e9 / flops_per_token),
        "measured_tokens_per_s": round(measured),
        "measured_share_of_ceiling": round(measured / (best_rate * 1e9 / flops_per_token), 3),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
