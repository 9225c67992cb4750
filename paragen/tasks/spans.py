"""Tensor arithmetic of extractive QA: context windows, answer targets, the best-span search.

Everything here works on whole splits or batches at once (no loop over questions), so a
split of 100k questions is planned, and a batch of windows decoded, in a few tensor calls.

A model row (one window of one question's context) is laid out as

    position  0     1 .. q      q+1    q+2 .. q+1+w            q+2+w
              bos   question    eos    context tokens          eos
                                       [window_start, window_start + w)

with q the question's length and w the window's, so context token t of the window sits at
row position `t - window_start + q + 2`.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F


def plan_windows(question_lengths: torch.Tensor, context_lengths: torch.Tensor,
                 max_length: int, doc_stride: int
                 ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut each question's context into windows that fit `max_length` with the question.

    Question i gets `room = max_length - q_i - 3` context tokens per window; windows start
    every `min(doc_stride, room)` tokens (BERT's `doc_stride`: the step between window
    starts, so consecutive windows overlap by `room - doc_stride` tokens and none leaves a
    gap) until one reaches the context's end. Returns, per window, (question index, first
    context token, number of context tokens), grouped by question in order.
    """
    room = max_length - question_lengths - 3
    if bool((room < 1).any()):
        raise ValueError(f"a question of {int(question_lengths.max())} tokens leaves no room "
                         f"for context in max_length {max_length}")
    step = room.clamp_max(doc_stride)
    beyond = (context_lengths - room).clamp_min(0)
    counts = 1 + (beyond + step - 1).div(step, rounding_mode="floor")
    question = torch.repeat_interleave(torch.arange(len(counts)), counts)
    first_of_question = counts.cumsum(0) - counts
    rank = torch.arange(len(question)) - first_of_question[question]
    start = rank * step[question]
    length = torch.minimum(room[question], context_lengths[question] - start)
    return question, start, length


def char_to_token_spans(begins: torch.Tensor, ends: torch.Tensor, token_offsets: torch.Tensor,
                        token_counts: torch.Tensor, paragraph: torch.Tensor,
                        char_start: torch.Tensor, char_end: torch.Tensor
                        ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token spans (first, last; indices within the context) covering character spans.

    `begins`/`ends`: the character offsets of every context token, all contexts concatenated
    (context p's tokens start at `token_offsets[p]`); `paragraph[i]` is the context of span i,
    `[char_start[i], char_end[i])` its characters. The first token is the first one ending
    after `char_start`, the last the last one beginning before `char_end`: the smallest
    token span holding every character of the answer. Returns (first, last, exact): `exact`
    is False where the answer does not start and end on token boundaries (a target then
    covers the enclosing pieces, e.g. '1990' inside the piece '1990s').

    One `searchsorted` for all spans: each context's offsets are shifted past the previous
    context's, which keeps the concatenated arrays sorted.
    """
    counts = token_counts.long()
    shift = torch.zeros(len(counts), dtype=torch.long)
    if len(counts) > 1:
        last_end = torch.zeros(len(counts), dtype=torch.long)
        nonempty = counts > 0
        last_end[nonempty] = ends[token_offsets[nonempty] + counts[nonempty] - 1]
        shift[1:] = (last_end + 1).cumsum(0)[:-1]
    owner = torch.repeat_interleave(torch.arange(len(counts)), counts)
    global_begins, global_ends = begins + shift[owner], ends + shift[owner]
    first = torch.searchsorted(global_ends, char_start + shift[paragraph], right=True)
    last = torch.searchsorted(global_begins, char_end + shift[paragraph]) - 1
    low = token_offsets[paragraph]
    high = low + counts[paragraph] - 1
    first = torch.minimum(torch.maximum(first, low), high)
    last = torch.maximum(torch.minimum(last, high), first)
    exact = begins[first].eq(char_start) & ends[last].eq(char_end)
    return first - low, last - low, exact


def window_targets(first: torch.Tensor, last: torch.Tensor, window_question: torch.Tensor,
                   window_start: torch.Tensor, window_length: torch.Tensor,
                   question_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Row positions of each window's answer start and end; (0, 0) = bos for a window that
    does not hold the whole answer, as BERT trains them."""
    first, last = first[window_question], last[window_question]
    inside = (first >= window_start) & (last < window_start + window_length)
    context_at = question_lengths[window_question] + 2
    start = torch.where(inside, first - window_start + context_at, 0)
    end = torch.where(inside, last - window_start + context_at, 0)
    return start, end


def best_spans(start_scores: torch.Tensor, end_scores: torch.Tensor, allowed: torch.Tensor,
               max_answer_length: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The best span of each row: (score, start, end) with start ≤ end < start +
    max_answer_length, both positions `allowed` (the row's context tokens), score =
    `start_scores[start] + end_scores[end]`. (B,S) inputs, (B,) outputs; a row with no
    allowed position scores -inf.

    Only the band of the (S,S) start × end matrix that a span may occupy is scored: a
    (B, S, L) tensor whose [b, s, k] pairs start s with end s + k (one `unfold` of the end
    scores), L = max_answer_length, so the cost is S·L per row, not S².
    """
    length = start_scores.shape[-1]
    band = min(max_answer_length, length)
    start = start_scores.masked_fill(~allowed, -torch.inf)
    end = F.pad(end_scores.masked_fill(~allowed, -torch.inf), (0, band - 1), value=-torch.inf)
    pairs = start.unsqueeze(-1) + end.unfold(-1, band, 1)
    score, flat = pairs.flatten(1).max(-1)
    first = flat.div(band, rounding_mode="floor")
    return score, first, first + flat % band


def best_window(scores: torch.Tensor, window_question: torch.Tensor, num_questions: int
                ) -> torch.Tensor:
    """Per question, the index of its highest-scoring window (the first among equals)."""
    top = torch.full((num_questions,), -torch.inf, dtype=scores.dtype)
    top = top.scatter_reduce(0, window_question, scores, "amax")
    index = torch.arange(len(scores))
    candidates = torch.where(scores.eq(top[window_question]), index, len(scores))
    best = torch.full((num_questions,), len(scores), dtype=torch.long)
    return best.scatter_reduce(0, window_question, candidates, "amin")
