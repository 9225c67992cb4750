"""Train the XQuAD extractive QA recipe for an update budget and score the test articles.

    python benchmarks/train_xquad.py [--max-steps 3000 | --minutes M] \
        [--config examples/xquad/qa.yaml] [--save-dir runs/xquad-qa] \
        [--init-from CHECKPOINT --tokenizer MODEL] \
        [--output benchmarks/results/xquad_qa_scratch.json] [key=value ...]

Learns the SentencePiece model on the train split's contexts and questions first if
`data/xquad/spm4k.model` is missing (`paragen build-tokenizer --squad train`). With
`--init-from` the encoder starts from a pre-trained checkpoint (`task.trainer.init_from`:
every parameter whose name and shape match, e.g. a masked language model's `encoder.*`);
pass that model's tokenizer with `--tokenizer`, since its embeddings are indexed by it.
Trains through `paragen train` (a child process that a SIGTERM here stops cleanly, as in
`train_multi30k.py`), then runs `paragen evaluate` on the last and on the best checkpoint.
Writes a JSON result: the command, the machine, updates, wall minutes, windows/s (median of
the logged windows), the test F1 by validation step, and test exact match and F1 of the
last checkpoint and of the best one. The validation split is the test split (the recipe has
no third split for 991 training questions), so the best checkpoint's score is chosen on the
data it is scored on and is optimistic; the last checkpoint's is not.
Run it on an otherwise idle machine: on 2 shared CPU cores one update of the recipe took
about 14 s (a 30-update check), so a 3,000-update budget is a job for a GPU.
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

DATA = os.environ.get("PARAGEN_DATA", "../shared/data") + "/xquad"
TOKENIZER = "data/xquad/spm4k"


def paragen(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "paragen.cli", *args], check=True,
                          stdout=subprocess.PIPE, text=True).stdout


def test_scores(checkpoint: str) -> dict:
    """Exact match and F1 on the stored validation split (the test articles)."""
    printed = paragen("evaluate", "--model", checkpoint)
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"valid (\w+) = ([-\d.]+)  \(", printed)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=3000, help="the update budget")
    parser.add_argument("--minutes", type=float, default=0,
                        help="a wall-clock budget instead of updates (0: none)")
    parser.add_argument("--config", default="examples/xquad/qa.yaml")
    parser.add_argument("--save-dir", default="runs/xquad-qa")
    parser.add_argument("--init-from", help="a checkpoint whose encoder the model starts from")
    parser.add_argument("--tokenizer", help="the SentencePiece model (default: the recipe's, "
                                            "learnt here if missing)")
    parser.add_argument("--output", default="benchmarks/results/xquad_qa_scratch.json")
    parser.add_argument("overrides", nargs="*", help="config overrides (key=value)")
    args = parser.parse_args()
    tokenizer = args.tokenizer
    if tokenizer is None:
        tokenizer = f"{TOKENIZER}.model"
        if not os.path.exists(tokenizer):
            paragen("build-tokenizer", "--squad", "train", "--input", f"{DATA}/xquad.en.json",
                    "--output", TOKENIZER, "--vocab-size", "4000")
    command = [sys.executable, "-m", "paragen.cli", "train", "--config", args.config,
               f"define.data={DATA}", f"task.tokenizer.model={tokenizer}",
               f"task.trainer.max_steps={0 if args.minutes else args.max_steps}",
               f"task.trainer.max_minutes={args.minutes}",
               f"task.trainer.save_dir={args.save_dir}", "env.no_progress_bar=true"]
    if args.init_from:
        command.append(f"task.trainer.init_from={args.init_from}")
    started = time.time()
    train(command + list(args.overrides))
    wall = time.time() - started
    records = [json.loads(line) for line in open(f"{args.save_dir}/metrics.jsonl")]
    windows = [r for r in records if "tokens_per_s" in r]
    validations = [r for r in records if r.get("validation")]
    result = {
        "command": " ".join([sys.executable.split("/")[-1]] + sys.argv),
        "config": args.config,
        "init_from": args.init_from,
        "tokenizer": tokenizer,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"torch {torch.__version__}",
        "train_wall_minutes": round(wall / 60, 2),
        "updates": validations[-1]["step"] if validations else None,
        # the trainer counts a QA batch's windows as its `ntokens`
        "windows_per_s_median": round(statistics.median(r["tokens_per_s"] for r in windows), 1)
        if windows else None,
        "test_f1_by_step": {r["step"]: round(r["valid.f1"], 2) for r in validations},
        # scored by `paragen evaluate` on the test articles (SquadDataset split: test)
        "test_last": test_scores(f"{args.save_dir}/last.pt"),
        "test_best_checkpoint": test_scores(f"{args.save_dir}/best.pt"),
    }
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
