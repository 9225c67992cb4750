"""Cross-entropy over the masked positions of a masked-LM batch (BERT's pre-training loss).

The batch's `ntokens` is its number of masked positions, so the trainer's weighting makes the
loss a mean per masked token across micro-batches, as the translation loss is per target token.
It is the classification loss with one "sentence" per masked position and the vocabulary as
its classes.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from paragen.criteria.sentence import ClassificationCrossEntropy
from paragen.registry import register_criterion


@register_criterion
class MaskedLMCrossEntropy(ClassificationCrossEntropy):
    """NLL of the original token at every masked position, optionally label-smoothed."""

    def logits(self, model: nn.Module, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return model(batch["src"], batch["masked"])["logits"]
