"""`paragen bench --model AR_DIR --model NAT_DIR [--input test.de] [--threads 1 2]`.

Decoding speed of several trained models on one test set, in one run, on one machine.
Protocol (after Helcl et al. 2022): tokenization excluded; every setting warmed up first;
batch 1 feeds the sentences one at a time in input order (median latency, and sentences/s
over the whole set); batched sorts by length into batches of at most `--batch-tokens`
padded source tokens and reports the median of `--repeats` passes. AR models run greedy and
beam 4; NAT models a single pass, plus, for length-predicting models, NPD over 5 lengths and
(PyTorch only) one refinement pass. Prints a table and writes JSON
(plus a PNG bar chart when matplotlib is installed).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any, Dict, List, Tuple

import torch

AR_SETTINGS = [("greedy", {"search": {"class": "GreedySearch"}}),
               ("beam4", {"search": {"class": "BeamSearch", "beam_size": 4}})]
NAT_SINGLE, NAT_NPD = ("single", {"length_beam": 1}), ("NPD-5", {"length_beam": 5})
NAT_REFINE = ("refine-1", {"refine_steps": 1})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", action="append", required=True,
                        help="model folder or checkpoint (repeat for several)")
    parser.add_argument("--input", default="data/multi30k/test2016.de")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="only the first N sentences")
    parser.add_argument("--quantize", action="store_true",
                        help="also time int8 dynamic quantization of Linear layers")
    parser.add_argument("--output", default="benchmarks/results/decode_speed.json")


def time_batch1(task, split: Dict[str, Any]) -> Dict[str, float]:
    latencies = []
    for i in range(len(split["src"])):
        src = task.collate([i], split)["src"]
        started = time.perf_counter()
        task.generator(src)
        latencies.append(time.perf_counter() - started)
    return {"ms_per_sentence_median": 1e3 * statistics.median(latencies),
            "sentences_per_s": len(latencies) / sum(latencies)}


def time_batched(task, split: Dict[str, Any], batch_tokens: int, repeats: int) -> Dict[str, float]:
    from paragen.samplers import BucketSampler

    sampler = BucketSampler(max_tokens=batch_tokens, shuffle=False)
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


def settings_for(model: str) -> Tuple[str, List[Tuple[str, Dict[str, Any]]]]:
    from paragen.exporting.runtime import read_manifest
    from paragen.tasks.loading import is_exported, stored_config

    task_config = stored_config(model)[0]["task"]
    generator = task_config.get("generator") or {}
    engine, exported = "", is_exported(model)
    ctc = bool(task_config["model"].get("ctc_upsample"))
    if exported:
        manifest = read_manifest(model)
        engine = f" {manifest['format']}" + (f" {manifest['quantized']}"
                                             if manifest.get("quantized") else "")
        ctc = bool(manifest.get("length", {}).get("ctc_upsample"))
    if generator.get("class", "SequenceGenerator").lower() == "natgenerator":
        # Refinement only helps length-predicting models (docs/results.md) and needs the
        # PyTorch model.
        settings = [NAT_SINGLE, NAT_NPD] + ([] if exported or ctc else [NAT_REFINE])
        return "NAT" + (" CTC" if ctc else "") + engine, settings
    return "AR" + engine, AR_SETTINGS


def build_for(model: str, kind: str, setting: Dict[str, Any], quantize: bool):
    from paragen.tasks.loading import load_trained_task

    overrides = [f"task.generator.{k}={v}" for k, v in setting.items() if k != "search"]
    task = load_trained_task(model, "infer", overrides, search=setting.get("search"))
    task.generator.eval()
    if quantize:
        task.model = torch.ao.quantization.quantize_dynamic(task.model, {torch.nn.Linear},
                                                            dtype=torch.qint8)
        task.generator.model = task.model
    return task


def run(args: argparse.Namespace) -> int:
    from paragen.datasets import read_lines
    from paragen.tasks.loading import is_exported

    lines = read_lines(args.input)[:args.limit or None]
    rows: List[Dict[str, Any]] = []
    for model in args.model:
        kind, settings = settings_for(model)
        # int8 quantization applies to PyTorch models; an exported one is quantized at export
        quantizable = [False, True] if args.quantize and not is_exported(model) else [False]
        for name, setting in settings:
            for quantize in quantizable:
                for threads in args.threads:
                    torch.set_num_threads(threads)  # before building: ONNX sessions fix it
                    task = build_for(model, kind, setting, quantize)
                    split = task.encode(lines)
                    with torch.inference_mode():
                        warm = {k: v[:64] for k, v in split.items()}
                        time_batched(task, warm, args.batch_tokens, 1)
                        time_batch1(task, {k: v[:16] for k, v in split.items()})
                        row = {"system": f"{kind} {name}" + (" int8" if quantize else ""),
                               "model": model, "threads": threads,
                               "batch1": time_batch1(task, split),
                               "batched": time_batched(task, split, args.batch_tokens,
                                                       args.repeats)}
                    rows.append(row)
                    print(format_row(row), flush=True)
    result = {"command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
              "input": args.input, "sentences": len(lines),
              "batch_tokens": args.batch_tokens, "repeats": args.repeats,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"torch {torch.__version__}", "rows": rows}
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    plot(rows, os.path.splitext(args.output)[0] + ".png")
    return 0


def format_row(row: Dict[str, Any]) -> str:
    return (f"{row['system']:<16} threads={row['threads']}  batch 1: "
            f"{row['batch1']['sentences_per_s']:7.1f} sent/s "
            f"({row['batch1']['ms_per_sentence_median']:6.2f} ms median)  batched: "
            f"{row['batched']['sentences_per_s']:7.1f} sent/s")


def plot(rows: List[Dict[str, Any]], path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart (pip install 'paragen[bench]')")
        return
    labels = [f"{r['system']}\n{r['threads']} thr" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(max(8, len(rows) * 1.2), 4.5))
    for ax, key, title in ((axes[0], "batch1", "batch 1"), (axes[1], "batched", "batched")):
        ax.bar(range(len(rows)), [r[key]["sentences_per_s"] for r in rows])
        ax.set_xticks(range(len(rows)), labels, rotation=60, fontsize=7)
        ax.set_ylabel("sentences / s")
        ax.set_title(f"decoding speed, {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")
