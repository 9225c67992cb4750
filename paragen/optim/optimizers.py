"""Registered torch optimizers. Configs name the class and its hyper-parameters:

    optimizer: {class: AdamW, lr: 5e-4, betas: [0.9, 0.98], weight_decay: 0.01}

`lr` is the peak rate; the lr scheduler scales it each step.
"""
from __future__ import annotations

import fnmatch
from typing import Dict, Iterable, List, Sequence

import torch
from torch import nn

from paragen.errors import ConfigError
from paragen.registry import register_optimizer


def parameter_groups(model: nn.Module) -> List[Dict]:
    """Biases and norm weights (1-D tensors) get no weight decay, as in BERT/fairseq; the
    other group takes the optimizer's own `weight_decay` (its config value or its default)."""
    decay, no_decay = [], []
    for param in model.parameters():  # parameters() de-duplicates tied weights
        if param.requires_grad:
            (no_decay if param.dim() < 2 else decay).append(param)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def freeze_parameters(model: nn.Module, patterns: Sequence[str],
                      config_path: str = "task.trainer.freeze") -> List[str]:
    """Keep the parameters whose names match any glob pattern (`encoder.*`) at their
    values: no gradient, so the optimizer never sees them. Returns the frozen names.

    Why: a model that must keep a module identical to another model's (a speculative
    drafter reusing its verifier's encoder) or a fine-tuning that keeps pre-trained layers.
    Tied weights are listed under the first name that holds them (`parameters()` order).
    A pattern that matches nothing is a typo, refused in one line."""
    names = [name for name, _ in model.named_parameters()]
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            sample = ", ".join(names[:4])
            raise ConfigError(f"{config_path}: {pattern!r} matches no parameter name (they "
                              f"look like {sample}, ...)")
    frozen = []
    for name, param in model.named_parameters():
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            param.requires_grad_(False)
            frozen.append(name)
    return frozen


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
