"""`paragen build-tokenizer --input train.de train.en --output DIR/spm --vocab-size 8000`."""
from __future__ import annotations

import argparse

from paragen.datasets import read_lines
from paragen.tokenizers import SentencePieceTokenizer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", nargs="+", required=True, help="text files to learn from")
    parser.add_argument("--output", required=True, help="model prefix: writes PREFIX.model/.vocab")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--model-type", default="unigram", choices=["unigram", "bpe", "char",
                                                                      "word"])
    parser.add_argument("--character-coverage", type=float, default=1.0)


def run(args: argparse.Namespace) -> int:

    for path in args.input:
        read_lines(path)  # fail early, with file and line, on missing or non-UTF-8 input
    model = SentencePieceTokenizer.learn(args.input, args.output, vocab_size=args.vocab_size,
                                         model_type=args.model_type,
                                         character_coverage=args.character_coverage)
    print(f"wrote {model}")
    return 0
