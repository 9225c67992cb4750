"""Where an exported AR model's batch-1 search spends its time: ONNX Runtime against Python.

Decodes `--input` one sentence at a time, as `paragen bench` times batch 1, with timers
around each part of the search:
  encoder, step        ONNX Runtime's calls of the two graphs (`session.run`);
  step feed            the rest of each step call: the cache in and out, the log-softmax;
  beam ranking         `top_k`, each beam's best tokens (beam search only);
  cache reorder        `reorder_cache` (beam search only);
  search bookkeeping   the rest: choosing, finishing and dropping hypotheses.
Milliseconds per sentence (means, so long sentences weigh in), medians over `--rounds`:

    python benchmarks/ar_search_parts.py --model runs/exported/transformer-onnx-int8 \\
        --input data/multi30k/test2016.de --limit 200 --beam 4 \\
        --output benchmarks/results/ar_search_parts_beam4.json

Timers cost about a microsecond per call; compare parts, and take speeds from `bench`.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paragen.search.base as search_base  # noqa: E402
import paragen.search.beam as beam_search  # noqa: E402
from paragen.datasets import read_lines  # noqa: E402
from paragen.model_folder import is_exported, read_manifest  # noqa: E402
from paragen.tasks.build import load_trained_task, search_for_beam  # noqa: E402

Seconds = Dict[str, float]


def timed(function: Callable, part: str, seconds: Seconds) -> Callable:
    def call(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            seconds[part] += time.perf_counter() - started
    return call


class TimedSession:
    """An onnxruntime session whose `run` adds its time to one part."""

    def __init__(self, session, part: str, seconds: Seconds):
        self.run = timed(session.run, part, seconds)


def instrument(task, seconds: Seconds) -> None:
    """Timers around the search's parts; the outer ones include the inner (subtracted later)."""
    graphs = task.model.runner.graphs
    for name in ("encoder", "step"):
        session, used = graphs[name]
        graphs[name] = TimedSession(session, name, seconds), used
    step_call = timed(search_base.step_log_probs, "step call", seconds)
    search_base.step_log_probs = beam_search.step_log_probs = step_call  # greedy, beam
    beam_search.top_k = timed(search_base.top_k, "beam ranking", seconds)
    decoder = task.model.decoder
    decoder.reorder_cache = timed(decoder.reorder_cache, "cache reorder", seconds)


def parts_per_sentence(task, sources: list, seconds: Seconds) -> Dict[str, float]:
    seconds.clear()
    started = time.perf_counter()
    with torch.inference_mode():
        for src in sources:
            task.generator(src)
    total = time.perf_counter() - started
    parts = {"encoder": seconds["encoder"], "step": seconds["step"],
             "step feed": seconds["step call"] - seconds["step"],
             "beam ranking": seconds["beam ranking"], "cache reorder": seconds["cache reorder"]}
    parts["search bookkeeping"] = total - sum(parts.values())
    parts["total"] = total
    return {part: round(1e3 * value / len(sources), 3) for part, value in parts.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="an AR ONNX export (paragen export)")
    parser.add_argument("--input", required=True, help="source sentences, one per line")
    parser.add_argument("--limit", type=int, help="only the first N sentences")
    parser.add_argument("--beam", type=int, default=4, help="beam size; 1: greedy search")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the input")
    parser.add_argument("--output", help="JSON file to write")
    args = parser.parse_args()
    manifest = read_manifest(args.model) if is_exported(args.model) else {}
    if (manifest.get("format"), manifest.get("family")) != ("onnx", "ar"):
        parser.error(f"--model {args.model}: expected an AR model exported to ONNX")
    torch.set_num_threads(args.threads)
    task = load_trained_task(args.model, "infer", search=search_for_beam(args.beam))
    lines = read_lines(args.input)[:args.limit]
    split = task.encode(lines)
    sources = [task.collate([i], split)["src"] for i in range(len(lines))]
    seconds: Seconds = collections.defaultdict(float)
    instrument(task, seconds)
    parts_per_sentence(task, sources[:20], seconds)  # warm-up
    rounds = [parts_per_sentence(task, sources, seconds) for _ in range(args.rounds)]
    median = {part: round(statistics.median(r[part] for r in rounds), 3) for part in rounds[0]}
    print(f"{args.model}, beam {args.beam}, ms per sentence: "
          + ", ".join(f"{part} {ms:.2f}" for part, ms in median.items()))
    if args.output:
        result = {"command": "python " + " ".join(sys.argv), "machine": platform.machine(),
                  "threads": args.threads, "sentences": len(lines), "beam": args.beam,
                  "ms_per_sentence": median, "by_round": rounds}
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
