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

import itertools
import json
import os
from typing import List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from paragen.errors import ConfigError, DataError
from paragen.exporting.ctranslate2 import import_ctranslate2
from paragen.model_folder import read_manifest
from paragen.registry import register_generator, register_model


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


@register_generator
class CTranslate2Generator(nn.Module):
    """Greedy (`beam_size` 1) or beam search by CTranslate2, with `BeamSearch`'s settings."""

    def __init__(self, beam_size: int = 4, lenpen: float = 1.0, max_length_a: float = 1.2,
                 max_length_b: int = 10, min_length: int = 0, *, model: nn.Module, bos_id: int,
                 eos_id: int, pad_id: int, config_path: str = "task.generator"):
        super().__init__()
        if not isinstance(model, CTranslate2Model):
            raise ConfigError(f"{config_path}.class: CTranslate2Generator runs a CTranslate2 "
                              f"export (CTranslate2Model), not {type(model).__name__}")
        if beam_size < 1 or max_length_a < 0 or max_length_b < 0 or min_length < 0:
            raise ConfigError(f"{config_path}: beam_size ({beam_size}) must be ≥ 1, "
                              f"max_length_a ({max_length_a}), max_length_b ({max_length_b}) "
                              f"and min_length ({min_length}) non-negative")
        self.model, self.beam_size, self.lenpen = model, int(beam_size), float(lenpen)
        self.max_length_a, self.max_length_b = float(max_length_a), int(max_length_b)
        self.min_length, self.eos_id, self.pad_id = int(min_length), eos_id, pad_id

    def max_lengths(self, src_lengths: torch.Tensor) -> torch.Tensor:
        """(B,) output limits (eos excluded), by `Search.max_lengths`' rule."""
        limit = (self.max_length_a * src_lengths.double() + self.max_length_b).long()
        return limit.clamp_(max=self.model.max_positions - 1)

    @torch.inference_mode()
    def forward(self, src: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B,S) source ids, each row ending in eos → (B,T) output ids and (B,) scores."""
        src = src.cpu()
        lengths = src.ne(self.pad_id).sum(1)
        limits = self.max_lengths(lengths)
        pieces = self.model.source_pieces[src.numpy()]
        # CTranslate2 appends the eos itself (add_source_eos), so each row's own is left out.
        batch = [row[:n - 1].tolist() for row, n in zip(pieces, lengths.tolist())]
        longest = int(limits.max()) + 1
        results = self.model.translator.translate_batch(
            batch, beam_size=self.beam_size, patience=1,
            length_penalty=self.lenpen if self.beam_size > 1 else 0.0,  # greedy: summed log-probs
            max_decoding_length=longest, min_decoding_length=min(self.min_length, longest),
            max_input_length=0, return_scores=True, return_end_token=True,
            suppress_sequences=[[self.model.pad_piece]])
        hypotheses = [result.hypotheses[0] for result in results]
        scores = torch.tensor([result.scores[0] for result in results], dtype=torch.float32)
        return self._output_ids(hypotheses, limits), scores

    def _output_ids(self, hypotheses: List[List[str]], limits: torch.Tensor) -> torch.Tensor:
        """(B,T) ids of the output pieces, pad-filled: the final eos left out, each row cut to
        its own limit."""
        lengths = torch.tensor([len(pieces) for pieces in hypotheses])
        flat = self.model.piece_ids(list(itertools.chain.from_iterable(hypotheses)))
        width = int(lengths.max())
        filled = torch.arange(width)[None, :] < lengths[:, None]
        tokens = torch.full((len(hypotheses), width), self.pad_id, dtype=torch.long)
        tokens[filled] = flat
        last = tokens.gather(1, (lengths - 1).clamp(min=0)[:, None]).squeeze(1)
        lengths = torch.minimum(lengths - (last.eq(self.eos_id) & lengths.gt(0)).long(), limits)
        tokens.masked_fill_(torch.arange(width)[None, :] >= lengths[:, None], self.pad_id)
        return tokens[:, :int(lengths.max())]

    def extra_repr(self) -> str:
        return (f"beam_size={self.beam_size}, lenpen={self.lenpen}, "
                f"max_length_a={self.max_length_a}, max_length_b={self.max_length_b}, "
                f"min_length={self.min_length}, compute_type={self.model.compute_type}")


