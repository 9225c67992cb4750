"""Stateless schedules of the step number, so resuming only needs the step count.

Every schedule warms up linearly from `warmup_init_lr` (an absolute lr, default 0 would make the
first update a no-op — ParaGen's did — so the first step already uses a non-zero rate).
"""
from __future__ import annotations

import math

import torch

from paragen.registry import register_lr_scheduler


class LRScheduler:
    def __init__(self, warmup_steps: int = 0, warmup_init_lr: float = 1e-7):
        self.warmup_steps, self.warmup_init_lr = warmup_steps, warmup_init_lr

    def lr(self, step: int, peak_lr: float) -> float:
        """The lr for update number `step` (1-based)."""
        if step <= self.warmup_steps:
            return self.warmup_init_lr + (peak_lr - self.warmup_init_lr) * step / self.warmup_steps
        return peak_lr * self.decay(step)

    def decay(self, step: int) -> float:
        raise NotImplementedError

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        for group in optimizer.param_groups:
            group.setdefault("peak_lr", group["lr"])
            group["lr"] = self.lr(step, group["peak_lr"])
        return optimizer.param_groups[0]["lr"]


@register_lr_scheduler
class Constant(LRScheduler):
    def decay(self, step: int) -> float:
        return 1.0


@register_lr_scheduler
class InverseSquareRoot(LRScheduler):
    """peak · sqrt(warmup / step) after warmup (Vaswani et al. 2017, fairseq's `inverse_sqrt`)."""

    def __init__(self, warmup_steps: int = 4000, warmup_init_lr: float = 1e-7):
        super().__init__(warmup_steps, warmup_init_lr)

    def decay(self, step: int) -> float:
        return math.sqrt(max(self.warmup_steps, 1) / step)


@register_lr_scheduler
class Polynomial(LRScheduler):
    """Decays from peak to `end_lr` over `total_steps` with exponent `power` (1 = linear)."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, warmup_init_lr: float = 1e-7,
                 end_lr: float = 0.0, power: float = 1.0):
        super().__init__(warmup_steps, warmup_init_lr)
        self.total_steps, self.end_lr, self.power = total_steps, end_lr, power

    def lr(self, step: int, peak_lr: float) -> float:
        if step <= self.warmup_steps:
            return super().lr(step, peak_lr)
        span = max(self.total_steps - self.warmup_steps, 1)
        remaining = max(0.0, 1.0 - (step - self.warmup_steps) / span)
        return self.end_lr + (peak_lr - self.end_lr) * remaining ** self.power


@register_lr_scheduler
class Cosine(LRScheduler):
    """Half-cosine from peak to `min_lr` over `total_steps` (Loshchilov & Hutter 2017)."""

    def __init__(self, total_steps: int, warmup_steps: int = 0, warmup_init_lr: float = 1e-7,
                 min_lr: float = 0.0):
        super().__init__(warmup_steps, warmup_init_lr)
        self.total_steps, self.min_lr = total_steps, min_lr

    def lr(self, step: int, peak_lr: float) -> float:
        if step <= self.warmup_steps:
            return super().lr(step, peak_lr)
        progress = min(1.0, (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1))
        return self.min_lr + (peak_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
