"""Mask-predict decoding (Ghazvininejad et al., 2019), for `CMLM` and any refinable NAT model.

Pass 1 predicts every slot from all-[mask] input. Pass t of T (t = 2..T) re-masks the
floor(L·(T−t+1)/T) least confident of a candidate's L slots, fewer each pass, and predicts
them again given the others; a re-predicted slot takes its new token and score, a kept one keeps both. `length_beam`
candidate lengths (the length classifier's top k) are decoded together, and each sentence
keeps the candidate with the best mean log-probability, as in the paper (5 lengths, 10
iterations for its WMT numbers). With `iterations: 1` this is a single parallel pass.
"""
from __future__ import annotations

import torch
from torch import nn

from paragen.generators.nat import NATGenerator
from paragen.registry import register_generator


@register_generator
class MaskPredictGenerator(NATGenerator):
    refinement_setting = ("iterations", 1)  # passes counted from the first, not refinements

    def __init__(self, iterations: int = 10, length_beam: int = 3, return_scores: bool = False,
                 *, model: nn.Module, bos_id: int, eos_id: int, pad_id: int,
                 config_path: str = "task.generator"):
        if iterations < 1:
            raise ValueError(f"{config_path}.iterations: must be ≥ 1, got {iterations}")
        super().__init__(length_beam=length_beam, refine_steps=iterations - 1,
                         return_scores=return_scores, model=model, bos_id=bos_id,
                         eos_id=eos_id, pad_id=pad_id, config_path=config_path)
        self.iterations = iterations

    def keep_count(self, step: int, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) slots kept in refinement pass `step` (0-based; decoding pass t = step + 2 of
        T): all but floor(L·(T − t + 1)/T), a linearly shrinking number re-masked."""
        remasked = (lengths * (self.iterations - step - 1)) // self.iterations
        return lengths - remasked
