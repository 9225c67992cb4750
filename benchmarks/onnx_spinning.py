"""ONNX Runtime's spinning worker threads against paragen's default (no spinning), same run.

ONNX Runtime's worker threads spin, waiting for work, between and after operators unless told
not to. paragen's sessions turn that off (`GraphRunner.spinning`), because Python runs between
the calls: a search step, the next graph's inputs. This times each export's `paragen bench`
settings both ways, in turns, at `--threads` (spinning needs ≥ 2: with 1 thread there is no
worker), batch 1 and batched, medians over `--rounds`:

    python benchmarks/onnx_spinning.py --model runs/exported/transformer-onnx-int8 \\
        --model runs/exported/glat-ctc-2t-onnx-int8 --input data/multi30k/test2016.de \\
        --limit 500 --threads 2 --output benchmarks/results/onnx_spinning.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paragen.commands.bench import build_for, settings_for, time_setting, warm_up  # noqa: E402
from paragen.datasets import read_lines  # noqa: E402
from paragen.model_folder import is_exported, read_manifest  # noqa: E402
from paragen.models.exported import GraphRunner  # noqa: E402

from onnx_profile import add_folder_arguments  # noqa: E402  (this folder)

WAYS = (("no spinning", False), ("spinning", True))


def build(model: str, setting: dict, spinning: bool):
    GraphRunner.spinning = spinning
    try:
        return build_for(model, setting, False, "cpu", "fp32", [])
    finally:
        GraphRunner.spinning = False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_folder_arguments(parser)
    parser.add_argument("--only", nargs="+", default=["greedy", "beam4", "single"],
                        help="bench settings to time (default: greedy beam4 single)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    parser.add_argument("--rounds", type=int, default=3, help="turns of every system")
    parser.add_argument("--repeats", type=int, default=2, help="batched passes per turn")
    parser.add_argument("--output", help="JSON file to write")
    args = parser.parse_args()
    args.max_tokens = [4096]
    for model in args.model:
        if not is_exported(model) or read_manifest(model).get("format") != "onnx":
            parser.error(f"--model {model}: expected an ONNX export (paragen export --format onnx)")
    torch.set_num_threads(args.threads)
    lines = read_lines(args.input)[:args.limit]
    systems = []
    for model in args.model:
        kind, settings = settings_for(model)
        for name, setting in settings:
            if name not in args.only:
                continue
            for way, spinning in WAYS:
                task = build(model, setting, spinning)
                split = task.encode(lines)
                warm_up(task, split, args.max_tokens[0])
                systems.append({"system": f"{kind} {name}", "model": model, "onnx": way,
                                "task": task, "split": split, "timings": []})
    for _ in range(args.rounds):
        for system in systems:
            system["timings"].append(time_setting(system["task"], system["split"], args))
    rows = []
    for system in systems:
        timings = system["timings"]
        row = {key: system[key] for key in ("system", "model", "onnx")}
        row["batch1_ms_median"] = statistics.median(
            t["batch1"]["ms_per_sentence_median"] for t in timings)
        row["batched_sentences_per_s"] = statistics.median(
            t["batched_at"][0]["sentences_per_s"] for t in timings)
        row["by_round"] = timings
        rows.append(row)
        print(f"{row['system']:<28} {row['onnx']:<12} batch 1 {row['batch1_ms_median']:7.2f} ms"
              f"  batched {row['batched_sentences_per_s']:7.1f} sent/s")
    if args.output:
        result = {"command": "python " + " ".join(sys.argv), "machine": platform.machine(),
                  "threads": args.threads, "sentences": len(lines), "rows": rows}
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
