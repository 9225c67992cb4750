"""`paragen generate --model DIR < in.de > out.en` (or --input/--output files), batched.

One output line per input line, whatever the task: a translation (a seq2seq task's output,
such as a summary, for one source text per line), a classifier's label (a
regressor's value), or the answer span of a `question<TAB>context` line. `--format jsonl`
writes the task's whole answer as one JSON object per line instead (a classifier's label
probabilities, `{"translation": ...}` for translation, a QA answer's score and character
offsets).
Input is read in chunks, each sorted by length into token-budget batches, and written back in
input order, so arbitrarily long files stream with bounded memory.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Iterator, List

from paragen.datasets import iter_line_chunks
from paragen.errors import ConfigError, DataError
from paragen.files import atomic_text_output, check_output_path
from paragen.interfaces import Predictor
from paragen.tasks.build import load_trained_task, search_for_beam

CHUNK_LINES = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder or .pt file")
    parser.add_argument("--input", help="input file (default: stdin)")
    parser.add_argument("--output", help="output file (default: stdout)")
    parser.add_argument("--max-tokens", type=int, default=8192, help="token budget per batch")
    parser.add_argument("--beam", type=int, help="beam size (1 = greedy); default: the config's")
    parser.add_argument("--format", choices=("text", "jsonl"), default="text",
                        help="text: the answer alone (translation, label); jsonl: the whole "
                             "answer as JSON (label probabilities)")
    parser.add_argument("--lib", action="append", default=[],
                        help="plug-in module or folder to import (repeatable, or comma-separated)")
    parser.set_defaults(accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    if args.output:
        check_output_path(args.output, [args.input])  # before the model loads
    overrides = list(args.overrides) + [
        "task.dataloader.infer.class=DataLoader",
        "task.dataloader.infer.sampler.class=BucketSampler",
        "task.dataloader.infer.sampler.shuffle=false",
        f"task.dataloader.infer.sampler.max_tokens={args.max_tokens}"]
    task = load_trained_task(args.model, "infer", overrides, libs=args.lib,
                             search=search_for_beam(args.beam))
    if not isinstance(task, Predictor):
        raise ConfigError(f"{args.model}: a {type(task).__name__} has no predict(lines) and "
                          f"output_field, which generate needs (paragen.interfaces.Predictor)")
    if args.output is None:
        _predict(task, args.input, sys.stdout, args.format)
        return 0
    with atomic_text_output(args.output, [args.input]) as out:  # whole, or not at all
        _predict(task, args.input, out, args.format)
    return 0


def _predict(task, path: str | None, out, output_format: str) -> None:
    field, first_line = task.output_field, 1
    for chunk in _chunks(path):
        predictions = task.predict(chunk, first_line=first_line)
        if output_format == "jsonl":
            out.writelines(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions)
        else:
            out.writelines(f"{p[field]}\n" for p in predictions)
        out.flush()
        first_line += len(chunk)


def _chunks(path: str | None) -> Iterator[List[str]]:

    if path is None:
        yield from iter_line_chunks(sys.stdin.buffer, "<stdin>", CHUNK_LINES)
        return
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as stream:
        yield from iter_line_chunks(stream, path, CHUNK_LINES)
