"""Does masked-LM pre-training help the SST-2 classifier? Pre-train, fine-tune, and compare with
the same fine-tuning from scratch on the same vocabulary.

    python benchmarks/pretrain_sst2.py [--pretrain-steps 10000] [--finetune-steps 3000] \
        [--runs runs] [--output benchmarks/results/pretrain_sst2.json] [--prepare-only] \
        [key=value ...]

1. `write_pretraining_text` writes data/pretrain/: the training text, one sentence per line
   (`multi30k.en.txt`: Multi30k train.en; `sst2.txt`: the distinct SST-2 training sentences;
   `scitldr.txt`: the SciTLDR training abstracts, field `source`) and `valid.txt` (Multi30k
   valid.en + SciTLDR dev abstracts); SST-2 dev stays unseen, since it scores the classifiers.
   Then `paragen build-tokenizer --mask-token` learns one 8k SentencePiece model on the
   training text (`spm8k.model`, with <mask>). Existing files are kept; `--prepare-only`
   stops here.
2. pre-trains examples/pretrain/mlm.yaml for --pretrain-steps updates (RUNS/mlm);
3. fine-tunes examples/sst2/classifier_pretrained.yaml from RUNS/mlm/best.pt for
   --finetune-steps updates (RUNS/sst2-pretrained);
4. runs the same fine-tuning from scratch (`init_from=null`, RUNS/sst2-scratch-spm);
5. writes the JSON result (the command, the machine, each phase's minutes of update time as
   its trainer counts them, over resumed parts too, and the wall minutes of this invocation;
   masked-token accuracy and perplexity by step, SST-2 valid accuracy by step and dev scores
   of both classifiers' best checkpoints, scored by `paragen evaluate --input dev.tsv`) and a
   PNG beside it (matplotlib: `pip install 'paragen[bench]'`; without it no chart).
Overrides (`env.device=cuda`, `task.trainer.validate_interval=100`) apply to all three runs.
A rerun resumes runs left unfinished; remove RUNS/* to start over. Run it on an otherwise
idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from typing import Dict, List

import torch

from train_multi30k import train  # the child-process trainer that SIGTERM stops cleanly
from train_sst2 import paragen

from paragen.datasets import JsonlDataset, TsvDataset, read_lines
from paragen.files import atomic_text_output

SHARED = os.environ.get("PARAGEN_DATA", "../shared/data")
TEXT_DIR = "data/pretrain"  # where examples/pretrain/mlm.yaml reads (define.data)
TRAIN_TEXT = ("multi30k.en.txt", "sst2.txt", "scitldr.txt")
MLM_CONFIG = "examples/pretrain/mlm.yaml"
FINETUNE_CONFIG = "examples/sst2/classifier_pretrained.yaml"


def _write_lines(path: str, lines: List[str]) -> int:
    """One text a line: whitespace inside a text (a newline in a JSON string) becomes a space;
    blank texts are not written."""
    kept = [" ".join(line.split()) for line in lines if line.strip()]
    with atomic_text_output(path) as f:
        f.writelines(line + "\n" for line in kept)
    return len(kept)


def write_pretraining_text(shared: str = SHARED, out: str = TEXT_DIR) -> Dict[str, int]:
    """The pre-training text files (see the module doc); returns lines written per file.
    SST-2's training rows repeat phrases of one another; exact repeats are written once."""
    abstracts = {split: [sentence for row in JsonlDataset(f"{shared}/scitldr/{split}.jsonl",
                                                          fields=["source"])
                         for sentence in row["source"]] for split in ("train", "dev")}
    sst2 = list(dict.fromkeys(line.strip() for line in
                              TsvDataset(f"{shared}/sst2/train.tsv").lines("sentence")))
    files = {"multi30k.en.txt": read_lines(f"{shared}/multi30k/train.en"), "sst2.txt": sst2,
             "scitldr.txt": abstracts["train"],
             "valid.txt": read_lines(f"{shared}/multi30k/valid.en") + abstracts["dev"]}
    return {name: _write_lines(os.path.join(out, name), lines) for name, lines in files.items()}


def prepare() -> Dict[str, int]:
    written = {}
    if not all(os.path.exists(os.path.join(TEXT_DIR, name))
               for name in (*TRAIN_TEXT, "valid.txt")):
        written = write_pretraining_text()
        print(f"wrote {TEXT_DIR}: " + ", ".join(f"{k} {v} lines" for k, v in written.items()))
    if not os.path.exists(f"{TEXT_DIR}/spm8k.model"):
        paragen("build-tokenizer", "--input", *(f"{TEXT_DIR}/{name}" for name in TRAIN_TEXT),
                "--output", f"{TEXT_DIR}/spm8k", "--vocab-size", "8000", "--mask-token")
    return written


