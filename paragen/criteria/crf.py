"""The loss of `NATCRF`: CRF likelihood of the reference + token cross-entropy + length loss.

As in Sun et al. (2019) and fairseq's `nacrf_transformer`, the CRF's negative
log-likelihood (partition function over each slot's `crf_beam` best tokens, the reference
forced in; `paragen.modules.crf`) is added to the plain NAT loss, whose token term
(`token_loss_weight`, 0.5 there) keeps each slot's own distribution, which the beam is cut
from, well trained. Glancing is off by default and works as for `GLAT`.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import nn

from paragen.criteria.cross_entropy import label_smoothed_nll
from paragen.criteria.glancing import GlanceSchedule, summed_length_loss
from paragen.models.nat import NATCRF
from paragen.modules.crf import crf_nll
from paragen.registry import register_criterion


@register_criterion
class CRFLoss(GlanceSchedule):
    def __init__(self, epsilon: float = 0.1, token_loss_weight: float = 0.5,
                 length_loss_weight: float = 0.1, glance_start: float = 0.0,
                 glance_end: float = 0.0, anneal_steps: Optional[int] = None, *, pad_id: int):
        super().__init__(glance_start, glance_end, anneal_steps, pad_id)
        self.epsilon, self.token_loss_weight = epsilon, token_loss_weight
        self.length_loss_weight = length_loss_weight

    def forward(self, model: nn.Module, batch: Dict[str, torch.Tensor]
                ) -> Tuple[torch.Tensor, Dict[str, float]]:
        target = batch["target"]
        out, model = self.run_model(model, batch, NATCRF)
        real = target.ne(self.pad_id)
        logits = model.output_logits(out["hidden"]).float()
        crf = crf_nll(logits, target, real, model.transitions, model.crf_beam).sum()
        learn = real & ~out["glance_mask"]
        token_loss, nll = label_smoothed_nll(logits[learn], target[learn], self.epsilon)
        length_loss = summed_length_loss(model, out["length_logits"], batch["src"], target,
                                         self.pad_id)
        ntokens, learned = int(batch["ntokens"]), max(int(learn.sum()), 1)
        loss = crf / max(ntokens, 1) + self.token_loss_weight * token_loss / learned \
            + self.length_loss_weight * length_loss / target.size(0)
        return loss, {"loss": loss.item() * ntokens, "nll_loss": nll.item() / learned * ntokens,
                      "crf_loss": crf.item(), "ntokens": ntokens,
                      "length_loss": length_loss.item(), "glanced": ntokens - learned}
