"""Alignments of a reference to the slots of a NAT decoder, as the models' glancing needs them.

Glancing (`paragen.models.nat.glancing`) shows some slots their reference token, so it needs
one concrete token per slot. A length-predicting model has that for free; a model with more
slots than target tokens has many ways to spread the reference over them, and glances at the
most probable one under the model:

- CTC (Libovický & Helcl 2018): a slot emits a token or the blank, repeats merge
  (`ctc_best_alignment`, a Viterbi pass over the CTC lattice; Gu & Kong 2021);
- DAG (Huang et al. 2022): a path through the slots visits one slot per token
  (`dag_best_path`, in `paragen.modules.dag`).
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


def lattice_states(labels: torch.Tensor, blank: int) -> torch.Tensor:
    """(B, 2L+1) the token of each CTC lattice state: blank, y1, blank, y2, ..., blank."""
    extended = labels.new_full((labels.size(0), 2 * labels.size(1) + 1), blank)
    extended[:, 1::2] = labels
    return extended


def skips_allowed(extended: torch.Tensor, blank: int) -> torch.Tensor:
    """(B,U) whether each lattice state may also be entered from two states back, skipping
    the blank between two different labels; blanks and repeated labels may not."""
    allowed = torch.zeros_like(extended, dtype=torch.bool)
    allowed[:, 2:] = extended[:, 2:].ne(blank) & extended[:, 2:].ne(extended[:, :-2])
    return allowed


# A Python loop over the slots: compiling it would recompile for every slot count.
@torch.compiler.disable
def ctc_best_alignment(emit: torch.Tensor, slot_lengths: torch.Tensor, labels: torch.Tensor,
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
    # Masks negated once here, not at every slot of the loop below.
    no_skip = ~skips_allowed(extended, blank)
    state_ids = torch.arange(states, device=labels.device)
    invalid_state = state_ids[None, :] >= (2 * label_lengths + 1)[:, None]

    neg_inf = torch.tensor(-torch.inf, device=emit.device)
    alpha = torch.where(state_ids[None, :] < 2, emit[:, 0], neg_inf)
    alpha = alpha.masked_fill(invalid_state, -torch.inf)
    moves = torch.zeros(batch, slots, states, dtype=torch.long, device=labels.device)
    pad_one = torch.full((batch, 1), -torch.inf, device=emit.device)
    pad_two = torch.full((batch, 2), -torch.inf, device=emit.device)
    for t in range(1, slots):
        from_prev = torch.cat([pad_one, alpha[:, :-1]], dim=1)
        from_skip = torch.cat([pad_two, alpha[:, :-2]], dim=1).masked_fill(no_skip, -torch.inf)
        best, move = torch.stack([alpha, from_prev, from_skip], dim=-1).max(-1)
        active = (t < slot_lengths)[:, None]
        alpha = torch.where(active, best + emit[:, t], alpha).masked_fill(invalid_state,
                                                                          -torch.inf)
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


@torch.compiler.disable
def ctc_prefix_ends(emit: torch.Tensor, slot_lengths: torch.Tensor, prefix: torch.Tensor,
                    prefix_lengths: torch.Tensor, blank: int
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Where a CTC path of a *prefix* of the output can end: (scores (B,T): the best score
    of a path of the whole prefix over slots 0..t, for each t, -inf where it does not fit or
    t is past the row's slots; on_label (B,T): whether that path ends on the prefix's last
    label rather than on a blank after it). emit, slot_lengths as `ctc_best_alignment`,
    with the prefix (B,L) and its lengths (B,) ≥ 1 as the labels.

    A speculative CTC drafter continues a prefix its verifier accepted from the slot where
    the prefix most probably ends (`paragen.generators.drafting`), once per rejected draft:
    the loop is kept to four small ops per slot (no backtrace, rows past their slots run on
    and are masked at the end), since at batch 1 their count is the cost.
    """
    batch, slots, states = emit.shape
    extended = lattice_states(prefix, blank)
    state_ids = torch.arange(states, device=emit.device)
    # -inf for states past a row's lattice, and for skips that are not allowed, folded into
    # the scores once instead of masked at every slot
    emit = emit.masked_fill((state_ids[None, :] >= (2 * prefix_lengths + 1)[:, None])[:, None],
                            -torch.inf)
    skip_bias = torch.zeros(batch, states, device=emit.device).masked_fill_(
        ~skips_allowed(extended, blank), -torch.inf)
    # alpha of every slot, two -inf columns in front: the previous state and the one two
    # back are views of the same buffer
    history = torch.full((slots, batch, states + 2), -torch.inf, device=emit.device)
    history[0, :, 2:4] = emit[:, 0, :2]
    for t in range(1, slots):
        before = history[t - 1]
        best = torch.maximum(torch.maximum(before[:, 2:], before[:, 1:-1]),
                             before[:, :-2] + skip_bias)
        torch.add(best, emit[:, t], out=history[t, :, 2:])
    alpha = history[:, :, 2:].transpose(0, 1)  # (B,T,U)
    last_blank = (2 * prefix_lengths)[:, None, None].expand(-1, slots, 1)
    end_blank = alpha.gather(2, last_blank).squeeze(2)
    end_label = alpha.gather(2, last_blank - 1).squeeze(2)
    past_end = torch.arange(slots, device=emit.device)[None, :] >= slot_lengths[:, None]
    scores = torch.maximum(end_label, end_blank).masked_fill(past_end, -torch.inf)
    return scores, end_label > end_blank
