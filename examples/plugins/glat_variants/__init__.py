"""A plug-in library: two GLAT variants, registered without touching paragen.

    paragen train --config examples/plugins/soft_copy_glat.yaml --lib examples/plugins/glat_variants

`SoftCopyGLAT` fills the decoder slots with a soft copy of the source (each slot attends
over the source embeddings by distance, Wei et al. 2019) instead of GLAT's hard uniform copy.
`CosineGlancing` anneals the glancing ratio along a cosine instead of a straight line, so
training keeps showing many reference tokens for longer. docs/tutorials/04-your-own-model.md
walks through this file.
"""
from __future__ import annotations

import math
from typing import Any, Dict

import torch

from paragen.criteria import GlancingCrossEntropy
from paragen.models import GLAT
from paragen.registry import register_criterion, register_model


@register_model
class SoftCopyGLAT(GLAT):
    """GLAT whose slot j reads a softmax-weighted mix of the source embeddings, the weights
    falling off with the distance between j and its position scaled onto the source."""

    def __init__(self, encoder: Dict[str, Any], decoder: Dict[str, Any],
                 copy_temperature: float = 1.0, **options: Any):
        super().__init__(encoder, decoder, **options)
        self.copy_temperature = copy_temperature

    def initial_decoder_input(self, src: torch.Tensor, target_padding: torch.Tensor
                              ) -> torch.Tensor:
        src_len = src.ne(self.pad_id).sum(-1, keepdim=True).float()  # (B,1)
        tgt_len = (~target_padding).sum(-1, keepdim=True).float()
        slots = torch.arange(target_padding.size(1), device=src.device).float()
        # Where slot j falls on the source, and every source position's distance to it.
        centre = slots[None, :] * (src_len - 1).clamp_min(0) / (tgt_len - 1).clamp_min(1)
        positions = torch.arange(src.size(1), device=src.device).float()
        distance = (positions[None, None, :] - centre[:, :, None]).abs()  # (B,T,S)
        scores = (-distance / self.copy_temperature).masked_fill(
            src.eq(self.pad_id)[:, None, :], float("-inf"))
        return torch.softmax(scores, dim=-1) @ self.embed_target_tokens(src)


@register_criterion
class CosineGlancing(GlancingCrossEntropy):
    """GLAT's loss (same keys) with the glancing ratio annealed along a half cosine."""

    @property
    def glance_ratio(self) -> float:
        span = self.anneal_steps or self.total_steps
        progress = min(1.0, self.step / span) if span else 0.0
        weight = 0.5 * (1 + math.cos(math.pi * progress))  # 1 → 0
        return self.glance_end + (self.glance_start - self.glance_end) * weight
