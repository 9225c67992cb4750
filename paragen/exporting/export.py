"""Write a trained model as a self-contained folder of graphs (see `graphs.py` for their shapes).

The folder holds the graphs, the tokenizer model(s) and `export.json` (format, family, the task
config with `task.model` replaced by `ExportedModel`), and nothing else is needed to run it.
It is written beside the target and renamed into place, so a failed export leaves nothing half
written.
"""
from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import tempfile
import warnings
from typing import Any, Callable, Dict, List

import torch

from paragen.decoders import TransformerDecoder
from paragen.errors import ConfigError
from paragen.exporting.fused_attention import CONTRIB_DOMAIN, fusing_attention
from paragen.exporting.graphs import GRAPHS, example_inputs, graph_io
from paragen.interfaces import DAGModel, NATModel
from paragen.model_folder import (AR_CACHE_LAYOUT, ENGINES, MANIFEST, SUFFIX,
                                   resolve_checkpoint, stored_config)
from paragen.models import NATCRF, SequenceClassifier
from paragen.registry import lookup
from paragen.tasks.build import load_trained_task

logger = logging.getLogger("paragen")
ONNX_OPSET = 17


def export_model(model: str, fmt: str, output: str, libs: List[str] = (),
                 quantize: bool = False, portable: bool = False) -> Dict[str, Any]:
    """Export the checkpoint `model` (folder or .pt) to the folder `output`; returns the manifest.

    `quantize` (ONNX) stores MatMul/Gemm weights as int8 with onnxruntime's dynamic
    quantization: smaller and faster on CPU, but no longer token-for-token equal. ONNX graphs
    write attention as onnxruntime's fused operator wherever it fits, unless `portable`
    (`fused_attention.py`). The `ctranslate2` format is a CTranslate2 model instead of graphs
    (`ctranslate2.py`).
    """
    if fmt == "ctranslate2":
        from paragen.exporting.ctranslate2 import export_ctranslate2

        return export_ctranslate2(model, output, libs, quantize)
    if fmt not in SUFFIX:
        raise ConfigError(f"--format: expected one of {sorted(SUFFIX) + list(ENGINES)}, "
                          f"got {fmt!r}")
    if quantize and fmt != "onnx":
        raise ConfigError("--quantize int8 applies to --format onnx and ctranslate2")
    if portable and fmt != "onnx":
        raise ConfigError("--portable applies to --format onnx")
    fused = fmt == "onnx" and not portable
    check_output(output)
    checkpoint = resolve_checkpoint(model)
    task = load_float32_task(checkpoint, libs)
    net = task.model.eval()
    family = _family(net, model)
    manifest = {"format": fmt, "family": family, "graphs": list(GRAPHS[family]),
                "quantized": "int8" if quantize else None, "fused_attention": fused,
                "source": os.path.abspath(checkpoint), "model_class": type(net).__name__,
                **_family_settings(net, family),
                "config": runtime_config(checkpoint)}

    def write_graphs(staging: str) -> None:
        inputs = example_inputs(net, family)
        with torch.no_grad(), warnings.catch_warnings(), fusing_attention(fused):
            warnings.simplefilter("ignore")  # tracer chatter about constants we chose
            for name, graph_class in GRAPHS[family].items():
                path = os.path.join(staging, name + SUFFIX[fmt])
                _write_graph(graph_class(net).eval(), inputs[name],
                             graph_io(family, name, _decoder_layers(net, family)), fmt, path,
                             fused)
                if quantize:
                    _quantize_int8(path)

    publish(output, manifest, os.path.dirname(checkpoint), write_graphs)
    return manifest


def check_output(output: str) -> None:
    """`--output` may be replaced only when it is an exported folder (or empty): checked before
    the model loads."""
    if os.path.exists(output) and not os.path.isfile(os.path.join(output, MANIFEST)) \
            and (not os.path.isdir(output) or os.listdir(output)):
        raise ConfigError(f"--output {output}: exists and is not an exported model folder")


def publish(output: str, manifest: Dict[str, Any], checkpoint_dir: str,
            write: Callable[[str], None]) -> None:
    """Write the folder beside `output` (`write(folder)`, then the tokenizer model(s) from
    `checkpoint_dir` and the manifest) and rename it into place, so that a failed export
    leaves nothing half written and an earlier export stays until the new one is whole."""
    parent = os.path.dirname(os.path.abspath(output))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        write(staging)
        copy_tokenizers(manifest["config"], checkpoint_dir, staging)
        with open(os.path.join(staging, MANIFEST), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2)
        os.chmod(staging, 0o755)  # mkdtemp makes it private
        if os.path.exists(output):
            shutil.rmtree(output)
        os.replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _family(net: torch.nn.Module, model: str) -> str:
    """Which set of graphs (`graphs.GRAPHS`) a model is written as."""
    if isinstance(net, DAGModel):
        return "dag"
    if isinstance(net, NATCRF):
        return "crf"
    if isinstance(net, NATModel):
        return "nat"
    if isinstance(net, SequenceClassifier):
        return "classifier"
    if isinstance(getattr(net, "decoder", None), TransformerDecoder):
        return "ar"
    raise ConfigError(f"{model}: export supports Seq2Seq (Transformer), NAT (GLAT, CTCNAT, CMLM, "
                      f"NATCRF, DATransformer) and SequenceClassifier models, not "
                      f"{type(net).__name__}")


