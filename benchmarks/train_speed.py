"""Training speed of several configs, interleaved in one run so they share the machine's state.

    python benchmarks/train_speed.py --config examples/multi30k/transformer.yaml \
        --config examples/multi30k/transformer_deep.yaml [--updates 4] [--rounds 3] \
        [--threads 1] --output benchmarks/results/train_speed_deep_teacher.json [key=value ...]

Each config's task is built once and draws the same first training batches (its own
sampler, seed 1). A round times `--updates` updates of every config in turn (forward,
backward, AdamW step: the trainer's update without its bookkeeping) after one warm-up update
per config; the result is each config's median target tokens/s over the rounds and its ratio
to the first config's. The configs' `init_from` is dropped (random weights train as fast).
Forward passes run under the config's `env.precision` (bf16: autocast, as in training).
`key=value` overrides apply to every config (`define.*` ones only matter where the define is used,
e.g. `define.train_target=data/multi30k/train.en` for a NAT config without distilled data).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", action="append", required=True)
    parser.add_argument("--updates", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", required=True)
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)

    from paragen.config import load_config
    from paragen.tasks.build import build_task

    runs = []
    for path in args.config:
        config = load_config(path, ["task.trainer.init_from=null",
                                    "task.trainer.save_dir=/tmp/paragen-train-speed",
                                    *args.overrides])
        task = build_task(config)
        model, criterion = task.model.train(), task.criterion
        if hasattr(criterion, "set_progress"):
            criterion.set_progress(0, 1000)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batches = list(itertools.islice(task.train_loader.epoch_batches(0, 0),
                                        1 + args.updates))
        runs.append({"config": path, "model": model, "criterion": criterion, "env": task.env,
                     "optimizer": optimizer, "batches": batches, "rates": [],
                     "parameters": sum(p.numel() for p in model.parameters())})

    def update(run, batch) -> int:
        with run["env"].autocast():  # env.precision=bf16 trains under autocast, as the trainer
            loss, logs = run["criterion"](run["model"], batch)
        loss.backward()
        run["optimizer"].step()
        run["optimizer"].zero_grad(set_to_none=True)
        return int(logs["ntokens"])

    for run in runs:
        update(run, run["batches"][0])  # warm-up
    for _ in range(args.rounds):
        for run in runs:
            started = time.perf_counter()
            tokens = sum(update(run, batch) for batch in run["batches"][1:])
            run["rates"].append(tokens / (time.perf_counter() - started))
    first = statistics.median(runs[0]["rates"])
    result = {
        "command": " ".join(["python"] + sys.argv),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                   f"{args.threads} thread(s)",
        "precision": [run["env"].precision for run in runs],
        "updates_per_round": args.updates, "rounds": args.rounds,
        "configs": [{"config": run["config"], "parameters": run["parameters"],
                     "target_tokens_per_s_median": round(statistics.median(run["rates"]), 1),
                     "target_tokens_per_s_rounds": [round(r, 1) for r in run["rates"]],
                     "ratio_to_first": round(statistics.median(run["rates"]) / first, 3)}
                    for run in runs],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
