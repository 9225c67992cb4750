"""`make demo`: Multi30k De→En end to end in a few minutes on a laptop CPU.

prepare data → learn a joint SentencePiece model → train the multi30k-small Transformer for
PARAGEN_DEMO_MINUTES (default 6) → sacreBLEU on test2016 → translate three sentences.
Each step is an ordinary `paragen` command, printed before it runs, so the demo doubles as
a recipe. Data goes to data/multi30k (kept between runs), the model to runs/demo (replaced).
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

CONFIG = "examples/multi30k/transformer.yaml"
DATA = "data/multi30k"
RUN = "runs/demo"
EXAMPLES = ["Ein Mann fährt mit dem Fahrrad eine Straße entlang.",
            "Zwei Kinder spielen im Schnee.",
            "Eine Frau mit einem roten Hut sitzt auf einer Bank."]


def step(title: str, args: list, stdin: str | None = None) -> str:
    print(f"\n== {title}\n$ paragen {' '.join(shlex.quote(a) for a in args)}", flush=True)
    result = subprocess.run([sys.executable, "-m", "paragen.cli", *args], input=stdin,
                            text=True, stdout=subprocess.PIPE if stdin is not None else None)
    if result.returncode:
        sys.exit(result.returncode)
    return result.stdout or ""


def main() -> None:
    minutes = os.environ.get("PARAGEN_DEMO_MINUTES", "6")
    if not os.path.exists(f"{DATA}/test2016.en"):
        step("prepare Multi30k (copied from $PARAGEN_DATA or ../shared/data)",
             ["prepare-data", "--dataset", "multi30k", "--output", DATA])
    if not os.path.exists(f"{DATA}/spm8k.model"):
        step("learn a joint 8k SentencePiece vocabulary",
             ["build-tokenizer", "--input", f"{DATA}/train.de", f"{DATA}/train.en",
              "--output", f"{DATA}/spm8k", "--vocab-size", "8000"])
    shutil.rmtree(RUN, ignore_errors=True)  # a fresh run each time
    step(f"train multi30k-small for {minutes} minutes",
         ["train", "--config", CONFIG, f"task.trainer.max_minutes={minutes}",
          f"task.trainer.save_dir={RUN}", "task.trainer.validate_interval=0",
          # a short run needs a short warm-up; the 40-minute benchmark uses 500 steps
          "task.trainer.lr_scheduler.warmup_steps=150"])
    step("score test2016 (beam 4)", ["evaluate", "--model", RUN, "--input", f"{DATA}/test2016.de",
                                     "--reference", f"{DATA}/test2016.en", "--beam", "4"])
    output = step("translate three sentences", ["generate", "--model", RUN, "--beam", "4"],
                  stdin="\n".join(EXAMPLES) + "\n")
    for source, target in zip(EXAMPLES, output.splitlines()):
        print(f"  {source}\n    → {target}")


if __name__ == "__main__":
    main()
