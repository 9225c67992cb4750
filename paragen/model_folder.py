"""Model folders: what `paragen train` and `paragen export` write and every other verb reads.

A trained folder holds checkpoints (`best.pt`, `average.pt`, `last.pt`, `checkpoint_<step>.pt`),
the tokenizer model(s) and `metrics.jsonl`; an exported folder holds graphs, tokenizer model(s)
and `export.json` (the manifest). Either way the folder is all a decode needs.

A folder is data, never code: nothing it names is imported (a stored `env.custom_libs` is
reported, not imported), and every path it names must stay inside it.
"""
from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch

from paragen.checkpoint import load_checkpoint
from paragen.errors import DataError

MANIFEST = "export.json"
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}  # graph formats: one file per graph
ENGINES = ("ctranslate2",)  # whole-model formats, run by their own engine (no graphs)
FAMILIES = ("ar", "nat", "dag", "crf", "classifier")  # the graph sets `paragen export` writes
# How an AR export's step and block graphs take their cache (`exporting/graphs.py`): each
# decoder layer's keys and values as inputs and outputs of their own. AR exports without this
# manifest key packed them into one tensor.
AR_CACHE_LAYOUT = "per_layer"
# Their per-layer inputs, in order within a layer, with the decoder cache key each one feeds;
# the graphs give back present_key_i and present_value_i (the grown "k" and "v").
AR_CACHE_INPUTS = (("memory_key", "mem_k"), ("memory_value", "mem_v"), ("past_key", "k"),
                   ("past_value", "v"))


def ar_cache_names(layers: int) -> Tuple[List[str], List[str]]:
    """The AR step and block graphs' per-layer cache input and output names, layer by layer."""
    inputs = [f"{name}_{i}" for i in range(layers) for name, _ in AR_CACHE_INPUTS]
    outputs = [f"{name}_{i}" for i in range(layers) for name in ("present_key", "present_value")]
    return inputs, outputs
CHECKPOINT_PREFERENCE = ("best.pt", "average.pt", "last.pt")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]+")


def is_exported(model: str) -> bool:
    """A folder written by `paragen export` (graphs + export.json) rather than checkpoints."""
    return os.path.isdir(model) and os.path.isfile(os.path.join(model, MANIFEST))


def resolve_checkpoint(path: str) -> str:
    """A folder means its best.pt (else average.pt, else last.pt); a file is used as is."""
    if os.path.isdir(path):
        for name in CHECKPOINT_PREFERENCE:
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise DataError(f"{path}: no {', '.join(CHECKPOINT_PREFERENCE)} in this folder")
    if not os.path.isfile(path):
        raise DataError(f"{path}: model folder or checkpoint not found")
    return path


def read_manifest(folder: str) -> Dict[str, Any]:
    """The export manifest, checked: known format, graph names that are plain file stems."""
    path = os.path.join(folder, MANIFEST)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError, RecursionError) as err:
        raise DataError(f"{path}: cannot read the export manifest ({err})") from None
    if not isinstance(manifest, dict):
        raise DataError(f"{path}: expected a JSON object")
    for key in ("format", "family", "graphs", "config"):
        if key not in manifest:
            raise DataError(f"{path}: key '{key}' missing")
    if manifest["format"] not in SUFFIX and manifest["format"] not in ENGINES:
        raise DataError(f"{path}: format must be one of {sorted(SUFFIX) + list(ENGINES)}, got "
                        f"{manifest['format']!r}")
    if manifest["family"] not in FAMILIES:
        raise DataError(f"{path}: family must be one of {', '.join(FAMILIES)}, got "
                        f"{manifest['family']!r}")
    graphs = manifest["graphs"]
    if not isinstance(graphs, list) or not all(isinstance(g, str) and _PLAIN_NAME.fullmatch(g)
                                               for g in graphs):
        raise DataError(f"{path}: graphs must be a list of plain names (letters, digits, _), "
                        f"got {graphs!r}")
    if not isinstance(manifest["config"], dict) or not isinstance(
            manifest["config"].get("task"), dict):
        raise DataError(f"{path}: config must be a mapping with a 'task' section")
    return manifest


def path_inside(folder: str, relative: str, what: str) -> str:
    """`folder/relative`, refused if it points outside `folder` (absolute, `..`, links)."""
    root = os.path.realpath(folder)
    target = os.path.realpath(os.path.join(folder, str(relative)))
    if os.path.commonpath([root, target]) != root:
        raise DataError(f"{folder}: {what} {relative!r} points outside the model folder")
    return target


@dataclass
class ModelFolder:
    """One read of a model folder or checkpoint: its config, its weights, where it lives."""

    config: Dict[str, Any]
    folder: str
    weights: Optional[Dict[str, torch.Tensor]]  # None for an exported folder
    checkpoint: Optional[str]  # the .pt file the weights came from
    stored_libs: List[str]  # plug-ins it was trained with (reported, never imported)

    @property
    def exported(self) -> bool:
        return self.checkpoint is None


def open_model_folder(model: str) -> ModelFolder:
    """Read a folder (or one .pt file) once; the weights are memory-mapped, not copied, so the
    optimizer state a training checkpoint also carries costs nothing here."""
    if is_exported(model):
        manifest = read_manifest(model)
        config, folder, weights, checkpoint = manifest["config"], os.path.abspath(model), None, None
    else:
        checkpoint = resolve_checkpoint(model)
        state = load_checkpoint(checkpoint, mmap=True)
        if not isinstance(state.get("config"), dict) or "model" not in state:
            raise DataError(f"{checkpoint}: not a paragen checkpoint (no config or model weights)")
        config, weights = state["config"], state["model"]
        folder = os.path.dirname(os.path.abspath(checkpoint))
    config = copy.deepcopy(config)
    if not isinstance(config.get("task"), dict):
        raise DataError(f"{model}: the stored config has no task section")
    env = config.get("env") or {}
    # The thread count a model was trained with says how that run shared its machine, not how
    # the model should run: decoding takes the caller's count (torch's current one, which
    # bench sets per system and ONNX sessions fix when built), or an `env.threads` override.
    env.pop("threads", None)
    libs = env.pop("custom_libs", None) or []
    stored_libs = [libs] if isinstance(libs, str) else [str(lib) for lib in libs]
    _check_tokenizer_paths(config["task"], folder)
    return ModelFolder(config, folder, weights, checkpoint, stored_libs)


def stored_config(model: str) -> Dict[str, Any]:
    """A copy of the config a model folder was saved with (plug-in list removed)."""
    return open_model_folder(model).config


def _check_tokenizer_paths(task: Dict[str, Any], folder: str) -> None:
    tokenizer = task.get("tokenizer") or {}
    entries = [tokenizer] if "class" in tokenizer else list(tokenizer.values())
    for entry in entries:
        if isinstance(entry, dict) and "model" in entry:
            path_inside(folder, entry["model"], "tokenizer model")
