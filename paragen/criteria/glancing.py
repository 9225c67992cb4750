"""NAT losses with glancing: label-smoothed CE on the non-glanced slots + weighted length CE
for a length-predicting model (`GlancingCrossEntropy`; `NATCrossEntropy` without glancing, for
a vanilla NAT and CMLM), or CTC over all slots for a `CTCNAT` (`GlancingCTC`).

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
from paragen.errors import ConfigError
from paragen.criteria.ctc import ctc_loss_from_logits
from paragen.models.nat import CTCNAT, GLAT
from paragen.modules.alignments import min_slots
from paragen.registry import register_criterion


class GlanceSchedule(nn.Module):
    """The annealed glancing ratio every NAT loss shares (0 → 0: no glancing)."""

    def __init__(self, glance_start: float, glance_end: float, anneal_steps: Optional[int],
                 pad_id: int):
        super().__init__()
        self.glance_start, self.glance_end = glance_start, glance_end
        self.anneal_steps = anneal_steps
        self.pad_id, self.step, self.total_steps = pad_id, 0, None

    def set_progress(self, step: int, total_steps: Optional[int]) -> None:
        """Called by the trainer before each update."""
        self.step, self.total_steps = step, total_steps

    @property
    def glance_ratio(self) -> float:
        span = self.anneal_steps or self.total_steps
        progress = min(1.0, self.step / span) if span else 0.0
        return self.glance_start + (self.glance_end - self.glance_start) * progress

    def run_model(self, model: nn.Module, batch: Dict[str, torch.Tensor], needs: type):
        """The model's output (through DDP's wrapper if any) and the bare model, which must be
        a `needs`."""
        bare = getattr(model, "module", model)  # DDP's wrapper holds the model as .module
        if not isinstance(bare, needs):
            raise ConfigError(f"task.criterion: {type(self).__name__} trains a {needs.__name__}"
                              f" (task.model.class), got {type(bare).__name__}")
        ratio = self.glance_ratio if model.training else 0.0
        return model(batch["src"], batch["target"], glance_ratio=ratio), bare


def summed_length_loss(model: GLAT, length_logits: torch.Tensor, src: torch.Tensor,
                       target: torch.Tensor, pad_id: int) -> torch.Tensor:
    """The length classifier's cross-entropy, summed over the batch's sentences."""
    length_target = model.length_to_class(target.ne(pad_id).sum(-1), src.ne(pad_id).sum(-1))
    return F.cross_entropy(length_logits.float(), length_target, reduction="sum")


@register_criterion
class GlancingCrossEntropy(GlanceSchedule):
    def __init__(self, epsilon: float = 0.1, length_loss_weight: float = 0.1,
                 glance_start: float = 0.5, glance_end: float = 0.3,
                 anneal_steps: Optional[int] = None, *, pad_id: int):
        super().__init__(glance_start, glance_end, anneal_steps, pad_id)
        self.epsilon, self.length_loss_weight = epsilon, length_loss_weight

    def forward(self, model: nn.Module, batch: Dict[str, torch.Tensor]
                ) -> Tuple[torch.Tensor, Dict[str, float]]:
        target = batch["target"]
        out, model = self.run_model(model, batch, GLAT)
        learn = target.ne(self.pad_id) & ~out["glance_mask"]
        logits = model.output_logits(out["hidden"][learn])
        token_loss, nll = label_smoothed_nll(logits, target[learn], self.epsilon)
        length_loss = summed_length_loss(model, out["length_logits"], batch["src"], target,
                                         self.pad_id)
        ntokens = int(batch["ntokens"])
        learned = max(int(learn.sum()), 1)
        sentences = target.size(0)
        # Per-token token loss + per-sentence length loss, scaled to the batch's token count so
        # the trainer's token weighting across accumulated batches stays exact.
        loss = token_loss / learned + self.length_loss_weight * length_loss / sentences
        return loss, {"loss": loss.item() * ntokens, "nll_loss": nll.item() / learned * ntokens,
                      "ntokens": ntokens, "length_loss": length_loss.item(),
                      "glanced": ntokens - learned}


@register_criterion
class NATCrossEntropy(GlancingCrossEntropy):
    """`GlancingCrossEntropy` without glancing by default: the loss of a vanilla NAT (every
    slot learned from the copied source alone) and of `CMLM` (which shows tokens itself)."""

    def __init__(self, epsilon: float = 0.1, length_loss_weight: float = 0.1,
                 glance_start: float = 0.0, glance_end: float = 0.0,
                 anneal_steps: Optional[int] = None, *, pad_id: int):
        super().__init__(epsilon, length_loss_weight, glance_start, glance_end, anneal_steps,
                         pad_id=pad_id)


@register_criterion
class GlancingCTC(GlanceSchedule):
    """CTC loss over every slot of a `CTCNAT` (glanced slots included, as in
    Gu & Kong 2021: the alignment makes them easy, and CTC has no per-slot target to skip).
    Computed by `ctc_loss_from_logits`, = F.ctc_loss on log_softmax in fewer passes.

    A reference longer than its slots (more tokens, counting a blank between repeats, than
    upsample × source length) has no CTC path; its loss is zeroed rather than infinite,
    and the number of such sentences is reported as `ctc_infeasible` in the training log.
    """

    def __init__(self, glance_start: float = 0.5, glance_end: float = 0.3,
                 anneal_steps: Optional[int] = None, *, pad_id: int):
        super().__init__(glance_start, glance_end, anneal_steps, pad_id)

    def forward(self, model: nn.Module, batch: Dict[str, torch.Tensor]
                ) -> Tuple[torch.Tensor, Dict[str, float]]:
        target = batch["target"]
        out, model = self.run_model(model, batch, CTCNAT)
        slot_padding, lengths = out["slot_padding"], target.ne(self.pad_id).sum(-1)
        # Logits of the real slots only: padding slots cost no output projection.
        logits = model.output_logits(out["hidden"][~slot_padding])
        nll = ctc_loss_from_logits(logits, slot_padding, target, lengths, blank=self.pad_id)
        slots = (~slot_padding).sum(-1)
        ntokens = int(batch["ntokens"])
        loss = nll.sum() / max(ntokens, 1)
        infeasible = int(min_slots(target, lengths).gt(slots).sum())
        return loss, {"loss": loss.item() * ntokens, "nll_loss": loss.item() * ntokens,
                      "ntokens": ntokens, "ctc_infeasible": infeasible,
                      "glanced": int(out["glance_mask"].sum())}
