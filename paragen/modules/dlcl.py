"""Dynamic linear combination of layers (DLCL; Wang et al. 2019, "Learning Deep Transformer
Models for Machine Translation"), the connection ParaGen's WMT21 system used to train deep
encoders and decoders stably.

Plain stacks feed layer l+1 with layer l's output only. With DLCL each layer's output is
layer-normalised and kept, and layer l+1 reads a learned weighted sum of all kept outputs
(the embeddings included); the stack's output is one more such sum. The weights form a
lower-triangular matrix initialised to the running average, so a fresh model starts as an
average of its layers and learns how much each earlier layer matters. The combination is per
position, so causal decoding with a KV cache works unchanged.
"""
from __future__ import annotations

from typing import Callable, List, Optional

import torch
from torch import nn

LayerStep = Callable[[int, torch.Tensor], torch.Tensor]  # (layer index, input) -> output


class LayerCombination(nn.Module):
    def __init__(self, num_layers: int, d_model: int):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(num_layers + 1))
        # row r combines the r+1 outputs kept before layer r (row num_layers: the stack output)
        rows = torch.arange(num_layers + 1)
        allowed = rows[None, :] <= rows[:, None]
        self.register_buffer("allowed", allowed, persistent=False)
        self.weights = nn.Parameter(allowed.float() / (rows[:, None] + 1).float())

    def _combine(self, history: List[torch.Tensor]) -> torch.Tensor:
        row = self.weights[len(history) - 1, :len(history)]
        return torch.einsum("k,k...->...", row, torch.stack(history))

    def forward(self, x: torch.Tensor, num_layers: int, step: LayerStep) -> torch.Tensor:
        history = [self.norms[0](x)]
        for i in range(num_layers):
            history.append(self.norms[i + 1](step(i, self._combine(history))))
        return self._combine(history)


def run_layers(x: torch.Tensor, num_layers: int, step: LayerStep,
               combination: Optional[LayerCombination] = None) -> torch.Tensor:
    """`step` over every layer: chained (x → layer 0 → layer 1 ...) or through DLCL."""
    if combination is not None:
        return combination(x, num_layers, step)
    for i in range(num_layers):
        x = step(i, x)
    return x
