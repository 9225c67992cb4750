"""Where an exported model's time goes in ONNX Runtime, by operator type.

Decodes `--input` as `paragen bench` does (batched: length-sorted batches of ≤ `--max-tokens`
padded source tokens; `--batch1`: one sentence at a time) with onnxruntime's profiler on, and
sums each graph's node time by operator type over the timed passes (the warm-up pass is left
out). The shares say which operators a change to the exported graphs should target; compare
two folders (say a default export and a `--portable` one) in one run:

    python benchmarks/onnx_profile.py --model runs/exported/glat-ctc-2t-onnx-int8 \\
        --model runs/exported/glat-ctc-2t-onnx-int8-portable --input data/multi30k/test2016.de \\
        --limit 500 --threads 2 --output benchmarks/results/onnx_profile_glat_ctc.json

Profiling costs a little time per node, so the seconds here run higher than `bench`'s; read
the shares, and take speeds from `bench`.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import sys
import tempfile
from typing import Any, Dict, List

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paragen.commands.bench import time_batch1, time_batched, warm_up  # noqa: E402
from paragen.datasets import read_lines  # noqa: E402
from paragen.errors import ConfigError  # noqa: E402
from paragen.model_folder import is_exported, read_manifest  # noqa: E402
from paragen.models.exported import GraphRunner  # noqa: E402
from paragen.tasks.build import load_trained_task  # noqa: E402


class CountedSession:
    """An onnxruntime session that counts its calls, so that the profile's warm-up calls can
    be told from the timed ones (one `model_run` event per call)."""

    def __init__(self, session):
        self.session, self.calls = session, 0

    def run(self, *args, **kwargs):
        self.calls += 1
        return self.session.run(*args, **kwargs)


def node_times(profile_file: str, skip_calls: int) -> Dict[str, float]:
    """Seconds by operator type in one session's profile, after its first `skip_calls`."""
    with open(profile_file, encoding="utf-8") as f:
        events = json.load(f)
    calls = sorted(e["ts"] for e in events if e.get("name") == "model_run")
    if len(calls) <= skip_calls:
        return {}
    totals = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["ts"] >= calls[skip_calls] \
                and event["name"].endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"] / 1e6
    return dict(totals)


def profile_folder(folder: str, lines: List[str], args: argparse.Namespace) -> Dict[str, Any]:
    manifest = read_manifest(folder) if is_exported(folder) else {}
    if manifest.get("format") != "onnx":
        raise ConfigError(f"--model {folder}: expected an ONNX export (paragen export "
                          f"--format onnx)")
    with tempfile.TemporaryDirectory() as scratch:
        GraphRunner.profile_prefix = os.path.join(scratch, "profile")
        try:
            task = load_trained_task(folder, "infer")
        finally:
            GraphRunner.profile_prefix = None
        sessions = task.model.runner.graphs
        for name, (session, used) in sessions.items():
            sessions[name] = CountedSession(session), used
        split = task.encode(lines)
        warm_up(task, split, args.max_tokens)
        warm_up_calls = {name: counted.calls for name, (counted, _) in sessions.items()}
        with torch.inference_mode():
            timing = time_batch1(task, split) if args.batch1 else \
                time_batched(task, split, args.max_tokens, args.repeats)
        graphs = {}
        for name, (counted, _) in sessions.items():
            times = node_times(counted.session.end_profiling(), warm_up_calls[name])
            total = sum(times.values())
            if not total:
                continue  # a graph this decoding does not call
            graphs[name] = {"calls": counted.calls - warm_up_calls[name],
                            "node_seconds": round(total, 4), "share_by_operator": {
                                op: round(t / total, 4)
                                for op, t in sorted(times.items(), key=lambda x: -x[1])
                                if t / total >= 0.001}}
    return {"model": folder, "quantized": manifest.get("quantized"),
            "fused_attention": manifest.get("fused_attention", False), "timing": timing,
            "graphs": graphs}


def add_folder_arguments(parser: argparse.ArgumentParser) -> None:
    """--model (repeatable ONNX folders), --input and --limit, as the ONNX benchmarks take them."""
    parser.add_argument("--model", action="append", required=True,
                        help="ONNX model folder (paragen export --format onnx); repeatable")
    parser.add_argument("--input", required=True, help="source sentences, one per line")
    parser.add_argument("--limit", type=int, help="only the first N sentences")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_folder_arguments(parser)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads")
    parser.add_argument("--max-tokens", type=int, default=4096,
                        help="padded source tokens per batch (default: 4096)")
    parser.add_argument("--repeats", type=int, default=3, help="batched passes profiled")
    parser.add_argument("--batch1", action="store_true",
                        help="profile one sentence at a time instead of batches")
    parser.add_argument("--output", help="JSON file to write")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = read_lines(args.input)[:args.limit]
    result = {"command": "python " + " ".join(sys.argv), "machine": platform.machine(),
              "threads": args.threads, "sentences": len(lines),
              "mode": "batch 1" if args.batch1 else f"batched, {args.max_tokens} tokens",
              "models": [profile_folder(folder, lines, args) for folder in args.model]}
    for row in result["models"]:
        print(f"{row['model']}: {row['timing']}")
        for name, graph in row["graphs"].items():
            top = ", ".join(f"{op} {share:.1%}" for op, share in
                            list(graph["share_by_operator"].items())[:8])
            print(f"  {name}: {graph['calls']} calls, {graph['node_seconds']} s in nodes: {top}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
