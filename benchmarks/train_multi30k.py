"""Train multi30k-small (De→En) for a fixed wall-clock budget and score test2016.

    python benchmarks/train_multi30k.py [--minutes 40] [--save-dir runs/multi30k-transformer]
    python benchmarks/train_multi30k.py --config examples/multi30k/glat.yaml \
        --save-dir runs/multi30k-glat --teacher runs/multi30k-transformer \
        --output benchmarks/results/train_glat.json
    # raw-data GLAT: add define.train_target=data/multi30k/train.en (any config override)

Writes a JSON result: wall time, training tokens/s (median of the logged windows), updates,
and test2016 sacreBLEU with its signature for the best and the last-3-averaged checkpoints
(the decoding settings of each model family: `decoding_settings`).
`--evaluate-only` scores a run that already finished. Run it on an otherwise idle machine:
two processes sharing two cores slow each other down several times over.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time

import torch

DATA = "data/multi30k"


def paragen(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "paragen.cli", *args], check=True,
                            stdout=subprocess.PIPE, text=True)
    return result.stdout


def train(command: list) -> None:
    """Run the trainer as a child process that stops with this script: a SIGTERM here is
    passed on (the trainer saves last.pt and exits), so `kill` on the benchmark never leaves
    a training run behind, competing for the cores with the next one."""
    child = subprocess.Popen(command)
    signal.signal(signal.SIGTERM, lambda signum, frame: child.terminate())
    try:
        returncode = child.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the trainer too: let it save and stop
        returncode = child.wait()
    if returncode:
        raise SystemExit(f"training stopped with exit status {returncode}; its last.pt is "
                         f"saved, and the same command resumes it")


def bleu(model: str, *options: str) -> dict:
    out = paragen("evaluate", "--model", model, "--input", f"{DATA}/test2016.de",
                  "--reference", f"{DATA}/test2016.en", *options)
    found = {m.group(1): (float(m.group(2)), m.group(3))
             for m in re.finditer(r"test (\w+) = ([\d.]+)  \((.*)\)", out)}
    return {"bleu": found["bleu"][0], "chrf": found["chrf"][0], "signature": found["bleu"][1]}


def decoding_settings(config: str, teacher: str | None) -> list:
    """AR: beam 4 and greedy. GLAT-style NAT: one pass, NPD over 5 lengths (CTC: 5 slot
    counts) and AR-reranked NPD, and for length-predicting models one refinement pass (it
    hurts CTC models, whose blanks and repeats make the kept slots a poor context).
    CMLM: mask-predict with 1, 4 and 10 iterations over 3 lengths. DA-Transformer: its three
    path searches."""
    from paragen.config import load_config

    task = load_config(config)["task"]
    generator = str((task.get("generator") or {}).get("class", "")).lower()
    if generator == "maskpredictgenerator":
        return [(f"mask_predict{n}", ["--task.generator.iterations", str(n),
                                      "--task.generator.length_beam", "1" if n == 1 else "3"])
                for n in (1, 4, 10)]
    if generator == "daggenerator":
        return [(name, ["--task.generator.strategy", name])
                for name in ("lookahead", "greedy", "viterbi")]
    if generator != "natgenerator":
        return [("beam4", ["--beam", "4"]), ("greedy", ["--beam", "1"])]
    settings = [("single", []), ("npd5", ["--task.generator.length_beam", "5"])]
    if task["model"]["class"].lower() != "ctcnat":
        settings.append(("refine1", ["--task.generator.refine_steps", "1"]))
    if teacher:
        settings.append(("npd5_ar_rerank", ["--task.generator.length_beam", "5",
                                            f"task.generator.reranker={teacher}"]))
    return settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=40)
    parser.add_argument("--save-dir", default="runs/multi30k-transformer")
    parser.add_argument("--config", default="examples/multi30k/transformer.yaml")
    parser.add_argument("--teacher", help="AR model folder for reranked NPD (NAT configs)")
    parser.add_argument("--output", default="benchmarks/results/train_multi30k.json")
    parser.add_argument("overrides", nargs="*",
                        help="config overrides, e.g. define.train_target=data/multi30k/train.en")
    parser.add_argument("--evaluate-only", action="store_true",
                        help="score a finished run in --save-dir (wall time from its last.pt)")
    args = parser.parse_args()
    if not os.path.exists(f"{DATA}/test2016.en"):
        paragen("prepare-data", "--dataset", "multi30k", "--output", DATA)
    if not os.path.exists(f"{DATA}/spm8k.model"):
        paragen("build-tokenizer", "--input", f"{DATA}/train.de", f"{DATA}/train.en",
                "--output", f"{DATA}/spm8k", "--vocab-size", "8000")
    started = time.time()
    if args.evaluate_only:
        from paragen.checkpoint import load_checkpoint

        wall = load_checkpoint(f"{args.save_dir}/last.pt")["trainer"]["wall_seconds"]
    else:
        train([sys.executable, "-m", "paragen.cli", "train", "--config", args.config,
               f"task.trainer.max_minutes={args.minutes}", f"task.trainer.save_dir={args.save_dir}",
               "env.no_progress_bar=true", *args.overrides])
        wall = time.time() - started
    records = [json.loads(line) for line in open(f"{args.save_dir}/metrics.jsonl")]
    windows = [r for r in records if "tokens_per_s" in r]
    validations = [r for r in records if r.get("validation")]
    paragen("average-checkpoints", "--dir", args.save_dir, "--last", "3",
            "--output", f"{args.save_dir}/average.pt")
    result = {
        "command": " ".join([sys.executable.split("/")[-1]] + sys.argv),
        "config": args.config, "machine": f"{platform.processor() or platform.machine()}, "
                                          f"{os.cpu_count()} cores, torch {torch.__version__}",
        "train_wall_seconds": round(wall, 1),
        "train_update_seconds": windows[-1]["train_seconds"] if windows else None,
        "updates": validations[-1]["step"] if validations else None,
        "tokens_per_s_median": round(statistics.median(r["tokens_per_s"] for r in windows), 1),
        "valid_bleu_by_step": {r["step"]: round(r.get("valid.bleu", 0.0), 2) for r in validations},
        "test2016": {f"{checkpoint}_{name}": bleu(f"{args.save_dir}/{checkpoint}.pt", *options)
                     for checkpoint in ("best", "average")
                     for name, options in decoding_settings(args.config, args.teacher)},
    }
    if args.evaluate_only and os.path.exists(args.output):  # keep how the run was trained
        with open(args.output) as f:
            previous = json.load(f)
        result["train_command"] = previous.get("train_command", previous["command"])
    os.makedirs("benchmarks/results", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
