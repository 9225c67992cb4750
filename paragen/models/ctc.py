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


def min_slots(labels: torch.Tensor, label_lengths: torch.Tensor) -> torch.Tensor:
    """(B,) the fewest slots a CTC path of each reference needs: one per label, plus one
    blank between each pair of equal neighbours (which would otherwise merge)."""
    real = torch.arange(labels.size(1), device=labels.device)[None, :] < label_lengths[:, None]
    repeats = (labels[:, 1:].eq(labels[:, :-1]) & real[:, 1:]).sum(-1)
    return label_lengths + repeats


# A Python loop over the slots: compiling it would recompile for every slot count.
@torch.compiler.disable
def best_alignment(log_probs: torch.Tensor, slot_lengths: torch.Tensor, labels: torch.Tensor,
                   label_lengths: torch.Tensor, blank: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The most probable CTC path of each reference, as one token per slot.

    log_probs (B,T,V) (or unnormalised logits: the best path is the same), slot_lengths (B,),
    labels (B,L) padded with any token id, label_lengths (B,).
    Returns (aligned (B,T): a label or `blank` per slot, `blank` past a row's slots;
    feasible (B,): False where the reference cannot fit the slots, whose path is meaningless).

    The lattice has U = 2L+1 states (blank, y1, blank, y2, ..., blank). The loop runs over the
    T slots only; every step is one batched max over the B×U states, and the backtrace is one
    gather per slot. Rows with fewer slots stand still after their last one.
    """
    batch, slots, _ = log_probs.shape
    states = 2 * labels.size(1) + 1
    extended = labels.new_full((batch, states), blank)
    extended[:, 1::2] = labels
    emit = log_probs.gather(2, extended[:, None, :].expand(batch, slots, states))
    # A label state may also be entered from two states back (skipping the blank between two
    # different labels); blanks and repeated labels may not.
    skip_ok = torch.zeros(batch, states, dtype=torch.bool, device=labels.device)
    skip_ok[:, 2:] = extended[:, 2:].ne(blank) & extended[:, 2:].ne(extended[:, :-2])
    state_ids = torch.arange(states, device=labels.device)
    valid_state = state_ids[None, :] < (2 * label_lengths + 1)[:, None]

    neg_inf = torch.tensor(-torch.inf, device=log_probs.device)
    alpha = torch.where(state_ids[None, :] < 2, emit[:, 0], neg_inf)
    alpha = alpha.masked_fill(~valid_state, -torch.inf)
    moves = torch.zeros(batch, slots, states, dtype=torch.long, device=labels.device)
    pad_one = torch.full((batch, 1), -torch.inf, device=log_probs.device)
    pad_two = torch.full((batch, 2), -torch.inf, device=log_probs.device)
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
