"""Cross-entropy over the masked positions of a masked-LM batch (BERT's pre-training loss).

The batch's `ntokens` is its number of masked positions, so the trainer's weighting makes the
loss a mean per masked token across micro-batches, as the translation loss is per target token.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import nn

from paragen.criteria.cross_entropy import label_smoothed_nll
from paragen.registry import register_criterion


@register_criterion
class MaskedLMCrossEntropy(nn.Module):
    """NLL of the original token at every masked position, optionally label-smoothed."""

    def __init__(self, epsilon: float = 0.0):
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
        self.epsilon = epsilon

    def forward(self, model: nn.Module, batch: Dict[str, torch.Tensor]
                ) -> Tuple[torch.Tensor, Dict[str, float]]:
        logits = model(batch["src"], batch["masked"])["logits"]
        loss_sum, nll_sum = label_smoothed_nll(logits, batch["target"], self.epsilon)
        count = int(batch["ntokens"])
        return loss_sum / count, {"loss": loss_sum.item(), "nll_loss": nll_sum.item(),
                                  "ntokens": count}
