"""Glancing (Qian et al., ACL 2021): a training strategy for any NAT model with an alignment.

A first, gradient-free pass predicts every slot. Some slots, as many as ratio × the number
of mistakes, then get their reference token's embedding as decoder input, and the second
pass (the one the loss sees) learns the rest. Early in training a sentence is mostly shown;
as the model improves it must produce more of it on its own.

Which reference token a slot stands for is the model's `align`: the token itself for a
length-predicting model, the best CTC path for `CTCNAT`, the best DAG path for
`DATransformer` (slots off that path are never shown). The ratio's schedule lives in the
criterion (`paragen.criteria.glancing.GlanceSchedule`).
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn


def glance(model: nn.Module, decoder_input: torch.Tensor, memory: torch.Tensor,
           memory_padding: torch.Tensor, slot_padding: torch.Tensor, target: torch.Tensor,
           ratio: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """The decoder input with glanced slots replaced by their reference embeddings (B,T,D),
    and the glance mask (B,T)."""
    with torch.no_grad():
        hidden = model.decode(decoder_input, memory.detach(), memory_padding, slot_padding)
        prediction, reference, alignable = model.glance_targets(hidden, slot_padding, target)
    mask = glancing_mask(prediction, reference, ~alignable, ratio)
    return torch.where(mask.unsqueeze(-1), model.embed_target_tokens(reference),
                       decoder_input), mask


def glancing_mask(prediction: torch.Tensor, target: torch.Tensor, target_padding: torch.Tensor,
                  ratio: float) -> torch.Tensor:
    """(B,T) bool: floor(ratio × Hamming(prediction, target)) random non-pad slots per row.

    Vectorized: each slot draws a uniform key (padding gets a key above every real one); a
    slot is glanced when its rank within the row is below that row's count.
    """
    mistakes = (prediction.ne(target) & ~target_padding).sum(-1)
    count = torch.floor(mistakes.to(torch.float32) * ratio).long()
    keys = torch.rand(target.shape, device=target.device).masked_fill(target_padding, 2.0)
    ranks = keys.argsort(dim=-1).argsort(dim=-1)
    return ranks < count.unsqueeze(-1)
