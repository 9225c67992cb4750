"""Losses over one prediction per sentence: cross-entropy over labels, squared error on values.

The trainer weights micro-batches by `ntokens`; for these tasks a batch's `ntokens` is its
number of sentences, so the loss is a mean per sentence and accumulating batches equals one
large batch. `loss` and `nll_loss` are logged as sums, as the token-level criteria do.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import nn

from paragen.criteria.cross_entropy import label_smoothed_nll
from paragen.registry import register_criterion


def sentence_outputs(model: nn.Module, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's (B, outputs) logits or values for a batch (segment ids when it has them)."""
    return model(batch["src"], batch.get("segments"))["logits"]


@register_criterion
class ClassificationCrossEntropy(nn.Module):
    """Cross-entropy of the reference label, optionally label-smoothed (`epsilon`)."""

    def __init__(self, epsilon: float = 0.0):
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
        self.epsilon = epsilon

    def logits(self, model: nn.Module, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        """(N, classes) scores, one row per `batch["target"]` entry."""
        return sentence_outputs(model, batch)

    def forward(self, model: nn.Module, batch: Dict[str, torch.Tensor]
                ) -> Tuple[torch.Tensor, Dict[str, float]]:
        logits = self.logits(model, batch)
        loss_sum, nll_sum = label_smoothed_nll(logits, batch["target"], self.epsilon)
        count = int(batch["ntokens"])
        return loss_sum / count, {"loss": loss_sum.item(), "nll_loss": nll_sum.item(),
                                  "ntokens": count}


@register_criterion
class MeanSquaredError(nn.Module):
    """Squared error of a single predicted value per sentence (STS-B style regression)."""

    def forward(self, model: nn.Module, batch: Dict[str, torch.Tensor]
                ) -> Tuple[torch.Tensor, Dict[str, float]]:
        values = sentence_outputs(model, batch).float().squeeze(-1)
        loss_sum = (values - batch["target"]).pow(2).sum()
        count = int(batch["ntokens"])
        return loss_sum / count, {"loss": loss_sum.item(), "nll_loss": loss_sum.item(),
                                  "ntokens": count}
