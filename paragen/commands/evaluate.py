"""`paragen evaluate --model DIR [--input test.de --reference test.en | --input test.jsonl |
--input dev.tsv | --input dev.json]`.

Without --input, the validation/test splits stored in the model's config are scored. Prints
each of the task's metrics with its signature (translation: sacreBLEU and chrF; a seq2seq
task's configured metrics, e.g. ROUGE against every reference of a JSON line;
classification: accuracy, macro-F1, MCC; extractive QA: exact match, F1); `--output-dir`
receives the outputs (hypotheses, labels, answers) in input order.
"""
from __future__ import annotations

import argparse

from paragen.tasks.build import load_trained_task, search_for_beam


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder or .pt file")
    parser.add_argument("--input", help="translation: source-language file (with --reference); "
                                        "seq2seq: also JSON lines holding the references; "
                                        "classification: a TSV file with its label column; "
                                        "extractive QA: a SQuAD v1.1 JSON file")
    parser.add_argument("--reference", help="reference translations, line-aligned with --input")
    parser.add_argument("--output-dir", help="write <split>.hyp files here")
    parser.add_argument("--beam", type=int, help="beam size (1 = greedy); default: the config's")
    parser.add_argument("--lib", action="append", default=[],
                        help="plug-in module or folder to import (repeatable, or comma-separated)")
    parser.set_defaults(accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    inputs = None
    if args.input or args.reference:
        inputs = {"input": args.input, "reference": args.reference}
    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"task.output_dir={args.output_dir}")
    task = load_trained_task(args.model, "evaluate", overrides, inputs=inputs, libs=args.lib,
                             search=search_for_beam(args.beam))
    task.evaluate()
    return 0
