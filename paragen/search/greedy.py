"""Greedy search: the most probable next token at every step, one hypothesis per sentence."""
from __future__ import annotations

from paragen.registry import register_search
from paragen.search.base import IncrementalSearch


@register_search
class GreedySearch(IncrementalSearch):
    """Argmax decoding; the loop, length rules and early exit live in `IncrementalSearch`."""

    def __init__(self, maxlen_a: float = 1.2, maxlen_b: int = 10, min_len: int = 0):
        super().__init__(maxlen_a, maxlen_b, min_len)

    def next_tokens(self, decoder, last, memory, memory_padding, cache, step, row_max_len,
                    min_max_len, eos_id, pad_id):
        lprob, tokens = self.best_next_tokens(decoder, last, memory, memory_padding, cache, 1,
                                              step, row_max_len, min_max_len, eos_id, pad_id)
        return tokens[:, 0], lprob[:, 0]
