"""CTC pieces for NAT decoders that emit more slots than target tokens (Libovický & Helcl 2018).

A CTC decoder gets `upsample × source length` slots; each slot emits a token or the blank,
and the output is the slot sequence with consecutive repeats merged and blanks removed. No
target length has to be predicted, and the loss (`torch.nn.functional.ctc_loss`) sums over
every way the reference can be spread over the slots.

Glancing needs one concrete reference token per slot. `best_alignment` gives the most
probable of those spreadings under the model (a Viterbi pass over the CTC lattice), which is
what GLAT with CTC glances at (Qian et al. 2021; Gu & Kong 2021).
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def min_slots(labels: torch.Tensor, label_lengths: torch.Tensor) -> torch.Tensor:
    """(B,) the fewest slots a CTC path of each reference needs: one per label, plus one
    blank between each pair of equal neighbours (which would otherwise merge)."""
    real = torch.arange(labels.size(1), device=labels.device)[None, :] < label_lengths[:, None]
    repeats = (labels[:, 1:].eq(labels[:, :-1]) & real[:, 1:]).sum(-1)
    return label_lengths + repeats


def lattice_states(labels: torch.Tensor, blank: int) -> torch.Tensor:
    """(B, 2L+1) the token of each CTC lattice state: blank, y1, blank, y2, ..., blank."""
    extended = labels.new_full((labels.size(0), 2 * labels.size(1) + 1), blank)
    extended[:, 1::2] = labels
    return extended


# A Python loop over the slots: compiling it would recompile for every slot count.
@torch.compiler.disable
def best_alignment(emit: torch.Tensor, slot_lengths: torch.Tensor, labels: torch.Tensor,
                   label_lengths: torch.Tensor, blank: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The most probable CTC path of each reference, as one token per slot.

    emit (B,T,2L+1): each slot's score for the token of each lattice state
    (`lattice_states`), as log-probabilities or as raw logits (a slot's softmax normaliser
    shifts every path alike, so the best path is the same); the caller computes only these
    2L+1 columns, not the whole vocabulary. slot_lengths (B,), labels (B,L) padded with any
    token id, label_lengths (B,).
    Returns (aligned (B,T): a label or `blank` per slot, `blank` past a row's slots;
    feasible (B,): False where the reference cannot fit the slots, whose path is meaningless).

    The loop runs over the T slots only; every step is one batched max over the B×U states,
    and the backtrace is one gather per slot. Rows with fewer slots stand still after their
    last one.
    """
    batch, slots, states = emit.shape
    extended = lattice_states(labels, blank)
    # A label state may also be entered from two states back (skipping the blank between two
    # different labels); blanks and repeated labels may not.
    skip_ok = torch.zeros(batch, states, dtype=torch.bool, device=labels.device)
    skip_ok[:, 2:] = extended[:, 2:].ne(blank) & extended[:, 2:].ne(extended[:, :-2])
    state_ids = torch.arange(states, device=labels.device)
    valid_state = state_ids[None, :] < (2 * label_lengths + 1)[:, None]

    neg_inf = torch.tensor(-torch.inf, device=emit.device)
    alpha = torch.where(state_ids[None, :] < 2, emit[:, 0], neg_inf)
    alpha = alpha.masked_fill(~valid_state, -torch.inf)
    moves = torch.zeros(batch, slots, states, dtype=torch.long, device=labels.device)
    pad_one = torch.full((batch, 1), -torch.inf, device=emit.device)
    pad_two = torch.full((batch, 2), -torch.inf, device=emit.device)
    for t in range(1, slots):
        from_prev = torch.cat([pad_one, alpha[:, :-1]], dim=1)
        from_skip = torch.cat([pad_two, alpha[:, :-2]], dim=1).masked_fill(~skip_ok, -torch.inf)
        best, move = torch.stack([alpha, from_prev, from_skip], dim=-1).max(-1)
        active = (t < slot_lengths)[:, None]
        alpha = torch.where(active, best + emit[:, t], alpha).masked_fill(~valid_state, -torch.inf)
        moves[:, t] = torch.where(active, move, 0)

    # A path ends on the last label or on the blank after it.
    last_blank = 2 * label_lengths
    last_label = (last_blank - 1).clamp_min(0)
    end_blank = alpha.gather(1, last_blank[:, None])
    end_label = alpha.gather(1, last_label[:, None])
    state = torch.where(end_label > end_blank, last_label[:, None], last_blank[:, None]).squeeze(1)
    feasible = torch.maximum(end_blank, end_label).squeeze(1).isfinite()
    path = torch.empty(batch, slots, dtype=torch.long, device=labels.device)
    for t in range(slots - 1, 0, -1):
        path[:, t] = state
        state = (state - moves[:, t].gather(1, state[:, None]).squeeze(1)).clamp_min(0)
    path[:, 0] = state
    aligned = extended.gather(1, path)
    past_end = torch.arange(slots, device=labels.device)[None, :] >= slot_lengths[:, None]
    return aligned.masked_fill(past_end, blank), feasible


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
