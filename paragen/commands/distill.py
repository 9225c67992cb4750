"""`paragen distill --model teacher --input train.de --output train.distill.en [--beam 4]`.

Sequence-level knowledge distillation (Kim & Rush 2016): the teacher's beam output replaces
the references a NAT student trains on. Input is translated in chunks; each finished chunk is
appended and fsynced, so an interrupted run resumes after the last complete line and the
output stays line-aligned with the input.
"""
from __future__ import annotations

import argparse
import os

from tqdm import tqdm

from paragen.datasets import read_lines
from paragen.errors import DataError
from paragen.files import check_output_path
from paragen.interfaces import Translator
from paragen.tasks.build import load_trained_task, search_for_beam

CHUNK_LINES = 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="teacher checkpoint folder or .pt file")
    parser.add_argument("--input", required=True, help="source side of the training data")
    parser.add_argument("--output", required=True, help="distilled target side (appended to)")
    parser.add_argument("--beam", type=int, default=4, help="the teacher's beam size")
    parser.add_argument("--max-tokens", type=int, default=8192, help="token budget per batch")
    parser.add_argument("--chunk-lines", type=int, default=CHUNK_LINES,
                        help="lines translated and written per chunk (the resume unit)")
    parser.add_argument("--lib", action="append", default=[],
                        help="plug-in module or folder that registers the teacher's classes")


def completed_lines(path: str) -> int:
    """Lines already written; a trailing partial line (killed mid-write) is cut off."""
    if not os.path.exists(path):
        return 0
    with open(path, "rb+") as f:
        data = f.read()
        keep = data.rfind(b"\n") + 1
        if keep != len(data):
            f.truncate(keep)
    return data[:keep].count(b"\n")


def run(args: argparse.Namespace) -> int:
    check_output_path(args.output, [args.input])
    lines = read_lines(args.input)
    done = completed_lines(args.output)
    if done > len(lines):
        raise DataError(f"{args.output}: has {done} lines but {args.input} only {len(lines)}")
    task = load_trained_task(args.model, "infer", search=search_for_beam(args.beam), libs=args.lib,
                             needs=Translator,
                             overrides=["task.dataloader.infer.class=DataLoader",
                                        "task.dataloader.infer.sampler.class=BucketSampler",
                                        "task.dataloader.infer.sampler.shuffle=false",
                                        f"task.dataloader.infer.sampler.max_tokens="
                                        f"{args.max_tokens}"])
    with open(args.output, "a", encoding="utf-8") as out, \
            tqdm(total=len(lines), initial=done, unit="sent", desc="distill") as progress:
        for start in range(done, len(lines), args.chunk_lines):
            chunk = lines[start:start + args.chunk_lines]
            out.write("".join(t + "\n" for t in task.translate(chunk)))
            out.flush()
            os.fsync(out.fileno())
            progress.update(len(chunk))
    return 0
