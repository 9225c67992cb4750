"""SciTLDR-A end to end for an update budget: AR teacher → distillation → GLAT+CTC, then test
ROUGE and decoding speed of both.

    python benchmarks/train_scitldr.py [--max-steps 3000] [--data data/scitldr] \
        [--runs runs] [--output benchmarks/results/train_scitldr.json] [key=value ...]

Prepares the data (`paragen prepare-data --dataset scitldr`: the JSON lines and one-line
sources) and learns the 8k SentencePiece model on the train abstracts and TLDRs if missing;
trains `examples/scitldr/transformer.yaml` for `--max-steps` updates (an update budget, so the
result does not depend on what else the machine runs); distils the train abstracts with it
(beam 4); trains `examples/scitldr/glat_ctc.yaml` on the distilled TLDRs from the teacher's
weights for the same budget; scores both best checkpoints on test with `paragen evaluate
--input test.jsonl` (ROUGE-1/2/L F ×100 against every reference, best reference per paper;
AR beam 4 and greedy, NAT one pass and 5 slot counts); and times decoding of the test
abstracts with `paragen bench --model AR --model NAT` (`--bench-limit` abstracts, batch 1 and
batched). Every stage whose output exists is skipped, so a rerun continues after a stop.
`key=value` overrides go to both trainings. Run it on an otherwise idle machine.
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

from train_multi30k import train  # the child-process trainer that SIGTERM stops cleanly

SETTINGS = {"ar": [("beam4", []), ("greedy", ["--beam", "1"])],
            "nat": [("single", []), ("npd5", ["--task.generator.length_beam", "5"])]}


def paragen(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "paragen.cli", *args], check=True,
                          stdout=subprocess.PIPE, text=True).stdout


def rouge(model: str, test: str, options: list) -> dict:
    printed = paragen("evaluate", "--model", model, "--input", test, *options)
    found = {m.group(1): (float(m.group(2)), m.group(3))
             for m in re.finditer(r"test (\w+) = ([\d.]+)  \((.*)\)", printed)}
    return {**{name: value for name, (value, _) in found.items()},
            "signature": found["rouge1"][1]}


def train_run(config: str, save_dir: str, max_steps: int, overrides: list) -> dict:
    """Train (a run stopped earlier resumes from its last.pt; a finished one returns at once)
    and summarize: the training's own wall time is the one its last checkpoint stores."""
    from paragen.checkpoint import load_checkpoint

    train([sys.executable, "-m", "paragen.cli", "train", "--config", config,
           f"task.trainer.max_steps={max_steps}", f"task.trainer.save_dir={save_dir}",
           "env.no_progress_bar=true", *overrides])
    records = [json.loads(line) for line in open(f"{save_dir}/metrics.jsonl")]
    validations = [r for r in records if r.get("validation")]
    wall = load_checkpoint(f"{save_dir}/last.pt")["trainer"]["wall_seconds"]
    return {"config": config, "save_dir": save_dir, "train_wall_seconds": round(wall, 1),
            "updates": validations[-1]["step"] if validations else None,
            "valid_rouge1_by_step": {r["step"]: round(r.get("valid.rouge1", 0.0), 2)
                                     for r in validations}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=3000, help="updates per model")
    parser.add_argument("--data", default="data/scitldr")
    parser.add_argument("--source", help="folder with SciTLDR-A's train/dev/test.jsonl "
                                         "(default: prepare-data's, $PARAGEN_DATA/scitldr)")
    parser.add_argument("--runs", default="runs", help="the two model folders go here")
    parser.add_argument("--bench-limit", type=int, default=200,
                        help="test abstracts to time decoding on")
    parser.add_argument("--bench-threads", type=int, nargs="+", default=[1])
    parser.add_argument("--output", default="benchmarks/results/train_scitldr.json")
    parser.add_argument("overrides", nargs="*", help="config overrides (key=value) for both")
    args = parser.parse_args()
    data, test = args.data, f"{args.data}/test.jsonl"
    if not os.path.exists(f"{data}/test.source"):
        paragen("prepare-data", "--dataset", "scitldr", "--output", data,
                *(["--source", args.source] if args.source else []))
    if not os.path.exists(f"{data}/spm8k.model"):
        paragen("build-tokenizer", "--input", f"{data}/train.jsonl", "--field", "source",
                "target", "--output", f"{data}/spm8k", "--vocab-size", "8000")
    ar_dir, nat_dir = f"{args.runs}/scitldr-transformer", f"{args.runs}/scitldr-glat-ctc"
    shared = [f"define.data={data}", *args.overrides]
    ar = train_run("examples/scitldr/transformer.yaml", ar_dir, args.max_steps, shared)
    distilled = f"{data}/train.distill"
    started = time.time()
    paragen("distill", "--model", ar_dir, "--input", f"{data}/train.source", "--output",
            distilled, "--beam", "4")  # resumes after the last complete line
    distill_seconds = round(time.time() - started, 1)
    nat = train_run("examples/scitldr/glat_ctc.yaml", nat_dir, args.max_steps,
                    shared + [f"define.train_target={distilled}",
                              f"define.teacher={ar_dir}/best.pt"])
    for name, run in (("ar", ar), ("nat", nat)):
        run["test"] = {setting: rouge(f"{run['save_dir']}/best.pt", test, options)
                       for setting, options in SETTINGS[name]}
    speed = f"{os.path.splitext(args.output)[0]}_decode_speed.json"
    paragen("bench", "--model", ar_dir, "--model", nat_dir, "--input", f"{data}/test.source",
            "--limit", str(args.bench_limit), "--threads",
            *[str(t) for t in args.bench_threads], "--output", speed)
    with open(speed) as f:
        rows = json.load(f)["rows"]
    result = {
        "command": " ".join([sys.executable.split("/")[-1]] + sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                   f"torch {torch.__version__}",
        "max_steps": args.max_steps, "ar": ar, "distill_seconds": distill_seconds, "nat": nat,
        "decoding_speed": {"json": speed, "abstracts": args.bench_limit, "rows": [
            {"system": row["system"], "threads": row["threads"],
             "batch1_sentences_per_s": round(row["batch1"]["sentences_per_s"], 1),
             "batched_sentences_per_s": round(row["batched"]["sentences_per_s"], 1)}
            for row in rows]},
    }
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
