"""Registered torch optimizers. Configs name the class and its hyper-parameters:

    optimizer: {class: AdamW, lr: 5e-4, betas: [0.9, 0.98], weight_decay: 0.01}

`lr` is the peak rate; the lr scheduler scales it each step.
"""
from __future__ import annotations

from typing import Dict, Iterable, List

import torch
from torch import nn

from paragen.registry import register_optimizer


def parameter_groups(model: nn.Module) -> List[Dict]:
    """Biases and norm weights (1-D tensors) get no weight decay, as in BERT/fairseq; the
    other group takes the optimizer's own `weight_decay` (its config value or its default)."""
    decay, no_decay = [], []
    for param in model.parameters():  # parameters() de-duplicates tied weights
        if param.requires_grad:
            (no_decay if param.dim() < 2 else decay).append(param)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


@register_optimizer
class AdamW(torch.optim.AdamW):
    def __init__(self, lr: float = 5e-4, betas: List[float] = (0.9, 0.98), eps: float = 1e-8,
                 weight_decay: float = 0.01, *, params: Iterable):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


@register_optimizer
class Adam(torch.optim.Adam):
    def __init__(self, lr: float = 5e-4, betas: List[float] = (0.9, 0.98), eps: float = 1e-8,
                 weight_decay: float = 0.0, *, params: Iterable):
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)


@register_optimizer
class SGD(torch.optim.SGD):
    def __init__(self, lr: float = 0.1, momentum: float = 0.0, weight_decay: float = 0.0, *,
                 params: Iterable):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
