"""An exponential moving average (EMA) of the weights, kept beside the trained ones.

Why: on a small corpus the weights after each update are noisy, and the validation score
jumps by a point from one check to the next (SST-2's dev set is 872 sentences). An average
over the last ~1/(1 - decay) updates is a smoother model, as checkpoint averaging is, but
one the trainer can validate and choose by (fairseq's `--ema-decay`, timm's `ModelEmaV2`).

The decay warms up as in TensorFlow's `ExponentialMovingAverage(num_updates=...)`:
min(decay, (1 + step) / (10 + step)), so the first updates, far from the random start,
are not averaged with it for thousands of steps.
"""
from __future__ import annotations

import contextlib
from typing import Dict, Iterator

import torch
from torch import nn

from paragen.checkpoint import assign_weights, model_state


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.average = {name: tensor.detach().clone()
                        for name, tensor in model_state(model).items()}

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the average toward the weights after update number `step` (counted from 1)."""
        weight = 1.0 - self.decay_at(step)
        for name, tensor in model_state(model).items():
            average = self.average[name]
            if average.is_floating_point():
                average.lerp_(tensor.detach(), weight)
            else:
                average.copy_(tensor)  # counters and integer buffers follow the model

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return self.average

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        for name, tensor in state.items():
            self.average[name.removeprefix("module.")].copy_(tensor)

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[None]:
        """The averaged weights in `model` for the block (validation), then its own again."""
        trained = {name: tensor.detach().clone() for name, tensor in model_state(model).items()}
        assign_weights(model, self.average, "the weight average")
        try:
            yield
        finally:
            assign_weights(model, trained, "the trained weights")
