"""Decoding speed of trained models on one test set, all systems measured in one run.

    python benchmarks/decode_speed.py --model runs/multi30k-transformer \
        [--input data/multi30k/test2016.de] [--threads 1 2] [--batch-sentences 128]

Protocol (after Helcl et al. 2022): tokenization and detokenization excluded; each setting
warmed up first; batch 1 feeds the sentences one by one in input order and reports the median
latency plus sentences/s over the whole set; batched sorts by length into batches of up to
`--batch-sentences` sentences and reports the median of `--repeats` passes over the set.
Results go to benchmarks/results/decode_speed.json with the command that made them.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paragen.datasets import read_lines  # noqa: E402
from paragen.samplers import BucketSampler  # noqa: E402
from paragen.tasks.loading import load_trained_task, search_for_beam  # noqa: E402

SEARCHES = {"greedy": 1, "beam4": 4}


def time_batch1(task, split: Dict[str, Any]) -> Dict[str, float]:
    latencies = []
    for i in range(len(split["src"])):
        batch = task.collate([i], split)["src"]
        started = time.perf_counter()
        task.generator(batch)
        latencies.append(time.perf_counter() - started)
    return {"ms_per_sentence_median": 1e3 * statistics.median(latencies),
            "sentences_per_s": len(latencies) / sum(latencies)}


def time_batched(task, split: Dict[str, Any], batch_sentences: int, repeats: int
                 ) -> Dict[str, float]:
    sampler = BucketSampler(max_tokens=10 ** 9, max_sentences=batch_sentences, shuffle=False)
    batches = [task.collate(b, split)["src"] for b in sampler.batches(split["lengths"])]
    passes = []
    for _ in range(repeats):
        started = time.perf_counter()
        for src in batches:
            task.generator(src)
        passes.append(time.perf_counter() - started)
    seconds = statistics.median(passes)
    return {"sentences_per_s": len(split["src"]) / seconds,
            "ms_per_sentence": 1e3 * seconds / len(split["src"])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", default="data/multi30k/test2016.de")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--searches", nargs="+", default=list(SEARCHES), choices=list(SEARCHES))
    parser.add_argument("--batch-sentences", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N sentences")
    parser.add_argument("--output", default="benchmarks/results/decode_speed.json")
    args = parser.parse_args()
    lines = read_lines(args.input)[:args.limit or None]
    rows: List[Dict[str, Any]] = []
    for name in args.searches:
        task = load_trained_task(args.model, "infer", search=search_for_beam(SEARCHES[name]))
        task.generator.eval()
        split = task.encode(lines)
        for threads in args.threads:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                time_batched(task, {k: v[:64] for k, v in split.items()}, 16, 1)  # warm-up
                row = {"system": f"AR {name}", "threads": threads,
                       "batch1": time_batch1(task, split),
                       "batched": time_batched(task, split, args.batch_sentences, args.repeats)}
            rows.append(row)
            print(f"{row['system']:<12} threads={threads}  batch1 "
                  f"{row['batch1']['sentences_per_s']:7.1f} sent/s "
                  f"({row['batch1']['ms_per_sentence_median']:.1f} ms median)  batched "
                  f"{row['batched']['sentences_per_s']:7.1f} sent/s", flush=True)
    result = {"command": "python " + " ".join(sys.argv), "input": args.input,
              "sentences": len(lines), "batch_sentences": args.batch_sentences,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"torch {torch.__version__}", "rows": rows}
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
