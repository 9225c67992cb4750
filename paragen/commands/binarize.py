"""`paragen binarize --tokenizer spm.model --input train.de train.en --output-dir data-bin`.

Tokenizes each file once into memory-mapped token ids (see paragen/datasets/binarized.py),
streaming in chunks, so corpora far larger than RAM can be prepared. Train on them with
`class: BinarizedParallelDataset, path: {de: data-bin/train.de, en: data-bin/train.en}`.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Iterator, List

from tqdm import tqdm

from paragen.datasets import iter_line_chunks
from paragen.datasets.binarized import write_binarized
from paragen.errors import DataError
from paragen.tokenizers import SentencePieceTokenizer

CHUNK_LINES = 50_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tokenizer", required=True, help="SentencePiece .model file")
    parser.add_argument("--input", nargs="+", required=True, help="text files, one per side")
    parser.add_argument("--output-dir", required=True, help="writes <dir>/<input name>.bin/.idx")


def read_chunks(path: str, size: int = CHUNK_LINES) -> Iterator[List[str]]:

    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as stream:
        yield from iter_line_chunks(stream, path, size)


def _encoded_chunks(path: str, tokenizer, progress) -> Iterator[List[List[int]]]:
    for chunk in read_chunks(path, CHUNK_LINES):
        yield tokenizer.encode_batch(chunk)
        progress.update(len(chunk))


def run(args: argparse.Namespace) -> int:

    names = [os.path.basename(path) for path in args.input]
    clashes = sorted({name for name in names if names.count(name) > 1})
    if clashes:
        same = [path for path in args.input if os.path.basename(path) == clashes[0]]
        raise DataError(f"--input {' and '.join(same)}: both would be written to "
                        f"{os.path.join(args.output_dir, clashes[0])}.bin; binarize them into "
                        f"different --output-dir folders")
    tokenizer = SentencePieceTokenizer(args.tokenizer)
    digest = tokenizer.fingerprint
    for path in args.input:
        prefix = os.path.join(args.output_dir, os.path.basename(path))
        started = time.perf_counter()
        with tqdm(unit="sent", desc=os.path.basename(path)) as progress:
            meta = write_binarized(_encoded_chunks(path, tokenizer, progress), prefix,
                                   tokenizer.vocab_size, f"{args.tokenizer}#{digest}")
        print(f"{path} → {prefix}.bin/.idx: {meta['sentences']} sentences, {meta['tokens']} "
              f"tokens ({meta['dtype']}), {time.perf_counter() - started:.1f} s")
    return 0
