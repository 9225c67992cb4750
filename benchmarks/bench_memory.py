"""Resident memory of one `paragen bench` system before and after its untimed scoring pass.

`paragen bench` keeps every system loaded so that rounds can interleave them, and scores each
one's output on the whole --input once, untimed. ONNX Runtime keeps a session's memory arena
at the largest size it has needed, so a scoring pass over large batches would leave every
ONNX system holding its peak; bench therefore scores inside `releasing_memory`. This builds
one system as bench does, warms it up, scores it (with the arena handed back, then without),
and records the process's resident memory after each step. The system with arenas handed back
is measured first: the second scoring pass can only grow memory further.

    python benchmarks/bench_memory.py --model runs/exported/glat-ctc-onnx-int8 \
        --setting NPD-5 --input data/multi30k/test2016.de \
        --reference data/multi30k/test2016.en --output benchmarks/results/bench_memory.json
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys

import torch

from paragen.commands import bench
from paragen.datasets import read_lines
from paragen.models.exported import releasing_memory


def resident_mb() -> float:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmRSS:"))
    return round(int(line.split()[1]) / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="model folder (an ONNX export shows it)")
    parser.add_argument("--setting", default="single", help="a bench setting of that model")
    parser.add_argument("--input", required=True)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--limit", type=int, default=200, help="sentences bench would time")
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, settings = bench.settings_for(args.model)
    setting = dict(settings)[args.setting]
    lines = read_lines(args.input)
    bench.read_references(args.reference, len(lines))  # as bench: line-aligned, or an error
    result = {"command": " ".join(["python"] + sys.argv), "model": args.model,
              "setting": args.setting, "sentences_scored": len(lines),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"torch {torch.__version__}", "resident_mb": {"start": resident_mb()}}
    task = bench.build_for(args.model, setting, False, "cpu", "fp32", [])
    result["resident_mb"]["built"] = resident_mb()
    bench.warm_up(task, task.encode(lines[:args.limit]), 4096)
    result["resident_mb"]["warmed_up"] = resident_mb()
    for name, releasing in (("scored_arena_handed_back", True), ("scored_arena_kept", False)):
        context = releasing_memory() if releasing else contextlib.nullcontext()
        with torch.inference_mode(), context:
            task.translate(lines)
        result["resident_mb"][name] = resident_mb()
    print(json.dumps(result["resident_mb"]))
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
