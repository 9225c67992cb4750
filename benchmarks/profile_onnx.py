"""Where an exported model's time goes: onnxruntime's per-operator profile of one batched
pass over a test set (same batching as `paragen bench`).

    python benchmarks/profile_onnx.py --model runs/exported/glat-onnx-int8 --threads 2 \
        --output benchmarks/results/profile_glat_onnx_int8.json

Prints, per graph, the kernel time by operator type (summed over the pass) and writes it
as JSON with the command.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="an exported ONNX model folder")
    parser.add_argument("--input", default="data/multi30k/test2016.de")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    import onnxruntime as ort

    from paragen.datasets import read_lines
    from paragen.samplers import BucketSampler
    from paragen.tasks.build import load_trained_task

    task = load_trained_task(args.model, "infer")
    split = task.encode(read_lines(args.input))
    batches = [task.collate(b, split)["src"]
               for b in BucketSampler(max_tokens=args.batch_tokens, shuffle=False)
               .batches(split["lengths"])]
    runner, folder = task.model.runner, tempfile.mkdtemp()
    for name in list(runner.graphs):  # the same graphs, in profiling sessions
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        options.enable_profiling, options.profile_file_prefix = True, os.path.join(folder, name)
        session = ort.InferenceSession(os.path.join(args.model, name + ".onnx"), options,
                                       providers=["CPUExecutionProvider"])
        runner.graphs[name] = (session, [i.name for i in session.get_inputs()])
    with torch.inference_mode():
        started = time.perf_counter()
        for src in batches:
            task.generator(src)
        seconds = time.perf_counter() - started
    graphs = {}
    for name, (session, _) in runner.graphs.items():
        with open(session.end_profiling()) as f:
            events = json.load(f)
        by_op = collections.Counter()
        for event in events:
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                by_op[event["args"]["op_name"]] += event["dur"] / 1e3
        total = sum(by_op.values())
        graphs[name] = {"kernel_ms": round(total, 1), "by_op": {
            op: {"ms": round(ms, 1), "share": round(ms / total, 3)}
            for op, ms in by_op.most_common()}}
        print(f"{name}: {total:.0f} ms of kernels")
        for op, ms in by_op.most_common(8):
            print(f"  {op:<28} {ms:8.1f} ms  {100 * ms / total:5.1f}%")
    result = {"command": " ".join(["python"] + sys.argv), "sentences": len(split["src"]),
              "threads": args.threads, "pass_seconds_with_profiling": round(seconds, 3),
              "graphs": graphs}
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
