"""`paragen build-tokenizer --input train.de train.en --output DIR/spm --vocab-size 8000`.

`--column sentence` learns from one column of TSV files with a header (GLUE's train.tsv)
instead of whole lines. `--mask-token` adds `<mask>` (id 4) for masked-LM pre-training
(`MaskedLMTask`); a model meant to be fine-tuned later must be the pre-training one.
"""
from __future__ import annotations

import argparse
import os
import tempfile

from paragen.datasets import TsvDataset, read_lines
from paragen.tokenizers import SentencePieceTokenizer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", nargs="+", required=True, help="text files to learn from")
    parser.add_argument("--output", required=True, help="model prefix: writes PREFIX.model/.vocab")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--model-type", default="unigram", choices=["unigram", "bpe", "char",
                                                                      "word"])
    parser.add_argument("--character-coverage", type=float, default=1.0)
    parser.add_argument("--column", help="the inputs are TSV files with a header: learn from "
                                         "this column (e.g. sentence)")
    parser.add_argument("--mask-token", action="store_true",
                        help="add <mask> (id 4), which masked-LM pre-training needs")


def run(args: argparse.Namespace) -> int:
    if args.column:
        return _learn_from_column(args)
    for path in args.input:
        read_lines(path)  # fail early, with file and line, on missing or non-UTF-8 input
    _learn(args, args.input)
    return 0


def _learn_from_column(args: argparse.Namespace) -> int:
    """Write the column's cells to a scratch file beside the output, learn, remove it."""
    cells = [cell for path in args.input for cell in TsvDataset(path).lines(args.column)]
    folder = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(folder, exist_ok=True)
    fd, scratch = tempfile.mkstemp(prefix=".column-", suffix=".txt", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(cell + "\n" for cell in cells)
        _learn(args, [scratch])
    finally:
        os.unlink(scratch)
    return 0


def _learn(args: argparse.Namespace, inputs) -> None:
    model = SentencePieceTokenizer.learn(inputs, args.output, vocab_size=args.vocab_size,
                                         model_type=args.model_type,
                                         character_coverage=args.character_coverage,
                                         mask_token=args.mask_token)
    print(f"wrote {model}")
