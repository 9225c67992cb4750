"""Greedy search: the most probable next token at every step, one hypothesis per sentence."""
from __future__ import annotations

import torch

from paragen.registry import register_search
from paragen.search.base import IncrementalSearch


@register_search
class GreedySearch(IncrementalSearch):
    """Argmax decoding; the loop, length rules and early exit live in `IncrementalSearch`."""

    def __init__(self, maxlen_a: float = 1.2, maxlen_b: int = 10, min_len: int = 0):
        super().__init__(maxlen_a, maxlen_b, min_len)

    def choose(self, lprobs: torch.Tensor) -> torch.Tensor:
        return lprobs.argmax(dim=-1)
