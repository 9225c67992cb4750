"""Greedy search: the most probable next token at every step, one hypothesis per sentence."""
from __future__ import annotations

import torch

from paragen.registry import register_search
from paragen.search.base import IncrementalSearch


@register_search
class GreedySearch(IncrementalSearch):
    """Argmax decoding; the loop, length rules and early exit live in `IncrementalSearch`."""

    def __init__(self, max_length_a: float = 1.2, max_length_b: int = 10, min_length: int = 0):
        super().__init__(max_length_a, max_length_b, min_length)

    def choose(self, lprobs: torch.Tensor) -> torch.Tensor:
        return lprobs.argmax(dim=-1)
