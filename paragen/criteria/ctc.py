"""CTC loss for NAT decoders that emit more slots than target tokens (Libovický & Helcl 2018).

A CTC decoder gets `upsample` × source length slots; each slot emits a token or the blank,
and the output is the slot sequence with consecutive repeats merged and blanks removed. No
target length has to be predicted, and the loss sums over every way the reference can be
spread over the slots.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from paragen.modules.alignments import min_slots


class _CTCFromLogits(torch.autograd.Function):
    """CTC negative log-likelihood per sentence, straight from the (N,V) logits of its slots.

    Autograd's log_softmax → ctc_loss chain makes several passes over the (slots × vocabulary)
    matrix, the largest tensor of a CTC step. Here the only full passes are one softmax in
    the forward and its in-place reuse as the gradient buffer in the backward. The CTC
    recursion itself (`F.ctc_loss`) runs on each sentence's own columns only: class 0 is the
    blank, class j its j-th label (a repeated label shares its neighbour's class). Its slot
    occupancies γ (the posterior share of each column at each slot) give the gradient
    d nll / d logits = softmax − Σ_j γ_j · onehot(token of column j).

    γ comes from F.ctc_loss's own gradient, which is taken w.r.t. the logits of a softmax
    (it returns exp(lp) − γ, as for a log_softmax input); `test_fused_ctc_loss_matches_
    autograd` checks the result against autograd through the full-vocabulary loss.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, slot_padding: torch.Tensor, labels: torch.Tensor,
                label_lengths: torch.Tensor, blank: int):
        logits = logits.float()  # fp32 even under autocast
        probs = torch.softmax(logits, dim=-1)
        lse = logits.amax(dim=-1) - probs.amax(dim=-1).log()  # max(p) ≥ 1/V: well conditioned
        real = ~slot_padding
        rows = real.nonzero()[:, 0]  # the sentence of each real slot
        classes = torch.cat([labels.new_full((labels.size(0), 1), blank), labels], dim=1)
        slot_classes = classes[rows]
        columns = logits.gather(1, slot_classes) - lse[:, None]
        dense = columns.new_zeros(*slot_padding.shape, classes.size(1))
        dense[real] = columns
        dense.requires_grad_()
        # Label j is class j, except that a label equal to its left neighbour takes that
        # neighbour's class: CTC needs a blank between repeats, and only between repeats.
        position = torch.arange(1, classes.size(1), device=labels.device).expand(len(labels), -1)
        starts_run = torch.ones_like(labels, dtype=torch.bool)
        starts_run[:, 1:] = labels[:, 1:].ne(labels[:, :-1])
        targets = torch.where(starts_run, position, 0).cummax(dim=1).values
        slots = real.sum(-1)
        with torch.enable_grad():
            nll = F.ctc_loss(dense.transpose(0, 1), targets, slots, label_lengths, blank=0,
                             reduction="none", zero_infinity=True)
            grad_columns, = torch.autograd.grad(nll.sum(), dense)
        occupancy = columns.exp() - grad_columns[real]
        # zero_infinity: a reference longer than its slots gets loss 0 and no gradient
        feasible = (min_slots(labels, label_lengths) <= slots).to(probs.dtype)
        ctx.save_for_backward(probs, occupancy, slot_classes, rows, feasible)
        return nll.detach()

    @staticmethod
    def backward(ctx, grad_nll: torch.Tensor):
        grad, occupancy, slot_classes, rows, feasible = ctx.saved_tensors  # grad = the softmax
        weight = (grad_nll * feasible)[rows].unsqueeze(-1)
        grad.mul_(weight).scatter_add_(1, slot_classes, occupancy.mul_(-weight))
        return grad, None, None, None, None


def ctc_loss_from_logits(logits: torch.Tensor, slot_padding: torch.Tensor, labels: torch.Tensor,
                         label_lengths: torch.Tensor, blank: int) -> torch.Tensor:
    """(B,) CTC NLL = F.ctc_loss(log_softmax(...), zero_infinity=True), in fewer passes.

    logits (N,V) for the N real slots, in row-major order of `~slot_padding` (B,T); labels
    (B,L) padded with any id, label_lengths (B,).
    """
    return _CTCFromLogits.apply(logits, slot_padding, labels, label_lengths, blank)
