"""`paragen export --model DIR --format onnx|torchscript --output OUT`.

OUT then runs wherever a model folder does: `paragen generate/evaluate/serve/bench --model OUT`
(ONNX through onnxruntime: `pip install 'paragen[export]'`).
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder or .pt file")
    parser.add_argument("--format", required=True, choices=["onnx", "torchscript"],
                        help="graph format (ONNX runs in onnxruntime)")
    parser.add_argument("--output", required=True, help="folder to write (replaced if exported)")
    parser.add_argument("--quantize", choices=["int8"],
                        help="ONNX only: int8 weights (onnxruntime dynamic quantization)")
    parser.add_argument("--lib", action="append", default=[],
                        help="plug-in module or folder to import (repeatable)")


def run(args: argparse.Namespace) -> int:
    from paragen.exporting.export import export_model

    manifest = export_model(args.model, args.format, args.output, args.lib,
                            quantize=args.quantize == "int8")
    kind = args.format + (" int8" if args.quantize else "")
    print(f"exported {manifest['family'].upper()} model {args.model} as {kind} "
          f"({', '.join(manifest['graphs'])}) to {args.output}")
    return 0
