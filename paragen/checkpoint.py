"""Checkpoint files: atomic writes, safe loads, weight loading, RNG capture, averaging.

A checkpoint is a dict of tensors and plain Python values only, so it loads with
`torch.load(weights_only=True)` — no pickled code runs when a file from elsewhere is opened.
"""
from __future__ import annotations

import os
import random
import tempfile
from typing import Any, Dict, List, Tuple

import numpy as np
import torch
from torch import nn

from paragen.errors import DataError


def save_checkpoint(state: Dict[str, Any], path: str) -> None:
    """Write to a temp file in the same folder, fsync, then rename: a crash never leaves a
    half-written checkpoint under the real name."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str, mmap: bool = False) -> Dict[str, Any]:
    """A checkpoint dict; `mmap` maps the tensors instead of reading them (a decode needs the
    weights only, not the optimizer state stored beside them)."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # empty or truncated file, wrong format, a pickle with code in it
        first_line = (str(err).splitlines() or [""])[0][:200]
        raise DataError(f"{path}: cannot load checkpoint ({type(err).__name__}"
                        f"{': ' + first_line if first_line else ''})") from None
    if not isinstance(state, dict):
        raise DataError(f"{path}: not a paragen checkpoint (holds a {type(state).__name__}, "
                        f"expected a dict with config and model weights)")
    return state


def model_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The state dict of the bare model (never DDP's `module.`-prefixed one)."""
    return getattr(model, "module", model).state_dict()


def load_model_weights(model: nn.Module, path_or_paths: str) -> None:
    """Load weights strictly; a comma-separated list of paths is averaged first."""
    paths = [p for p in path_or_paths.split(",") if p]
    state = average_states(paths) if len(paths) > 1 else load_checkpoint(paths[0])["model"]
    assign_weights(model, state, path_or_paths)


def assign_weights(model: nn.Module, state: Dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`, every name and shape matching exactly (else one clear error)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    bare = getattr(model, "module", model)
    expected = bare.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    resized = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
               if k in state and state[k].shape != v.shape]
    if missing or unexpected or resized:
        raise DataError(f"{source}: checkpoint does not match the model (missing {missing[:5]}, "
                        f"unexpected {unexpected[:5]}, other shapes {resized[:3]}); was it "
                        f"trained with another architecture or vocabulary?")
    bare.load_state_dict(state, strict=True)


def load_matching_weights(model: nn.Module, path: str
                          ) -> Tuple[List[str], List[str], List[str]]:
    """Copy every parameter of the checkpoint whose name the model has; return (loaded, fresh:
    the model's tensors the checkpoint lacks, unused: the checkpoint's the model lacks).

    Why: a NAT student starts much better from its AR teacher's encoder, embeddings and
    decoder layers (same names and shapes) than from random weights, and a classifier from a
    masked LM's encoder; the parts the source lacks (GLAT's length classifier, the
    classifier's head) keep their fresh initialization. A tensor with the model's name but
    another shape is an error, not a skip: it means another vocabulary or architecture, and
    skipping it would train, say, pre-trained layers over random token embeddings. The one
    exception is a task head (the top-level module `head`: a masked LM's vocabulary
    projection, a classifier's labels, a span head's start/end): heads are task-specific, so
    one of another shape stays fresh.
    """
    source = {k.removeprefix("module."): v for k, v in load_checkpoint(path)["model"].items()}
    target = getattr(model, "module", model).state_dict()
    other_head = {k for k, v in target.items()
                  if k.startswith("head.") and k in source and source[k].shape != v.shape}
    source = {k: v for k, v in source.items() if k not in other_head}
    resized = [f"{k} {tuple(source[k].shape)} there, {tuple(v.shape)} here"
               for k, v in target.items() if k in source and source[k].shape != v.shape]
    if resized:
        raise DataError(f"{path}: {len(resized)} tensor(s) have this model's names but other "
                        f"shapes ({'; '.join(resized[:3])}): another vocabulary (use the "
                        f"tokenizer that checkpoint was trained with) or another architecture")
    matching = {k: v for k, v in source.items() if k in target}
    if not matching:
        raise DataError(f"{path}: no parameter matches the model by name and shape")
    getattr(model, "module", model).load_state_dict(matching, strict=False)
    return sorted(matching), sorted(set(target) - set(matching)), sorted(set(source) - set(target))


def average_states(paths: List[str]) -> Dict[str, torch.Tensor]:
    """Element-wise mean of the models' parameters (float math; integer buffers from the last).

    All checkpoints must hold the same model class with the same parameter names and shapes.
    """
    if not paths:
        raise DataError("no checkpoints to average")
    total: Dict[str, torch.Tensor] = {}
    first_class = None
    for path in paths:
        checkpoint = load_checkpoint(path, mmap=True)
        model_class = ((checkpoint.get("config") or {}).get("task") or {}).get("model", {}) \
            .get("class")
        if first_class is None:
            first_class = model_class
        elif model_class != first_class:
            raise DataError(f"{path}: a {model_class} model; {paths[0]} is a {first_class}: "
                            f"only checkpoints of one model can be averaged")
        state = checkpoint["model"]
        if total and (state.keys() != total.keys() or any(
                state[k].shape != total[k].shape for k in state)):
            raise DataError(f"{path}: parameters differ from {paths[0]} (names or shapes)")
        for key, value in state.items():
            if value.is_floating_point():
                total[key] = total[key] + value.double() if key in total else value.double()
            else:
                total[key] = value.clone()
    return {k: (v / len(paths)).to(torch.float32) if v.is_floating_point() else v
            for k, v in total.items()}


def rng_state() -> Dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                       "has_gauss": has_gauss, "cached": cached}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
