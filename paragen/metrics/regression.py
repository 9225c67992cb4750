"""Correlation metrics for real-valued predictions (STS-B): Pearson and Spearman, in torch.

Scores are ×100, like the label metrics. A constant side (every prediction equal, as an
untrained model may give) has no defined correlation; it is scored 0 rather than NaN, so that
checkpoint selection (`assess_by: valid.pearson`) keeps comparing numbers.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch

from paragen.metrics.classification import as_pairs
from paragen.metrics.text import Metric
from paragen.registry import register_metric


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson's r of two 1-D float64 tensors; 0 when either is constant."""
    x, y = x - x.mean(), y - y.mean()
    spread = x.norm() * y.norm()
    return 0.0 if spread == 0 else (x @ y / spread).item()


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks, ties sharing the mean of their ranks (as scipy's `rankdata`)."""
    ordered, order = values.sort(stable=True)
    _, group, counts = torch.unique_consecutive(ordered, return_inverse=True,
                                                return_counts=True)
    last = counts.cumsum(0).double()  # the last rank of each group of equal values
    ranks = torch.empty_like(values, dtype=torch.float64)
    ranks[order] = (last - (counts - 1) / 2.0)[group]
    return ranks


@register_metric
class Pearson(Metric):
    name = "pearson"

    def compute(self, hypotheses: Sequence, references: Sequence) -> Tuple[float, str]:
        hyp, ref = as_pairs(hypotheses, references, torch.float64)
        return 100.0 * pearson(hyp, ref), f"pearson|n:{ref.numel()}"


@register_metric
class Spearman(Metric):
    """Pearson's r of the ranks (ties averaged)."""

    name = "spearman"

    def compute(self, hypotheses: Sequence, references: Sequence) -> Tuple[float, str]:
        hyp, ref = as_pairs(hypotheses, references, torch.float64)
        return 100.0 * pearson(average_ranks(hyp), average_ranks(ref)), \
            f"spearman|n:{ref.numel()}"
