"""CTranslate2's searches behind the generator interface (`paragen export --format ctranslate2`);
the rules it follows and where they differ from paragen's searches: `paragen.models.ctranslate2`.
"""
from __future__ import annotations

import itertools
from typing import List, Tuple

import torch
from torch import nn

from paragen.errors import ConfigError
from paragen.models.ctranslate2 import CTranslate2Model
from paragen.registry import register_generator


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


