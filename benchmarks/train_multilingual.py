"""Train the Multi30k multilingual model (en, de, fr, cs) for a number of updates and score
test2016 in all 12 directions: the 10 trained ones and the 2 zero-shot ones (fr↔cs).

    python benchmarks/train_multilingual.py [--updates 60000] [--save-dir runs/multi30k-multilingual]
    # a quick check of the pipeline: a few updates of a tiny model, 50 test rows
    python benchmarks/train_multilingual.py --updates 10 --test-samples 50 \
        task.model.d_model=32 task.model.encoder.num_layers=1 task.model.decoder.num_layers=1

Writes a JSON result (--output): updates, training wall time, and test2016 sacreBLEU per
direction, the mean over the trained directions, the zero-shot directions apart, and the
signature. Run it on an otherwise idle machine.

The bilingual De→En model to compare with gets as many updates as this one has per trained
direction (`--updates` ÷ 10), the same architecture, precision and threads, e.g. for 3,000:

    python benchmarks/train_multi30k.py --minutes 0 --save-dir runs/multi30k-bilingual-300 \
        --output benchmarks/results/train_multilingual_bilingual_300.json \
        task.trainer.max_steps=300 env.precision=bf16 env.threads=1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time

import torch

LANGUAGES = ("en", "de", "fr", "cs")


def paragen(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "paragen.cli", *args], check=True,
                            stdout=subprocess.PIPE, text=True)
    return result.stdout


def test_split(data: str, samples: int | None) -> list:
    """Overrides adding test2016 as a `test` split (its first `samples` rows)."""
    overrides = ["task.data.test.class=ParallelTextDataset"]
    overrides += [f"task.data.test.path.{lang}={data}/test2016.{lang}" for lang in LANGUAGES]
    if samples:
        overrides.append(f"task.data.test.max_samples={samples}")
    return overrides


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--updates", type=int, default=60000, help="training budget")
    parser.add_argument("--config", default="examples/multi30k/multilingual.yaml")
    parser.add_argument("--data", default="data/multi30k")
    parser.add_argument("--save-dir", default="runs/multi30k-multilingual")
    parser.add_argument("--test-samples", type=int, help="score the first N test rows only")
    parser.add_argument("--output", default="benchmarks/results/train_multilingual.json")
    parser.add_argument("overrides", nargs="*", help="config overrides (task.model.d_model=256)")
    args = parser.parse_args()
    if not os.path.exists(f"{args.data}/test2016.cs"):
        paragen("prepare-data", "--dataset", "multi30k", "--output", args.data, "--langs",
                *LANGUAGES)
    if not os.path.exists(f"{args.data}/spm_joint16k.model"):
        paragen("build-tokenizer", "--input", *(f"{args.data}/train.{lang}" for lang in LANGUAGES),
                "--output", f"{args.data}/spm_joint16k", "--vocab-size", "16000",
                "--tags", *LANGUAGES)
    started = time.time()
    subprocess.run([sys.executable, "-m", "paragen.cli", "train", "--config", args.config,
                    f"define.data={args.data}", f"task.trainer.max_steps={args.updates}",
                    f"task.trainer.save_dir={args.save_dir}", "env.no_progress_bar=true",
                    *args.overrides], check=True)
    wall = time.time() - started
    out = paragen("evaluate", "--model", args.save_dir, *test_split(args.data, args.test_samples))
    found = {m.group(1): (float(m.group(2)), m.group(3))
             for m in re.finditer(r"^test (\S+) = ([\d.]+)  \((.*)\)$", out, re.MULTILINE)}
    directions = {name[:-len(".bleu")]: value for name, (value, _) in found.items()
                  if name.endswith(".bleu") and not name.startswith("zero_shot.")}
    zero_shot = {name[len("zero_shot."):-len(".bleu")]: value for name, (value, _) in found.items()
                 if name.startswith("zero_shot.") and name.endswith(".bleu")}
    result = {
        "command": " ".join([sys.executable.split("/")[-1]] + sys.argv),
        "config": args.config, "machine": f"{platform.processor() or platform.machine()}, "
                                          f"{os.cpu_count()} cores, torch {torch.__version__}",
        "updates": args.updates, "train_wall_seconds": round(wall, 1),
        "test2016": {
            "rows": args.test_samples or "all",
            "bleu_mean_trained": found["bleu"][0],
            "bleu": directions,
            "zero_shot_bleu": zero_shot,
            "signature": next(sig for name, (_, sig) in found.items() if name.endswith(".bleu")
                              and name != "bleu"),
        },
    }
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
