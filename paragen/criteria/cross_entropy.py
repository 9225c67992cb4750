"""Label-smoothed cross-entropy over target tokens (Szegedy et al. 2016), padding ignored."""
from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import nn

from paragen.registry import register_criterion


class _SmoothedCrossEntropy(torch.autograd.Function):
    """Loss and NLL from one softmax, whose buffer is then reused in place as the gradient.

    Autograd's log_softmax → gather → mean chain makes about ten passes over the
    (tokens × vocab) matrix, which dominates a CPU training step for small models. Here the
    softmax is the only full pass in the forward: log-sum-exp comes from the row maximum
    (`lse = max(x) - log(max(p))`, well conditioned since max(p) ≥ 1/V) and the NLL from the
    gathered target probability. The gradient of `(1-ε)·NLL + ε·mean(-log p)` w.r.t. the
    logits is `softmax - (1-ε)·onehot(target) - ε/V`.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, epsilon: float):
        logits = logits.float()  # fp32 even under autocast
        probs = torch.softmax(logits, dim=-1)
        lse = logits.amax(dim=-1) - probs.amax(dim=-1).log()
        target_prob = probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        nll = -target_prob.clamp_min(torch.finfo(probs.dtype).tiny).log()
        smooth = lse - logits.mean(dim=-1)
        ctx.save_for_backward(probs, target)
        ctx.epsilon = epsilon
        return ((1.0 - epsilon) * nll + epsilon * smooth).sum(), nll.sum()

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor, grad_nll: torch.Tensor):
        grad, target = ctx.saved_tensors  # the softmax, reused as the gradient buffer
        epsilon = ctx.epsilon
        grad.sub_(epsilon / grad.size(-1))
        grad.scatter_add_(-1, target.unsqueeze(-1),
                          torch.full((target.numel(), 1), epsilon - 1.0, dtype=grad.dtype))
        return grad.mul_(grad_loss), None, None


def label_smoothed_nll(logits: torch.Tensor, target: torch.Tensor, epsilon: float
                       ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Summed smoothed loss and summed NLL for (N,V) logits of N real (non-pad) targets."""
    return _SmoothedCrossEntropy.apply(logits, target, epsilon)


@register_criterion
class LabelSmoothedCrossEntropy(nn.Module):
    """Loss per target token: `(1-ε)·NLL + ε·mean(-log p)` (uniform smoothing)."""

    def __init__(self, epsilon: float = 0.1, *, pad_id: int):
        super().__init__()
        self.epsilon, self.pad_id = epsilon, pad_id

    def forward(self, model: nn.Module, batch: Dict[str, torch.Tensor]
                ) -> Tuple[torch.Tensor, Dict[str, float]]:
        keep = batch["target"].ne(self.pad_id)
        # Logits only where there is a target: padding costs no output projection at all.
        logits = model(batch["src"], batch["prev_tokens"], output_mask=keep)["logits"]
        loss_sum, nll_sum = label_smoothed_nll(logits, batch["target"][keep], self.epsilon)
        ntokens = int(batch["ntokens"])
        return loss_sum / ntokens, {"loss": loss_sum.item(), "nll_loss": nll_sum.item(),
                                    "ntokens": ntokens}
