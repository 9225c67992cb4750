"""Time-to-first-batch and peak RSS for a 1M-pair corpus: text vs binarized vs streaming.

    python benchmarks/load_1m.py [--data data/multi30k] [--pairs 1000000]

Builds the corpus by repeating Multi30k train (De→En) up to --pairs lines, binarizes it once
with `paragen binarize` (timed), then, for each dataset class, starts a fresh Python process
that builds the training task from a config (tokenizer, dataset, loader, a small model) and
takes the first training batch. Each child reports its wall time to that batch and its own
peak RSS (ru_maxrss), so one dataset's memory never counts toward another's.
Writes benchmarks/results/load_1m.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, resource, sys, time
started = time.perf_counter()
from paragen.tasks.build import build_task
task = build_task(json.loads(sys.argv[1]))
batch = next(iter(task.train_loader.epoch_batches(0)))
seconds = time.perf_counter() - started
print(json.dumps({"seconds_to_first_batch": round(seconds, 2),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                  "first_batch_sentences": int(batch["src"].size(0))}))
"""


def config(train: dict, spm: str, save_dir: str, loader: dict) -> dict:
    layer = {"num_layers": 1, "num_heads": 4, "ffn_dim": 512, "dropout": 0.1}
    return {"task": {
        "class": "TranslationTask", "mode": "train", "src": "de", "tgt": "en",
        "tokenizer": {"class": "SentencePieceTokenizer", "model": spm},
        "data": {"train": train}, "dataloader": {"train": loader},
        "model": {"class": "Seq2Seq", "d_model": 256,
                  "encoder": {"class": "TransformerEncoder", **layer},
                  "decoder": {"class": "TransformerDecoder", **layer}},
        "trainer": {"class": "Trainer", "max_steps": 1, "save_dir": save_dir}},
        "env": {"device": "cpu", "no_progress_bar": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/multi30k")
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--output", default="benchmarks/results/load_1m.json")
    args = parser.parse_args()
    spm = os.path.join(args.data, "spm8k.model")
    work = tempfile.mkdtemp(prefix="load1m-")
    try:
        run(args, spm, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, spm: str, work: str) -> None:
    paths = {}
    for lang in ("de", "en"):
        with open(os.path.join(args.data, f"train.{lang}"), encoding="utf-8") as f:
            lines = f.read().splitlines()
        repeated = (lines * (args.pairs // len(lines) + 1))[:args.pairs]
        paths[lang] = os.path.join(work, f"train.{lang}")
        with open(paths[lang], "w", encoding="utf-8") as f:
            f.write("\n".join(repeated) + "\n")
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "paragen.cli", "binarize", "--tokenizer", spm,
                    "--input", paths["de"], paths["en"], "--output-dir", work], check=True)
    binarize_seconds = time.perf_counter() - started
    bucket = {"class": "DataLoader", "sampler": {"class": "BucketSampler", "max_tokens": 4096}}
    systems = {
        "text (ParallelTextDataset)": ({"class": "ParallelTextDataset", "path": paths}, bucket),
        "binarized (BinarizedParallelDataset)": (
            {"class": "BinarizedParallelDataset",
             "path": {lang: os.path.join(work, f"train.{lang}") for lang in paths}}, bucket),
        "streaming (StreamingParallelDataset)": (
            {"class": "StreamingParallelDataset", "path": paths},
            {"class": "StreamingDataLoader", "max_tokens": 4096, "buffer_size": 10000}),
    }
    rows = []
    for name, (dataset, loader) in systems.items():
        cfg = config(dataset, os.path.abspath(spm), os.path.join(work, "run"), loader)
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], check=True,
                             capture_output=True, text=True).stdout.strip().splitlines()[-1]
        rows.append({"dataset": name, **json.loads(out)})
        print(f"{name:<40} first batch after {rows[-1]['seconds_to_first_batch']:7.2f} s, "
              f"peak RSS {rows[-1]['peak_rss_mb']:6d} MB", flush=True)
    result = {"command": " ".join(["python"] + sys.argv), "pairs": args.pairs,
              "binarize_seconds": round(binarize_seconds, 1),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "rows": rows}
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    print(f"binarize: {binarize_seconds:.1f} s; wrote {args.output}")


if __name__ == "__main__":
    main()
