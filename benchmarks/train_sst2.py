"""Train the SST-2 classifier from scratch for a wall-clock budget and score SST-2 dev.

    python benchmarks/train_sst2.py [--minutes 20 | --max-steps N] [--config examples/sst2/classifier.yaml] \
        [--save-dir runs/sst2-classifier] [--output benchmarks/results/sst2_classifier_scratch.json] \
        [key=value ...]

Learns the SentencePiece model on the training sentences first if `data/sst2/spm8k.model` is
missing (`paragen build-tokenizer --column sentence`), trains through `paragen train` (a
child process that a SIGTERM here stops cleanly, as in `train_multi30k.py`), then runs
`paragen evaluate --input dev.tsv` on the best checkpoint and on the average of the last 3.
Writes a JSON result: the command, the machine, wall minutes, updates, sentences/s (median
of the logged windows), the dev accuracy by validation step, and dev accuracy, macro-F1 and
MCC of the best and the averaged checkpoint.
Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import torch

from train_multi30k import train  # the child-process trainer that SIGTERM stops cleanly

DATA = os.environ.get("PARAGEN_DATA", "../shared/data") + "/sst2"
TOKENIZER = "data/sst2/spm8k"


def paragen(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "paragen.cli", *args], check=True,
                          stdout=subprocess.PIPE, text=True).stdout


def dev_scores(checkpoint: str) -> dict:
    printed = paragen("evaluate", "--model", checkpoint, "--input", f"{DATA}/dev.tsv")
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"test (\w+) = ([-\d.]+)  \(", printed)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--max-steps", type=int, default=0,
                        help="an update budget instead of minutes (for a CPU that other jobs "
                             "may share: the result then does not depend on their load)")
    parser.add_argument("--config", default="examples/sst2/classifier.yaml")
    parser.add_argument("--save-dir", default="runs/sst2-classifier")
    parser.add_argument("--output", default="benchmarks/results/sst2_classifier_scratch.json")
    parser.add_argument("overrides", nargs="*", help="config overrides (key=value)")
    args = parser.parse_args()
    if not os.path.exists(f"{TOKENIZER}.model"):
        paragen("build-tokenizer", "--input", f"{DATA}/train.tsv", "--column", "sentence",
                "--output", TOKENIZER, "--vocab-size", "8000")
    started = time.time()
    train([sys.executable, "-m", "paragen.cli", "train", "--config", args.config,
           f"define.data={DATA}", f"task.trainer.max_minutes={0 if args.max_steps else args.minutes}",
           f"task.trainer.max_steps={args.max_steps}",
           f"task.trainer.save_dir={args.save_dir}", "env.no_progress_bar=true",
           *args.overrides])
    wall = time.time() - started
    records = [json.loads(line) for line in open(f"{args.save_dir}/metrics.jsonl")]
    windows = [r for r in records if "tokens_per_s" in r]
    validations = [r for r in records if r.get("validation")]
    paragen("average-checkpoints", "--dir", args.save_dir, "--last", "3",
            "--output", f"{args.save_dir}/average.pt")
    best = max(validations, key=lambda r: r["valid.accuracy"])
    result = {
        "command": " ".join([sys.executable.split("/")[-1]] + sys.argv),
        "config": args.config,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"torch {torch.__version__}",
        "train_wall_minutes": round(wall / 60, 2),
        "train_update_seconds": windows[-1]["train_seconds"] if windows else None,
        "updates": validations[-1]["step"],
        "best_step": best["step"],
        "sentences_per_s_median": round(statistics.median(r["tokens_per_s"] for r in windows), 1),
        "valid_accuracy_by_step": {r["step"]: round(r["valid.accuracy"], 2) for r in validations},
        # scored by `paragen evaluate --input dev.tsv`: the checkpoint the validation chose
        # (what `--model DIR` loads), and the average of the last 3 step checkpoints
        "dev": dev_scores(f"{args.save_dir}/best.pt"),
        "dev_average_last3": dev_scores(f"{args.save_dir}/average.pt"),
    }
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
