"""Decoding speed of two source trees (e.g. before/after a change), alternated in one run.

    git worktree add /tmp/before <rev>
    python benchmarks/compare_trees.py --tree /tmp/before --tree . \
        --model runs/multi30k-transformer-s5 --setting beam4 --setting greedy --quantize \
        --threads 2 --rounds 3 --output benchmarks/results/compare_search.json

Each measurement runs in a fresh process that imports paragen from its tree, so both trees
decode the same model and test set on the same machine, minutes apart; the trees take turns
(A B A B ...) so that a change in the machine's speed hits both alike. Reports the median
sentences/s of each tree per setting and the ratio (last tree / first tree). Batched
decoding only (`paragen bench`'s batched protocol: length-sorted batches of --batch-tokens).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

SEARCHES = {"beam4": {"class": "BeamSearch", "beam_size": 4}, "greedy": {"class": "GreedySearch"}}


def measure(args: argparse.Namespace) -> None:
    """Worker: one tree, one setting; prints sentences/s (median of --repeats passes)."""
    sys.path.insert(0, os.path.abspath(args.tree[0]))
    import torch

    from paragen.commands.bench import build_for, time_batched
    from paragen.datasets import read_lines

    torch.set_num_threads(args.threads)
    task = build_for(args.model, "AR", {"search": SEARCHES[args.setting[0]]}, args.quantize)
    split = task.encode(read_lines(args.input))
    with torch.inference_mode():
        time_batched(task, {k: v[:64] for k, v in split.items()}, args.batch_tokens, 1)
        result = time_batched(task, split, args.batch_tokens, args.repeats)
    print(json.dumps({"sentences_per_s": result["sentences_per_s"]}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", action="append", required=True, help="a source tree (twice)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--setting", action="append", choices=sorted(SEARCHES), required=True)
    parser.add_argument("--input", default="data/multi30k/test2016.de")
    parser.add_argument("--quantize", action="store_true", help="int8 dynamic quantization")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return measure(args)
    if len(args.tree) != 2:
        parser.error("give exactly two --tree")
    runs = {setting: {tree: [] for tree in args.tree} for setting in args.setting}
    for _ in range(args.rounds):
        for setting in args.setting:
            for tree in args.tree:
                command = [sys.executable, __file__, "--worker", "--tree", tree, "--model",
                           args.model, "--setting", setting, "--input", args.input,
                           "--threads", str(args.threads), "--batch-tokens",
                           str(args.batch_tokens), "--repeats", str(args.repeats)]
                output = subprocess.run(command + (["--quantize"] if args.quantize else []),
                                        check=True, stdout=subprocess.PIPE, text=True).stdout
                runs[setting][tree].append(json.loads(output.splitlines()[-1])["sentences_per_s"])
                print(f"{setting:7s} {tree}: {runs[setting][tree][-1]:.1f} sent/s", flush=True)
    first, last = args.tree
    summary = {setting: {"median_sentences_per_s": {tree: round(statistics.median(values), 1)
                                                    for tree, values in by_tree.items()},
                         "ratio_last_to_first": round(statistics.median(by_tree[last])
                                                      / statistics.median(by_tree[first]), 3),
                         "runs": by_tree}
               for setting, by_tree in runs.items()}
    result = {"command": " ".join(["python"] + sys.argv), "model": args.model,
              "threads": args.threads, "quantized": args.quantize, "settings": summary}
    print(json.dumps(result, indent=2))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
