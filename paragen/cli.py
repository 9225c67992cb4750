"""Command line: `paragen <verb> ...` and ParaGen's `paragen-run --config cfg.yaml`.

Every user-facing failure (bad config, bad data, failed plug-in import) is a `ParagenError`:
it is printed as one `error: ...` line and the process exits non-zero, without a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from paragen.commands.train import add_arguments, run_config
from paragen.errors import ParagenError, TrainingInterrupted

VERBS = {
    "train": ("paragen.commands.train", "train a model from a YAML config"),
    "evaluate": ("paragen.commands.evaluate", "score a trained model on test data"),
    "generate": ("paragen.commands.generate", "translate stdin (or --input) with a trained model"),
    "build-tokenizer": ("paragen.commands.build_tokenizer", "learn a SentencePiece model"),
    "average-checkpoints": ("paragen.commands.average_checkpoints",
                            "average the weights of several checkpoints"),
    "prepare-data": ("paragen.commands.prepare_data", "copy or download a dataset"),
    "clean": ("paragen.commands.clean", "filter and normalise a parallel corpus"),
    "binarize": ("paragen.commands.binarize", "tokenize text once into memory-mapped ids"),
    "distill": ("paragen.commands.distill", "translate a training set with a teacher (KD)"),
    "bench": ("paragen.commands.bench", "decoding speed of trained models, batch 1 and batched"),
    "export": ("paragen.commands.export", "write a model as ONNX or TorchScript graphs"),
    "serve": ("paragen.commands.serve", "HTTP server with dynamic batching (127.0.0.1)"),
}

EXIT_ERROR, EXIT_INTERRUPTED = 2, 130


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="paragen", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (module, help_text) in VERBS.items():
        sub = verbs.add_parser(verb, help=help_text, description=help_text)
        sub.set_defaults(module=module)
        importlib.import_module(module).add_arguments(sub)
    args, extra = parser.parse_known_args(argv)
    args.overrides = extra
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return _run(lambda: importlib.import_module(args.module).run(args))


def run_main(argv: Optional[List[str]] = None) -> int:
    """`paragen-run --config cfg.yaml [--lib X] [--task.a.b V ...]`: runs `task.mode`."""
    parser = argparse.ArgumentParser(prog="paragen-run")
    add_arguments(parser)
    args, overrides = parser.parse_known_args(argv)
    return _run(lambda: run_config(args.config, args.lib, overrides))


def _run(action) -> int:
    try:
        result = action()
    except TrainingInterrupted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ParagenError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
