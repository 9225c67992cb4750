"""Extractive QA loss: the mean of the start and the end position cross-entropies (BERT).

A batch row is one window of a question's context; its targets are the answer's first and
last token positions in the row, or 0 (bos) for both when the answer is not inside the
window. A batch's `ntokens` is its number of windows, so the loss is a mean per window and
accumulating micro-batches equals one large batch. `loss` and `nll_loss` are logged as sums,
as the other criteria do.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from paragen.registry import register_criterion


def span_loss_sum(start_logits: torch.Tensor, end_logits: torch.Tensor,
                  start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """Σ over rows of (CE(start) + CE(end)) / 2, in float32 whatever the logits' type."""
    return (F.cross_entropy(start_logits.float(), start, reduction="sum")
            + F.cross_entropy(end_logits.float(), end, reduction="sum")) / 2


@register_criterion
class SpanCrossEntropy(nn.Module):
    def forward(self, model: nn.Module, batch: Dict[str, torch.Tensor]
                ) -> Tuple[torch.Tensor, Dict[str, float]]:
        outputs = model(batch["src"], batch.get("segments"))
        loss_sum = span_loss_sum(outputs["start_logits"], outputs["end_logits"],
                                 batch["start"], batch["end"])
        count = int(batch["ntokens"])
        return loss_sum / count, {"loss": loss_sum.item(), "nll_loss": loss_sum.item(),
                                  "ntokens": count}
