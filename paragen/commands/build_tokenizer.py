"""`paragen build-tokenizer --input train.de train.en --output DIR/spm --vocab-size 8000`.

`--column sentence` learns from one column of TSV files with a header (GLUE's train.tsv)
instead of whole lines; `--squad train` from the contexts and questions of SQuAD v1.1 JSON
files (the train split of `SquadDataset`, so no test paragraph shapes the vocabulary);
`--field source target` from fields of JSON-lines files (SciTLDR: every source sentence and
every reference TLDR, each as its own line).
`--tags en de fr cs` adds one language tag piece per language (`<2en>` ...), which a
multilingual translation model (MultilingualTranslationTask) prepends to each source.
`--mask-token` adds `<mask>` (id 4) for masked-LM pre-training (`MaskedLMTask`); a model
meant to be fine-tuned later must be the pre-training one.
"""
from __future__ import annotations

import argparse
import os
import tempfile

from paragen.datasets import (JsonlDataset, SquadDataset, TsvDataset, field_references,
                              parse_field_path, read_lines)
from paragen.errors import ConfigError
from paragen.tokenizers import SentencePieceTokenizer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", nargs="+", required=True, help="text files to learn from")
    parser.add_argument("--output", required=True, help="model prefix: writes PREFIX.model/.vocab")
    parser.add_argument("--vocab-size", type=int, default=8000,
                        help="pieces in the vocabulary, special tokens included")
    parser.add_argument("--model-type", default="unigram", choices=["unigram", "bpe", "char",
                                                                      "word"],
                        help="SentencePiece's segmentation algorithm")
    parser.add_argument("--character-coverage", type=float, default=1.0,
                        help="share of characters the vocabulary covers (rarer ones become unk)")
    parser.add_argument("--column", help="the inputs are TSV files with a header: learn from "
                                         "this column (e.g. sentence)")
    parser.add_argument("--squad", choices=("all", "train", "test"),
                        help="the inputs are SQuAD v1.1 JSON files: learn from the contexts and "
                             "questions of this split (SquadDataset's split rule)")
    parser.add_argument("--field", nargs="+", metavar="PATH",
                        help="the inputs are JSON lines: learn from the texts under these field "
                             "paths (a list of texts: each of them), e.g. source target")
    parser.add_argument("--mask-token", action="store_true",
                        help="add <mask> (id 4), which masked-LM pre-training needs")
    parser.add_argument("--tags", nargs="+", default=[], metavar="LANG",
                        help="add a target-language tag piece per language (<2en> for en), "
                             "which multilingual translation needs")


def run(args: argparse.Namespace) -> int:
    if sum(bool(option) for option in (args.column, args.squad, args.field)) > 1:
        raise ConfigError("--column reads TSV files, --squad SQuAD JSON files, --field JSON "
                          "lines: give one")
    if args.field:
        return _learn_from_cells(args, _field_texts(args.input, args.field))
    if args.column:
        return _learn_from_cells(
            args, [cell for path in args.input for cell in TsvDataset(path).lines(args.column)])
    if args.squad:
        datasets = [SquadDataset(path, split=args.squad) for path in args.input]
        return _learn_from_cells(args, [text for data in datasets
                                        for text in data.contexts + data.lines("question")])
    for path in args.input:
        read_lines(path)  # fail early, with file and line, on missing or non-UTF-8 input
    _learn(args, args.input)
    return 0


def _field_texts(paths, fields):
    """Every text under each field path of each JSON-lines file, in file order."""
    steps = {field: parse_field_path(field, "--field") for field in fields}
    texts = []
    for path in paths:
        data = JsonlDataset(path)
        for field in fields:
            for row in field_references(data, field, steps[field], data.location):
                texts.extend(row)
    return texts


def _learn_from_cells(args: argparse.Namespace, cells) -> int:
    """Write the texts to a scratch file beside the output (one per line), learn, remove it."""
    folder = os.path.dirname(os.path.abspath(args.output))
    os.makedirs(folder, exist_ok=True)
    fd, scratch = tempfile.mkstemp(prefix=".texts-", suffix=".txt", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(" ".join(cell.splitlines()) + "\n" for cell in cells)
        _learn(args, [scratch])
    finally:
        os.unlink(scratch)
    return 0


def _learn(args: argparse.Namespace, inputs) -> None:
    model = SentencePieceTokenizer.learn(inputs, args.output, vocab_size=args.vocab_size,
                                         model_type=args.model_type,
                                         character_coverage=args.character_coverage,
                                         mask_token=args.mask_token, tags=args.tags)
    print(f"wrote {model}")
