"""Stateless schedules of the step number, so resuming only needs the step count.

Every schedule warms up linearly from `warmup_init_lr` (an absolute lr, default 0 would make the
first update a no-op — ParaGen's did — so the first step already uses a non-zero rate).

Schedules that decay to an end point (Polynomial, Cosine) take `total_steps: auto` to end where
training ends: the trainer passes its planned number of updates — max_steps, max_epochs × updates
per epoch, or, under max_minutes, the updates the time left allows at the pace so far. Decaying
to zero exactly at a fixed compute budget is what "budgeted training" found best (Li et al.,
ICLR 2020), and a wall-clock budget has no step count to write in the config.
"""
from __future__ import annotations

import math
from typing import Literal, Optional, Union

import torch

from paragen.registry import register_lr_scheduler


class LRScheduler:
    needs_plan = False  # True: the schedule needs the trainer's planned number of updates

    def __init__(self, warmup_steps: int = 0, warmup_init_lr: float = 1e-7):
        self.warmup_steps, self.warmup_init_lr = warmup_steps, warmup_init_lr

    def lr(self, step: int, peak_lr: float, planned_steps: Optional[int] = None) -> float:
        """The lr for update number `step` (1-based); `planned_steps`: the trainer's plan."""
        if step <= self.warmup_steps:
            return self.warmup_init_lr + (peak_lr - self.warmup_init_lr) * step / self.warmup_steps
        return peak_lr * self.decay(step)

    def decay(self, step: int) -> float:
        raise NotImplementedError

    def apply(self, optimizer: torch.optim.Optimizer, step: int,
              planned_steps: Optional[int] = None) -> float:
        for group in optimizer.param_groups:
            group.setdefault("peak_lr", group["lr"])
            group["lr"] = self.lr(step, group["peak_lr"], planned_steps)
        return optimizer.param_groups[0]["lr"]


class DecayToEnd(LRScheduler):
    """A schedule over `total_steps` updates, a number or `auto` (the trainer's plan)."""

    def __init__(self, total_steps: Union[int, Literal["auto"]], warmup_steps: int = 0,
                 warmup_init_lr: float = 1e-7):
        super().__init__(warmup_steps, warmup_init_lr)
        self.total_steps = total_steps

    @property
    def needs_plan(self) -> bool:
        return self.total_steps == "auto"

    def lr(self, step: int, peak_lr: float, planned_steps: Optional[int] = None) -> float:
        if step <= self.warmup_steps:
            return super().lr(step, peak_lr)
        total = planned_steps if self.needs_plan else self.total_steps
        # None: a time budget before its first update, whose pace is not measured yet
        progress = 0.0 if total is None else \
            min(1.0, (step - self.warmup_steps) / max(total - self.warmup_steps, 1))
        return self.at(progress, peak_lr)

    def at(self, progress: float, peak_lr: float) -> float:
        """The lr `progress` (0 → 1) of the way from the end of warm-up to `total_steps`."""
        raise NotImplementedError


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
class Polynomial(DecayToEnd):
    """Decays from peak to `end_lr` over `total_steps` with exponent `power` (1 = linear)."""

    def __init__(self, total_steps: Union[int, Literal["auto"]], warmup_steps: int = 0,
                 warmup_init_lr: float = 1e-7, end_lr: float = 0.0, power: float = 1.0):
        super().__init__(total_steps, warmup_steps, warmup_init_lr)
        self.end_lr, self.power = end_lr, power

    def at(self, progress: float, peak_lr: float) -> float:
        return self.end_lr + (peak_lr - self.end_lr) * (1.0 - progress) ** self.power


@register_lr_scheduler
class Cosine(DecayToEnd):
    """Half-cosine from peak to `min_lr` over `total_steps` (Loshchilov & Hutter 2017)."""

    def __init__(self, total_steps: Union[int, Literal["auto"]], warmup_steps: int = 0,
                 warmup_init_lr: float = 1e-7, min_lr: float = 0.0):
        super().__init__(total_steps, warmup_steps, warmup_init_lr)
        self.min_lr = min_lr

    def at(self, progress: float, peak_lr: float) -> float:
        return self.min_lr + (peak_lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
