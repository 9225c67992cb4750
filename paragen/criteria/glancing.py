"""GLAT's loss: label-smoothed CE on the non-glanced slots + weighted length CE.

The glancing ratio anneals linearly from `glance_start` to `glance_end` over `anneal_steps`
updates (default: the run's total, which the trainer derives from max_steps, or from
max_epochs × batches per epoch, so epoch-only schedules work too). In eval mode (validation
loss) nothing is glanced, so `valid.loss` is the plain NAT loss.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from paragen.criteria.cross_entropy import label_smoothed_nll
from paragen.registry import register_criterion


@register_criterion
class GlancingCrossEntropy(nn.Module):
    def __init__(self, epsilon: float = 0.1, length_loss_weight: float = 0.1,
                 glance_start: float = 0.5, glance_end: float = 0.3,
                 anneal_steps: Optional[int] = None, *, pad_id: int):
        super().__init__()
        self.epsilon, self.length_loss_weight, self.pad_id = epsilon, length_loss_weight, pad_id
        self.glance_start, self.glance_end, self.anneal_steps = glance_start, glance_end, anneal_steps
        self.step, self.total_steps = 0, None

    def set_progress(self, step: int, total_steps: Optional[int]) -> None:
        """Called by the trainer before each update."""
        self.step, self.total_steps = step, total_steps

    @property
    def glance_ratio(self) -> float:
        span = self.anneal_steps or self.total_steps
        progress = min(1.0, self.step / span) if span else 0.0
        return self.glance_start + (self.glance_end - self.glance_start) * progress

    def forward(self, model: nn.Module, batch: Dict[str, torch.Tensor]
                ) -> Tuple[torch.Tensor, Dict[str, float]]:
        target = batch["target"]
        ratio = self.glance_ratio if model.training else 0.0
        out = model(batch["src"], target, glance_ratio=ratio)  # through DDP's wrapper if any
        model = getattr(model, "module", model)
        learn = target.ne(self.pad_id) & ~out["glance_mask"]
        logits = model.output_logits(out["hidden"][learn])
        token_loss, nll = label_smoothed_nll(logits, target[learn], self.epsilon)
        src_lengths = batch["src"].ne(self.pad_id).sum(-1)
        length_target = model.length_to_class(target.ne(self.pad_id).sum(-1), src_lengths)
        length_loss = F.cross_entropy(out["length_logits"].float(), length_target,
                                      reduction="sum")
        ntokens = int(batch["ntokens"])
        learned = max(int(learn.sum()), 1)
        sentences = target.size(0)
        # Per-token token loss + per-sentence length loss, scaled to the batch's token count so
        # the trainer's token weighting across accumulated batches stays exact.
        loss = token_loss / learned + self.length_loss_weight * length_loss / sentences
        return loss, {"loss": loss.item() * ntokens, "nll_loss": nll.item() / learned * ntokens,
                      "ntokens": ntokens, "length_loss": length_loss.item(),
                      "glanced": ntokens - learned}
