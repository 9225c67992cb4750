"""`paragen serve --model DIR [--host 127.0.0.1] [--port 8080]`: an HTTP server for any
model folder whose task answers lines (translation, classification, regression ...: a
`ServedPredictor`, see `paragen/serving/app.py` for the answers).

Binds to 127.0.0.1 unless told otherwise. Needs the `serve` extra (fastapi, uvicorn).
Options are checked, the port bound, and the folder's task checked against what the options
need (`--long-inputs split` and `--beam` are for translation), before the model loads.
"""
from __future__ import annotations

import argparse

from paragen.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model folder or checkpoint")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (0.0.0.0 exposes the server to the network)")
    parser.add_argument("--port", type=int, default=8080, help="TCP port to listen on")
    parser.add_argument("--max-tokens", type=int, default=4096,
                        help="input tokens merged into one model call")
    parser.add_argument("--max-batch-tokens", type=int, dest="max_tokens",
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # former name
    parser.add_argument("--max-wait-ms", type=float, default=5.0,
                        help="how long the first queued request waits for company")
    parser.add_argument("--max-inputs", type=int, default=64, help="inputs per request")
    parser.add_argument("--max-input-chars", type=int, default=2000, help="characters per input")
    parser.add_argument("--max-body-bytes", type=int, default=1 << 20, help="request body size")
    parser.add_argument("--long-inputs", choices=("reject", "split"), default="reject",
                        help="an input over the model's max length: 413 (reject), or, "
                             "translation only, translate it in pieces at sentence "
                             "boundaries (split)")
    parser.add_argument("--beam", type=int, help="AR beam size (1 = greedy)")
    parser.add_argument("--lib", action="append", default=[],
                        help="plug-in module or folder to import (repeatable, or comma-separated)")
    parser.set_defaults(accepts_overrides=True)


def run(args: argparse.Namespace) -> int:
    from paragen.interfaces import PieceJoiner, ServedPredictor
    from paragen.serving.options import bind, check_args

    check_args(args)
    try:
        import uvicorn
    except ImportError:
        raise ConfigError("serving needs the serve extra: pip install 'paragen[serve]'") from None
    from paragen.serving.app import create_app
    from paragen.tasks.build import load_trained_task, search_for_beam

    with bind(args.host, args.port) as sock:  # a busy port fails before the model loads
        split = args.long_inputs == "split"
        task = load_trained_task(args.model, "infer", args.overrides, libs=args.lib,
                                 search=search_for_beam(args.beam),
                                 needs=PieceJoiner if split else ServedPredictor,
                                 needed_by="--long-inputs split" if split else "serve")
        app = create_app(task, args.model, max_inputs=args.max_inputs,
                         max_input_chars=args.max_input_chars,
                         max_batch_tokens=args.max_tokens, max_wait_ms=args.max_wait_ms,
                         long_inputs=args.long_inputs, max_body_bytes=args.max_body_bytes)
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
        uvicorn.Server(config).run(sockets=[sock])
    return 0
