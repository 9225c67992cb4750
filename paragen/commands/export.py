"""`paragen export --model DIR --format onnx|torchscript|ctranslate2 --output OUT`.

OUT then runs wherever a model folder does: `paragen generate/evaluate/serve/bench --model OUT`
(ONNX through onnxruntime: `pip install 'paragen[export]'`; CTranslate2, for the AR
Transformer: `pip install 'paragen[ctranslate2]'`).
"""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder or .pt file")
    parser.add_argument("--format", required=True, choices=["onnx", "torchscript", "ctranslate2"],
                        help="graphs for onnxruntime or torch.jit, or a CTranslate2 model (AR)")
    parser.add_argument("--output", required=True, help="folder to write (replaced if exported)")
    parser.add_argument("--quantize", choices=["int8"],
                        help="int8 weights: ONNX through onnxruntime's dynamic quantization, "
                             "CTranslate2 with its own per-row scales")
    parser.add_argument("--portable", action="store_true",
                        help="ONNX: standard operators only, for engines other than "
                             "onnxruntime (by default attention is written as onnxruntime's "
                             "fused MultiHeadAttention node wherever it fits, which is faster)")
    parser.add_argument("--lib", action="append", default=[],
                        help="plug-in module or folder to import (repeatable)")


def run(args: argparse.Namespace) -> int:
    from paragen.exporting.export import export_model

    manifest = export_model(args.model, args.format, args.output, args.lib,
                            quantize=args.quantize == "int8", portable=args.portable)
    kind = args.format + (" int8" if args.quantize else "")
    parts = f" ({', '.join(manifest['graphs'])})" if manifest["graphs"] else ""
    print(f"exported {manifest['family'].upper()} model {args.model} as {kind}{parts} "
          f"to {args.output}")
    return 0