def _decoder_layers(net: torch.nn.Module, family: str) -> int:
    return len(net.decoder.layers) if family == "ar" else 0


def _write_graph(graph: torch.nn.Module, inputs: tuple, io: tuple, fmt: str, path: str,
                 fused: bool) -> None:
    if fmt == "torchscript":
        torch.jit.trace(graph, inputs, check_trace=False).save(path)
        return
    input_names, output_names, dynamic_axes = io
    input_names = input_names[:len(inputs)]  # optional inputs come last
    names = set(input_names) | set(output_names)
    torch.onnx.export(graph, inputs, path, input_names=input_names, output_names=output_names,
                      dynamic_axes={key: axes for key, axes in dynamic_axes.items()
                                    if key in names},
                      opset_version=ONNX_OPSET, dynamo=False,
                      custom_opsets={CONTRIB_DOMAIN: 1} if fused else None)


def _quantize_int8(path: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantized = path + ".int8"
    quantize_dynamic(path, quantized, op_types_to_quantize=["MatMul", "Gemm"],
                     weight_type=QuantType.QInt8)
    os.replace(quantized, path)


def _family_settings(net: torch.nn.Module, family: str) -> Dict[str, Any]:
    if family == "classifier":
        return {"num_outputs": int(net.head[-1].out_features),
                "segments": net.segments is not None}
    if family == "ar":
        first = net.decoder.layers[0].self_attn
        return {"max_positions": int(net.decoder.embed.positions.weight.size(0)),
                "cache_shape": [len(net.decoder.layers), first.num_heads, first.head_dim],
                "cache_layout": AR_CACHE_LAYOUT}
    length = {"max_length": net.max_length, "upsample": net.upsample,
              "max_slots": net.max_slots}
    if not net.upsample:  # the length classifier's classes → lengths rule
        length.update(length_prediction=net.length_prediction,
                      max_length_offset=net.max_length_offset)
    return {"length": length}


def load_float32_task(checkpoint: str, libs: List[str]):
    """The trained task with float32 weights, whatever precision the model trained in: every
    export format (and its int8 quantization) starts from them."""
    return load_trained_task(checkpoint, "infer", ["env.precision=fp32"], libs=libs)


def runtime_config(checkpoint: str) -> Dict[str, Any]:
    """The stored config for inference: no training parts, the model replaced by the graphs."""
    config = stored_config(checkpoint)
    if "precision" in config.get("env", {}):  # the graphs are float32 (or int8)
        config["env"]["precision"] = "fp32"
    task = config["task"]
    for key in ("trainer", "criterion", "data", "dataloader"):
        task.pop(key, None)
    task["model"] = {"class": "ExportedModel", "path": "."}
    generator = task.get("generator") or {}
    if generator.pop("reranker", None):
        logger.warning("the exported model drops its AR reranker (a separate PyTorch model)")
    if "class" in generator:
        _single_pass(generator)
    return config


def _single_pass(generator: Dict[str, Any]) -> None:
    """Set a refining generator (`refinement_setting`: NAT refine_steps, mask-predict
    iterations) to one pass, which is all an exported NAT model decodes, so that the folder
    decodes as it is; mask-predict's default is 10 iterations."""
    generator_class = lookup("generator", generator["class"], "task.generator")
    if not hasattr(generator_class, "refinement_setting"):
        return
    key, single = generator_class.refinement_setting
    value = generator.get(key, inspect.signature(generator_class).parameters[key].default)
    if value != single:
        logger.warning(f"the exported model decodes in one pass: task.generator.{key} "
                       f"{value} → {single}")
        generator[key] = single


def copy_tokenizers(config: Dict[str, Any], source_dir: str, target_dir: str) -> None:
    cfg = config["task"]["tokenizer"]
    for entry in [cfg] if "class" in cfg else cfg.values():
        if "model" in entry:
            name = os.path.basename(entry["model"])
            source = os.path.join(source_dir, entry["model"])
            copy = shutil.copytree if os.path.isdir(source) else shutil.copyfile  # HF: a folder
            copy(source, os.path.join(target_dir, name))
            entry["model"] = name
