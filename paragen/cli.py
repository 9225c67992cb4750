"""Command line: `paragen <verb> ...` and ParaGen's `paragen-run --config cfg.yaml`.

Every user-facing failure (bad config, bad data, failed plug-in import) is a `ParagenError`:
it is printed as one `error: ...` line and the process exits non-zero, without a traceback.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
import traceback
from typing import List, Optional

from paragen.commands.train import add_arguments, run_config
from paragen.errors import ParagenError, TrainingInterrupted

VERBS = {
    "train": ("paragen.commands.train", "train a model from a YAML config"),
    "evaluate": ("paragen.commands.evaluate", "score a trained model on test data"),
    "generate": ("paragen.commands.generate",
                 "one answer per input line (translation, label, answer span) from stdin "
                 "or --input"),
    "build-tokenizer": ("paragen.commands.build_tokenizer", "learn a SentencePiece model"),
    "average-checkpoints": ("paragen.commands.average_checkpoints",
                            "average the weights of several checkpoints"),
    "prepare-data": ("paragen.commands.prepare_data", "copy or download a dataset"),
    "clean": ("paragen.commands.clean", "filter and normalise a parallel corpus"),
    "rerank": ("paragen.commands.rerank",
               "pick candidates by tuned feature weights (n-best / system combination)"),
    "binarize": ("paragen.commands.binarize", "tokenize text once into memory-mapped ids"),
    "distill": ("paragen.commands.distill", "translate a training set with a teacher (KD)"),
    "bench": ("paragen.commands.bench", "decoding speed of trained models, batch 1 and batched"),
    "export": ("paragen.commands.export", "write a model as ONNX, TorchScript or CTranslate2"),
    "serve": ("paragen.commands.serve", "HTTP server with dynamic batching (127.0.0.1)"),
    "list": ("paragen.commands.list", "the registered classes of each kind and their arguments"),
    "plot": ("paragen.commands.plot", "loss, learning rate, validation and speed of a run (PNG)"),
}

EXIT_ERROR, EXIT_INTERRUPTED = 2, 130


class _DefaultsRawHelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default (when it has one worth showing), and the epilog's example
    lines as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        default = action.default
        if "%(default)" in help_text or default in (None, False, [], argparse.SUPPRESS) \
                or not action.option_strings:
            return help_text
        return f"{help_text} (default: %(default)s)"

OVERRIDE_ROOTS = ("task", "env", "define")


OVERRIDES_HELP = """config overrides: any config value, by its dotted path, after the options,
in either spelling:
  --task.trainer.max_steps 100   task.trainer.max_steps=100
  --task.generator.length_beam 5 --env.threads 1
  --define.data data/multi30k (train only: a trained model's folder fixes its data)
values are YAML (100 is an int, [0.9, 0.98] a list); `paragen list` shows every class's keys"""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("paragen")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="paragen", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"paragen {version()}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    subparsers = {}
    for verb, (module, help_text) in VERBS.items():
        sub = subparsers[verb] = verbs.add_parser(
            verb, help=help_text, description=help_text,
            formatter_class=_DefaultsRawHelpFormatter)
        sub.set_defaults(module=module, accepts_overrides=False)
        importlib.import_module(module).add_arguments(sub)
        sub.add_argument("--debug", action="store_true",
                         help="show the full traceback of an error (also PARAGEN_DEBUG=1)")
        if sub.get_default("accepts_overrides"):
            sub.epilog = OVERRIDES_HELP
    args, extra = parser.parse_known_args(argv)
    args.overrides = extra
    if extra:
        sub = subparsers[args.verb]
        unknown = extra if not args.accepts_overrides else _not_overrides(extra)
        if unknown:
            options = [o for action in sub._actions for o in action.option_strings]
            close = difflib.get_close_matches(unknown[0], options, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else ""
            sub.error(f"unrecognized argument {unknown[0]}{hint}" + (
                " (config overrides start with --task. or --env.)"
                if args.accepts_overrides else ""))
    return _run(lambda: importlib.import_module(args.module).run(args), args.debug)


def _not_overrides(extra: List[str]) -> List[str]:
    """The extra arguments that are not config overrides (`--task.x V`, `env.y=V`): a mistyped
    option such as `--outptu` must not pass silently as an override nobody reads."""
    unknown, expect_value = [], False
    for arg in extra:
        if expect_value and not arg.startswith("--"):
            expect_value = False
            continue
        key = arg[2:] if arg.startswith("--") else arg
        root = key.split("=", 1)[0].split(".", 1)[0]
        if root not in OVERRIDE_ROOTS or "." not in key.split("=", 1)[0] and root != "define":
            unknown.append(arg)
        expect_value = arg.startswith("--") and "=" not in arg
    return unknown


def run_main(argv: Optional[List[str]] = None) -> int:
    """`paragen-run --config cfg.yaml [--lib X] [--task.a.b V ...]`: runs `task.mode`."""
    parser = argparse.ArgumentParser(prog="paragen-run")
    add_arguments(parser)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    args, overrides = parser.parse_known_args(argv)
    unknown = _not_overrides(overrides)
    if unknown:
        parser.error(f"unrecognized argument {unknown[0]} (config overrides start with --task. "
                     f"or --env.)")
    return _run(lambda: run_config(args.config, args.lib, overrides), args.debug)


def _run(action, debug: bool = False) -> int:
    """Run a verb; user-facing failures become one `error:` line and exit 2.

    A `ParagenError` names its config key or file itself. An `OSError` (missing folder, disk
    full, a directory where a file was expected) or a `ValueError` raised while building or
    running is almost always bad input too, so it gets the same one-line form; `--debug` (or
    PARAGEN_DEBUG=1) shows the traceback instead, for the rare genuine bug.
    """
    debug = debug or os.environ.get("PARAGEN_DEBUG", "") not in ("", "0")
    try:
        result = action()
    except TrainingInterrupted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ParagenError as err:
        if debug:
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OSError, ValueError, MemoryError) as err:
        if debug:
            raise
        print(f"error: {_one_line(err)} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_ERROR
    except SystemExit as exit_:  # sys.exit() inside a plug-in or library: not a success
        code = exit_.code if isinstance(exit_.code, int) else 1
        if code == 0:
            print("error: something called sys.exit(0) before the command finished "
                  "(a plug-in?)", file=sys.stderr)
            return EXIT_ERROR
        raise
    return result if isinstance(result, int) else 0


def _one_line(err: BaseException) -> str:
    """`PermissionError: [Errno 13] Permission denied: 'x'` as one line, file name included."""
    if isinstance(err, OSError) and err.filename is not None:
        return f"{err.filename}: {err.strerror or type(err).__name__}"
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) < 400 else text[:400] + " ..."


if __name__ == "__main__":
    sys.exit(main())
