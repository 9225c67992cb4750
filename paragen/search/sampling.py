"""Ancestral sampling with temperature, top-k and nucleus (top-p) truncation.

Draws use `torch.multinomial` and therefore the global torch RNG: `torch.manual_seed` makes a
run reproducible. The returned score is the *model's* log-probability of the sampled sequence
(temperature 1, before truncation), so samples can be reranked on the same scale as greedy.
"""
from __future__ import annotations

import torch

from paragen.registry import register_search
from paragen.search.base import IncrementalSearch


@register_search
class SamplingSearch(IncrementalSearch):
    def __init__(self, top_k: int = 0, top_p: float = 1.0, temperature: float = 1.0,
                 max_length_a: float = 1.2, max_length_b: int = 10, min_length: int = 0):
        super().__init__(max_length_a, max_length_b, min_length)
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 disables it), got {top_k}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if temperature <= 0.0:
            raise ValueError(f"temperature must be > 0 (use GreedySearch for argmax), "
                             f"got {temperature}")
        self.top_k, self.top_p, self.temperature = top_k, float(top_p), float(temperature)

    def choose(self, lprobs: torch.Tensor) -> torch.Tensor:
        # Dividing log-probs by T equals softmax(logits / T) up to a per-row constant, and keeps
        # the -inf of the length rules. It also yields a copy: `lprobs` must stay intact, since
        # the caller scores the drawn token with it.
        logits = lprobs / self.temperature
        if 0 < self.top_k < logits.size(1):
            kth = logits.topk(self.top_k, dim=-1).values[:, -1:]
            logits.masked_fill_(logits < kth, -torch.inf)
        if self.top_p < 1.0:
            logits = self._nucleus(logits)
        return torch.multinomial(torch.softmax(logits, dim=-1), 1).squeeze(1)

    def _nucleus(self, logits: torch.Tensor) -> torch.Tensor:
        """Keep the smallest most-probable set whose mass reaches `top_p` (always >= 1 token)."""
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # mass of the strictly more probable tokens
        drop_sorted = mass_before >= self.top_p
        return logits.masked_fill(drop_sorted.scatter(1, order, drop_sorted), -torch.inf)

    def extra_repr(self) -> str:
        return (f"top_k={self.top_k}, top_p={self.top_p}, temperature={self.temperature}, "
                + super().extra_repr())
