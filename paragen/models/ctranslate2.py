"""A CTranslate2 model folder run in place of the PyTorch model (`paragen export --format
ctranslate2`).

The folder's `export.json` names `CTranslate2Model` as the task's model and
`CTranslate2Generator` as its generator, so `generate`, `evaluate`, `serve` and `bench` build
the usual task and tokenizer around a `ctranslate2.Translator`. The generator takes and gives
what `SequenceGenerator` does: source ids (B,S) with eos, pad-filled, in; output ids (B,T)
without bos/eos, pad-filled, and scores (B,) out. Ids become pieces at the CTranslate2 boundary
(its API takes token strings), which is a table lookup, not tokenization.

Decoding follows paragen's searches (`paragen.search`) wherever CTranslate2 lets it:
  * the same per-sentence limit `max_len = int(a·src_len + b)` (src_len counts eos), clamped to
    the position table; CTranslate2 takes one limit per call, so a batch runs to its longest
    limit + 1 steps and each output is cut to its own limit. Greedy outputs are then equal to
    paragen's token for token; a beam search that reaches a sentence's limit is not (paragen
    forces eos at the limit, CTranslate2 keeps its best candidates of any token there);
  * beam search ranks 2K candidates, finishes eos in the top K, stops at K finished
    hypotheses (patience 1) and normalises by length^lenpen with eos counted
    (`return_end_token`), as `BeamSearch`. With lenpen 0 CTranslate2 stops as soon as the best
    beam ends, where paragen still waits for K finished hypotheses;
  * pad is never generated: CTranslate2 removes it before the softmax, paragen after, so beam
    scores differ by log(1 - p(pad)) per step (greedy choices are the same).
"""
from __future__ import annotations

import json
import os
from typing import List, Optional

import numpy as np
import torch
from torch import nn

from paragen.errors import ConfigError, DataError
from paragen.model_folder import read_manifest
from paragen.registry import register_model


def import_ctranslate2():
    """The ctranslate2 module, or a one-line error saying how to install it."""
    try:
        import ctranslate2
    except ImportError:
        raise ConfigError("CTranslate2 models need the ctranslate2 package: "
                          "pip install 'paragen[ctranslate2]'") from None
    return ctranslate2


@register_model
class CTranslate2Model(nn.Module):
    """The translator of a CTranslate2 folder and its vocabularies (pieces ⇄ ids).

    `compute_type`: CTranslate2's (`default`: as stored, int8 for an int8 export; `int8` runs
    a float32 export quantized). `threads`: intra-op threads, default torch's current count.
    """

    def __init__(self, path: str, compute_type: str = "default", threads: Optional[int] = None,
                 *, src_vocab_size: int, tgt_vocab_size: int, pad_id: int,
                 config_path: str = "task.model"):
        super().__init__()
        ctranslate2 = import_ctranslate2()
        self.folder = path if os.path.isdir(path) else os.path.dirname(path)
        self.max_positions = int(read_manifest(self.folder)["max_positions"])
        source, target = (_vocabulary(self.folder, side) for side in ("source", "target"))
        for side, pieces, size in (("source", source, src_vocab_size),
                                   ("target", target, tgt_vocab_size)):
            if len(pieces) != size:
                raise DataError(f"{self.folder}: the {side} vocabulary has {len(pieces)} "
                                f"pieces, the tokenizer {size}")
        self.source_pieces = np.array(source, dtype=object)
        # pieces → ids by binary search in the sorted pieces (one vectorised call per batch)
        self._target_order = np.argsort(np.array(target))
        self._sorted_targets = np.array(target)[self._target_order]
        self.pad_piece = target[pad_id]
        try:
            self.translator = ctranslate2.Translator(
                self.folder, device="cpu", compute_type=compute_type, inter_threads=1,
                intra_threads=threads or torch.get_num_threads())
        except (RuntimeError, ValueError) as err:
            raise ConfigError(f"{config_path}: CTranslate2 cannot load {self.folder} with "
                              f"compute_type {compute_type!r} ({err})") from None
        self.compute_type = self.translator.compute_type

    def piece_ids(self, pieces: List[str]) -> torch.Tensor:
        """(N,) target ids of N target pieces (all in the vocabulary: CTranslate2 made them)."""
        found = np.searchsorted(self._sorted_targets, np.array(pieces))
        return torch.from_numpy(self._target_order[found].astype(np.int64))


def _vocabulary(folder: str, side: str) -> List[str]:
    """CTranslate2 writes one `shared_vocabulary.json` when both sides are equal."""
    for name in (f"{side}_vocabulary.json", "shared_vocabulary.json"):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                return json.load(f)
    raise DataError(f"{folder}: no {side} vocabulary (not a CTranslate2 export)")