def timed_train(config: str, steps: int, save_dir: str, *overrides: str) -> float:
    """Minutes of wall time of one `paragen train` run."""
    started = time.time()
    train([sys.executable, "-m", "paragen.cli", "train", "--config", config,
           f"task.trainer.max_steps={steps}", "task.trainer.max_minutes=0",
           f"task.trainer.save_dir={save_dir}", "env.no_progress_bar=true", *overrides])
    return round((time.time() - started) / 60, 2)


def validations(save_dir: str) -> List[dict]:
    with open(f"{save_dir}/metrics.jsonl") as f:
        return [record for record in map(json.loads, f) if record.get("validation")]


def update_seconds(save_dir: str) -> float:
    """Seconds inside optimizer updates, as the trainer counts them across resumed parts."""
    with open(f"{save_dir}/metrics.jsonl") as f:
        return max((record.get("train_seconds", 0.0) for record in map(json.loads, f)),
                   default=0.0)


def dev_scores(checkpoint: str, *inputs: str) -> dict:
    """`test <metric> = <value>` scores of `paragen evaluate` on `inputs` (SST-2 dev)."""
    printed = paragen("evaluate", "--model", checkpoint,
                      *(inputs or ("--input", f"{SHARED}/sst2/dev.tsv")))
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"test (\w+) = ([-\d.]+)  \(", printed)}


def machine() -> str:
    device = f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores{device}, "
            f"torch {torch.__version__}")


def plot(result: dict, path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart (pip install 'paragen[bench]')")
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    curve = result["pretrain"]["masked_accuracy_by_step"]
    left.plot([int(step) for step in curve], list(curve.values()), marker=".")
    left.set_xlabel("pre-training update")
    left.set_ylabel("masked-token accuracy (%), valid")
    left.set_title("masked-LM pre-training")
    for name, label in (("finetune_pretrained", "pre-trained encoder"),
                        ("finetune_scratch", "from scratch")):
        accuracy = result[name]["valid_accuracy_by_step"]
        right.plot([int(step) for step in accuracy], list(accuracy.values()), marker=".",
                   label=f"{label} (dev {result[name]['dev'].get('accuracy', float('nan')):.1f})")
    right.set_xlabel("fine-tuning update")
    right.set_ylabel("SST-2 dev accuracy (%)")
    right.set_title("SST-2, same vocabulary and recipe")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pretrain-steps", type=int, default=10000)
    parser.add_argument("--finetune-steps", type=int, default=3000)
    parser.add_argument("--runs", default="runs", help="the three run folders go here")
    parser.add_argument("--output", default="benchmarks/results/pretrain_sst2.json")
    parser.add_argument("--prepare-only", action="store_true",
                        help="write data/pretrain/ (text and tokenizer) and stop")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run (key=value)")
    args = parser.parse_args()
    started = time.time()
    written = prepare()
    minutes = {"prepare": round((time.time() - started) / 60, 2)}
    if args.prepare_only:
        return
    mlm, pretrained, scratch = (f"{args.runs}/{name}" for name in
                                ("mlm", "sst2-pretrained", "sst2-scratch-spm"))
    minutes["pretrain"] = timed_train(MLM_CONFIG, args.pretrain_steps, mlm, *args.overrides)
    minutes["finetune_pretrained"] = timed_train(
        FINETUNE_CONFIG, args.finetune_steps, pretrained, f"define.pretrained={mlm}/best.pt",
        *args.overrides)
    minutes["finetune_scratch"] = timed_train(FINETUNE_CONFIG, args.finetune_steps, scratch,
                                              "task.trainer.init_from=null", *args.overrides)
    pretraining = validations(mlm)
    result = {
        "command": " ".join([sys.executable.split("/")[-1]] + sys.argv),
        "configs": {"pretrain": MLM_CONFIG, "finetune": FINETUNE_CONFIG},
        "machine": machine(),
        "wall_minutes_this_invocation": minutes,
        "update_minutes": {name: round(update_seconds(folder) / 60, 2) for name, folder in
                           (("pretrain", mlm), ("finetune_pretrained", pretrained),
                            ("finetune_scratch", scratch))},
        "pretraining_text_lines": written or None,  # None: the files were already there
        "pretrain": {
            "updates": pretraining[-1]["step"],
            "masked_accuracy_by_step": {r["step"]: round(r["valid.masked_accuracy"], 2)
                                        for r in pretraining},
            "perplexity_by_step": {r["step"]: round(r["valid.perplexity"], 2)
                                   for r in pretraining},
        },
    }
    for name, folder in (("finetune_pretrained", pretrained), ("finetune_scratch", scratch)):
        records = validations(folder)
        result[name] = {"updates": records[-1]["step"],
                        "valid_accuracy_by_step": {r["step"]: round(r["valid.accuracy"], 2)
                                                   for r in records},
                        "dev": dev_scores(f"{folder}/best.pt")}
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    plot(result, os.path.splitext(args.output)[0] + ".png")


if __name__ == "__main__":
    main()
