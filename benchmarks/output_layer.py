"""What a NAT output layer costs on this CPU, by chunk size and with or without the scores.

A NAT pass projects every slot onto the vocabulary and keeps the best token. With the scores
(what NPD and refinement rank by) that is a log_softmax and a max-with-indices per row;
without them an argmax. `GLAT.best_tokens` does it in chunks of rows, so that a chunk's
logits are still in cache when they are reduced. This times one batch's worth of slots
(`--slots` rows × d_model → V) in both modes for several chunk sizes and thread counts,
median of `--repeats` after a warm-up pass.

    python benchmarks/output_layer.py --output benchmarks/results/output_layer.json

`--few-rows` times the weight's layout instead, for the few rows of one sentence's decoding
step (a verification block, a NAT sentence's slots): the (V, D) weight as stored against an
input-major (D, V) copy (what `TransformerDecoder.project` uses for 4-128 rows), by row count.

    python benchmarks/output_layer.py --few-rows --threads 1 \
        --output benchmarks/results/output_layer_layout.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch


def output_layer(hidden: torch.Tensor, weight: torch.Tensor, chunk: int, with_scores: bool
                 ) -> None:
    tokens = torch.empty(hidden.size(0), dtype=torch.long)
    scores = torch.empty(hidden.size(0))
    for start in range(0, hidden.size(0), chunk):
        rows = slice(start, start + chunk)
        logits = torch.nn.functional.linear(hidden[rows], weight)
        if with_scores:
            torch.max(torch.log_softmax(logits, -1), -1, out=(scores[rows], tokens[rows]))
        else:
            torch.argmax(logits, -1, out=tokens[rows])


def median_ms(hidden, weight, chunk, with_scores, repeats) -> float:
    output_layer(hidden, weight, chunk, with_scores)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        output_layer(hidden, weight, chunk, with_scores)
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def chunk_rows(hidden: torch.Tensor, weight: torch.Tensor, threads: list, chunks: list,
               repeats: int) -> list:
    rows = []
    for threads_now in threads:
        torch.set_num_threads(threads_now)
        for chunk in chunks:
            row = {"threads": threads_now, "chunk": chunk,
                   "ms_with_scores": median_ms(hidden, weight, chunk, True, repeats),
                   "ms_tokens_only": median_ms(hidden, weight, chunk, False, repeats)}
            rows.append(row)
            print(f"threads={threads_now} chunk={chunk:5d}: with scores "
                  f"{row['ms_with_scores']:7.1f} ms, tokens only {row['ms_tokens_only']:7.1f} ms",
                  flush=True)
    return rows


def layout_rows(weight: torch.Tensor, threads: list, repeats: int) -> list:
    """ms per product of R rows with the (V, D) weight and with its (D, V) copy."""
    input_major = weight.t().contiguous()
    rows = []
    for threads_now in threads:
        torch.set_num_threads(threads_now)
        for count in (1, 2, 4, 8, 16, 32, 64, 128, 256):
            hidden = torch.randn(count, weight.size(1))
            stored = per_call_ms(lambda: torch.nn.functional.linear(hidden, weight), repeats)
            copied = per_call_ms(lambda: torch.matmul(hidden, input_major), repeats)
            rows.append({"threads": threads_now, "rows": count, "ms_stored_layout": stored,
                         "ms_input_major": copied, "speedup": stored / copied})
            print(f"threads={threads_now} rows={count:4d}: (V,D) {stored:.3f} ms, (D,V) "
                  f"{copied:.3f} ms, {stored / copied:.2f}x", flush=True)
    return rows


def per_call_ms(call, repeats: int, calls: int = 200) -> float:
    for _ in range(20):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        times.append((time.perf_counter() - started) / calls)
    return 1e3 * statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slots", type=int, default=8192, help="rows: ~ a 4,096-token CTC batch")
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--chunks", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--few-rows", action="store_true",
                        help="time the weight's layout for 1-256 rows instead of chunk sizes")
    parser.add_argument("--output", default="benchmarks/results/output_layer.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    hidden = torch.randn(args.slots, args.d_model)
    weight = torch.randn(args.vocab, args.d_model) * args.d_model ** -0.5
    with torch.inference_mode():
        rows = (layout_rows(weight, args.threads, args.repeats) if args.few_rows
                else chunk_rows(hidden, weight, args.threads, args.chunks, args.repeats))
    result = {"command": " ".join(["python", "benchmarks/output_layer.py"] + sys.argv[1:]),
              "shape": {"slots": args.slots, "d_model": args.d_model, "vocab": args.vocab},
              "repeats": args.repeats,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"torch {torch.__version__}", "rows": rows}
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
