"""`paragen evaluate --model DIR [--input test.de --reference test.en] [--output-dir D]`.

Without --input, the validation/test splits stored in the model's config are scored.
Prints sacreBLEU and chrF with their signatures; writes hypotheses in input order.
"""
from __future__ import annotations

import argparse

from paragen.errors import ConfigError
from paragen.model_folder import stored_config
from paragen.tasks.build import load_trained_task, search_for_beam


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder or .pt file")
    parser.add_argument("--input", help="source-language file (with --reference)")
    parser.add_argument("--reference", help="reference translations, line-aligned with --input")
    parser.add_argument("--output-dir", help="write <split>.hyp files here")
    parser.add_argument("--beam", type=int, help="beam size (1 = greedy); default: the config's")
    parser.add_argument("--lib", action="append", default=[])
    parser.set_defaults(accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    data = None
    if args.input or args.reference:
        if not (args.input and args.reference):
            raise ConfigError("--input and --reference go together")
        task_cfg = stored_config(args.model)["task"]
        data = {"test": {"class": "ParallelTextDataset",
                         "path": {task_cfg["src"]: args.input, task_cfg["tgt"]: args.reference}}}
    overrides = list(args.overrides)
    if args.output_dir:
        overrides.append(f"task.output_dir={args.output_dir}")
    task = load_trained_task(args.model, "evaluate", overrides, data=data, libs=args.lib,
                             search=search_for_beam(args.beam))
    task.evaluate()
    return 0
