"""Does denoising pre-training help De→En translation? Pre-train, fine-tune, and compare with
the same fine-tuning from scratch on the same vocabulary.

    python benchmarks/pretrain_translation.py [--pretrain-steps 10000] [--finetune-steps 3000] \
        [--runs runs] [--output benchmarks/results/pretrain_translation.json] [key=value ...]

1. `paragen build-tokenizer --mask-token` learns one joint 8k SentencePiece model with <mask>
   on Multi30k train.de + train.en (data/pretrain/multi30k-spm8k-mask.model; kept if there);
2. pre-trains examples/pretrain/denoising.yaml for --pretrain-steps updates (RUNS/denoise);
3. fine-tunes examples/multi30k/transformer.yaml on that tokenizer from RUNS/denoise/best.pt
   for --finetune-steps updates (RUNS/multi30k-denoised);
4. runs the same fine-tuning from scratch (RUNS/multi30k-scratch-mask);
5. writes the JSON result: the command, the machine, wall minutes of each phase and the
   minutes spent inside updates (the trainer's own count, which a resumed or already
   finished run keeps), the denoising loss and token accuracy by step, and test2016
   BLEU/chrF of both models' best checkpoints (`paragen evaluate --input test2016.de
   --reference test2016.en`).
Overrides (`env.device=cuda`) apply to all three runs. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from pretrain_sst2 import dev_scores, machine, timed_train, update_seconds, validations
from train_sst2 import paragen

SHARED = os.environ.get("PARAGEN_DATA", "../shared/data")
TOKENIZER = "data/pretrain/multi30k-spm8k-mask"
DENOISE_CONFIG = "examples/pretrain/denoising.yaml"
FINETUNE_CONFIG = "examples/multi30k/transformer.yaml"


def test_scores(checkpoint: str) -> dict:
    """test2016 scores of one trained model (`test bleu = ...` lines)."""
    return dev_scores(checkpoint, "--input", f"{SHARED}/multi30k/test2016.de", "--reference",
                      f"{SHARED}/multi30k/test2016.en")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pretrain-steps", type=int, default=10000)
    parser.add_argument("--finetune-steps", type=int, default=3000)
    parser.add_argument("--runs", default="runs", help="the three run folders go here")
    parser.add_argument("--output", default="benchmarks/results/pretrain_translation.json")
    parser.add_argument("overrides", nargs="*", help="config overrides for every run (key=value)")
    args = parser.parse_args()
    started = time.time()
    if not os.path.exists(f"{TOKENIZER}.model"):
        paragen("build-tokenizer", "--input", f"{SHARED}/multi30k/train.de",
                f"{SHARED}/multi30k/train.en", "--output", TOKENIZER, "--vocab-size", "8000",
                "--mask-token")
    minutes = {"prepare": round((time.time() - started) / 60, 2)}
    denoise, pretrained, scratch = (f"{args.runs}/{name}" for name in
                                    ("denoise", "multi30k-denoised", "multi30k-scratch-mask"))
    shared = [f"define.text={SHARED}/multi30k", f"define.tokenizer={TOKENIZER}.model"]
    minutes["pretrain"] = timed_train(DENOISE_CONFIG, args.pretrain_steps, denoise, *shared,
                                      *args.overrides)
    finetune = [f"define.data={SHARED}/multi30k", f"task.tokenizer.model={TOKENIZER}.model"]
    minutes["finetune_pretrained"] = timed_train(
        FINETUNE_CONFIG, args.finetune_steps, pretrained, *finetune,
        f"task.trainer.init_from={denoise}/best.pt", *args.overrides)
    minutes["finetune_scratch"] = timed_train(FINETUNE_CONFIG, args.finetune_steps, scratch,
                                              *finetune, *args.overrides)
    update_minutes = {name: round(update_seconds(folder) / 60, 2) for name, folder in
                      (("pretrain", denoise), ("finetune_pretrained", pretrained),
                       ("finetune_scratch", scratch))}
    pretraining = validations(denoise)
    result = {
        "command": " ".join([sys.executable.split("/")[-1]] + sys.argv),
        "configs": {"pretrain": DENOISE_CONFIG, "finetune": FINETUNE_CONFIG},
        "machine": machine(),
        "minutes": minutes,
        "update_minutes": update_minutes,
        "pretrain": {
            "updates": pretraining[-1]["step"],
            "loss_by_step": {r["step"]: round(r["valid.loss"], 3) for r in pretraining},
            "accuracy_by_step": {r["step"]: round(r["valid.accuracy"], 2) for r in pretraining},
        },
    }
    for name, folder in (("finetune_pretrained", pretrained), ("finetune_scratch", scratch)):
        records = validations(folder)
        result[name] = {"updates": records[-1]["step"] if records else args.finetune_steps,
                        "test2016": test_scores(f"{folder}/best.pt")}
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
