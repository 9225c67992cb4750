"""Rebuild a trained task from a checkpoint folder (config, tokenizer and weights live there)."""
from __future__ import annotations

import copy
import os
from typing import Any, Dict, List, Optional, Tuple

from paragen.config import apply_overrides, parse_overrides
from paragen.errors import ConfigError, DataError
from paragen.trainers.checkpoint import load_checkpoint


def resolve_checkpoint(path: str) -> str:
    """A folder means its best.pt (else last.pt); a file is used as is."""
    if os.path.isdir(path):
        for name in ("best.pt", "average.pt", "last.pt"):
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        raise DataError(f"{path}: no best.pt, average.pt or last.pt in this folder")
    if not os.path.isfile(path):
        raise DataError(f"{path}: model folder or checkpoint not found")
    return path


def search_for_beam(beam: Optional[int]) -> Optional[Dict[str, Any]]:
    """`--beam N` on the command line: 1 means greedy search, None keeps the stored search."""
    if beam is None:
        return None
    return {"class": "GreedySearch"} if beam == 1 else {"class": "BeamSearch", "beam_size": beam}


def load_trained_task(model: str, mode: str, overrides: List[str] = (),
                      data: Optional[Dict[str, Any]] = None, libs: List[str] = (),
                      search: Optional[Dict[str, Any]] = None):
    """Build the task stored in a checkpoint, in `mode` (`infer` or `evaluate`), with its weights.

    `data` replaces the stored data splits (evaluate on other files); overrides apply last, so
    `--task.generator.search.beam_size 8` widens the beam; `search` replaces the whole search
    config (switching class, e.g. beam → greedy, changes which keys are valid).
    """
    from paragen.commands.train import build_task

    config, base_dir = stored_config(model)
    task_cfg = config["task"]
    task_cfg["mode"] = mode
    task_cfg["model"]["path"] = os.path.abspath(base_dir if is_exported(model)
                                                else resolve_checkpoint(model))
    for key in ("trainer", "criterion"):
        task_cfg.pop(key, None)
    if search is not None:
        generator = task_cfg.setdefault("generator", {"class": "SequenceGenerator"})
        if generator["class"].lower() != "sequencegenerator":
            raise ConfigError(f"--beam applies to autoregressive models; {model} uses "
                              f"{generator['class']} (try --task.generator.length_beam 5)")
        generator["search"] = search
    if data is not None:
        task_cfg["data"] = data
    elif "data" in task_cfg:
        task_cfg["data"] = {k: v for k, v in task_cfg["data"].items() if k != "train"}
    config = apply_overrides(config, parse_overrides(overrides))
    return build_task(config, libs, base_dir=base_dir)


def is_exported(model: str) -> bool:
    """A folder written by `paragen export` (graphs + export.json) rather than checkpoints."""
    from paragen.exporting.runtime import MANIFEST

    return os.path.isdir(model) and os.path.isfile(os.path.join(model, MANIFEST))


def stored_config(model: str) -> Tuple[Dict[str, Any], str]:
    """(a copy of the config a model folder/checkpoint was saved with, the folder it lives in)."""
    if is_exported(model):
        from paragen.exporting.runtime import read_manifest

        return copy.deepcopy(read_manifest(model)["config"]), os.path.abspath(model)
    checkpoint = resolve_checkpoint(model)
    return (copy.deepcopy(load_checkpoint(checkpoint)["config"]),
            os.path.dirname(os.path.abspath(checkpoint)))
