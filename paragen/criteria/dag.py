"""The loss of `DATransformer`: −log P(reference | source) summed over every path of the DAG.

`paragen.modules.dag.dag_log_likelihood` sums over all ways of placing the reference's M
tokens on M increasing vertices (first and last fixed), a log-space dynamic program batched
over sentences. A reference longer than its sentence's vertices has no path; its loss is
zeroed rather than infinite, and the count of such sentences is logged as `dag_infeasible`
(raise `upsample` if it is not 0). Glancing, on by default as in the DA-Transformer recipe,
shows reference tokens along the model's best path (`DATransformer.align`).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import nn

from paragen.criteria.glancing import GlanceSchedule
from paragen.models.nat import DATransformer
from paragen.modules.dag import dag_log_likelihood
from paragen.registry import register_criterion


@register_criterion
class DAGLoss(GlanceSchedule):
    def __init__(self, glance_start: float = 0.5, glance_end: float = 0.1,
                 anneal_steps: Optional[int] = None, *, pad_id: int):
        super().__init__(glance_start, glance_end, anneal_steps, pad_id)

    def forward(self, model: nn.Module, batch: Dict[str, torch.Tensor]
                ) -> Tuple[torch.Tensor, Dict[str, float]]:
        target = batch["target"]
        out, model = self.run_model(model, batch, DATransformer)
        hidden, vertex_padding = out["hidden"], out["slot_padding"]
        log_likelihood = dag_log_likelihood(
            model.target_log_probs(hidden, target), model.link_log_probs(hidden, vertex_padding),
            (~vertex_padding).sum(-1), target.ne(self.pad_id).sum(-1))
        feasible = log_likelihood.isfinite()
        nll = -torch.where(feasible, log_likelihood, torch.zeros_like(log_likelihood)).sum()
        ntokens = int(batch["ntokens"])
        loss = nll / max(ntokens, 1)
        return loss, {"loss": loss.item() * ntokens, "nll_loss": loss.item() * ntokens,
                      "ntokens": ntokens, "dag_infeasible": int((~feasible).sum()),
                      "glanced": int(out["glance_mask"].sum())}
