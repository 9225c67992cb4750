"""The `npd_threshold` that sends a given share of sentences to NPD, read off a dev set.

    python benchmarks/npd_threshold.py --model runs/multi30k-glat-ctc/best.pt \\
        --input data/multi30k/valid.de --share 0.5

Decodes --input with a single pass and prints the `--share` quantile of the sentences' mean
token log-probabilities: with that threshold (`task.generator.npd_threshold`, `paragen bench
--npd-threshold`), about that share of sentences from the same distribution are decoded
again with NPD, the rest keep their single pass.
"""
from __future__ import annotations

import argparse

import torch

from paragen.datasets import read_lines
from paragen.interfaces import Translator
from paragen.samplers import BucketSampler
from paragen.tasks.build import load_trained_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="NAT model folder or checkpoint")
    parser.add_argument("--input", required=True, help="dev sources, one per line")
    parser.add_argument("--share", type=float, default=0.5,
                        help="share of sentences to send to NPD (default: 0.5)")
    args = parser.parse_args()
    task = load_trained_task(args.model, "infer", ["task.generator.length_beam=1",
                                                   "task.generator.return_scores=true",
                                                   "env.precision=fp32"], needs=Translator)
    split = task.encode(read_lines(args.input))
    scores = []
    with torch.inference_mode():
        for batch in BucketSampler(max_tokens=4096, shuffle=False).batches(split["lengths"]):
            scores.append(task.generator(task.collate(batch, split)["src"])[1])
    threshold = torch.cat(scores).quantile(args.share).item()
    print(f"{threshold:.4f}")


if __name__ == "__main__":
    main()
