"""A linear-chain CRF over a non-autoregressive decoder's outputs (NAT-CRF; Sun et al. 2019,
"Fast Structured Decoding for Sequence Models").

A NAT decoder scores every position independently, so it cannot tell that "thank thank you"
is worse than "thank you you". A CRF adds a score for each pair of consecutive tokens:

    score(Y) = Σ_t e_t(y_t) + Σ_{t≥1} M(y_{t−1}, y_t)

with e_t the decoder's logits at position t and M a V×V transition matrix. Two problems make
the textbook CRF unusable at vocabulary size V ≈ 30k, and two approximations solve them:

* M would hold V² parameters, so it is low-rank: M(a, b) = E1[a] · E2[b] with E1, E2 ∈ R^{V×r}
  (`LowRankTransitions`). Only the scores between candidate pairs are ever computed.
* The partition function sums over V^T sequences and the forward algorithm costs O(T·V²), so
  each position keeps only a beam of k candidate tokens, its top-k by emission, and the sum
  runs over the k^T sequences of candidates (O(T·k²)). In training the gold token is forced
  into each beam, so the gold sequence is one of the summed sequences and the NLL stays ≥ 0.

Conventions shared by every function: emissions (B,T,V) raw logits; mask (B,T) bool, True at
real positions, left-aligned (each row's real positions are a prefix of it); token ids at
padded positions are ignored. A row with no real position has the empty sequence as its only
sequence: score 0, log partition 0.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn


class LowRankTransitions(nn.Module):
    """The transition scores M(a, b) = E1[a] · E2[b] of a rank-`rank` V×V matrix.

    The V×V matrix is never formed: callers ask for the scores of the token pairs they need,
    which costs r multiply-adds per pair.
    """

    def __init__(self, vocab_size: int, rank: int = 32):
        super().__init__()
        self.E1 = nn.Embedding(vocab_size, rank)
        self.E2 = nn.Embedding(vocab_size, rank)
        # Each product then has variance 1/rank: small next to logits at the start of
        # training, so the CRF begins close to the decoder it sits on.
        for table in (self.E1, self.E2):
            nn.init.normal_(table.weight, std=rank ** -0.5)

    def between(self, prev_tokens: torch.Tensor, next_tokens: torch.Tensor) -> torch.Tensor:
        """prev_tokens (B,T−1,k), next_tokens (B,T−1,k) → (B,T−1,k,k): out[b,t,i,j] is
        M(prev_tokens[b,t,i], next_tokens[b,t,j]), every candidate at one position against
        every candidate at the next, as one batched (k×r)·(r×k) matmul per position."""
        return self.E1(prev_tokens) @ self.E2(next_tokens).transpose(-1, -2)

    def pair(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a (B,N), b (B,N) → (B,N): M(a[i], b[i]) for each given pair."""
        return (self.E1(a) * self.E2(b)).sum(-1)


def _at_real(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """values (B,T,k) with padded positions zeroed. Applied to the few values
    gathered from the emissions, never to the (B,T,V) emissions themselves (a full-vocabulary
    copy costs more than the CRF); masking after the gather also keeps -inf or NaN logits at
    padding out of the result and, through masked_fill's backward, out of the gradient."""
    return values.masked_fill(~mask[..., None], 0.0)


def crf_sequence_score(emissions: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
                       transitions: LowRankTransitions) -> torch.Tensor:
    """(B,) the unnormalised score of the given sequences tokens (B,T).

    Emissions count at real positions only; a transition counts between positions t−1 and t
    when t is real (left alignment makes t−1 real too).
    """
    tokens = tokens.masked_fill(~mask, 0)  # any id at padding, even one outside the vocabulary
    emitted = _at_real(emissions.gather(-1, tokens[..., None]), mask)
    return emitted.sum((1, 2)) + _transition_score(tokens, mask, transitions)


def _transition_score(tokens: torch.Tensor, mask: torch.Tensor,
                      transitions: LowRankTransitions) -> torch.Tensor:
    """(B,) the summed transition scores of the sequences tokens (B,T), valid ids only
    (zero for one-position sequences: their (B,0) moves sum to zero)."""
    moves = transitions.pair(tokens[:, :-1], tokens[:, 1:])
    return moves.masked_fill(~mask[:, 1:], 0.0).sum(-1)


def beam_candidates(emissions: torch.Tensor, mask: torch.Tensor, beam: int,
                    force_tokens: Optional[torch.Tensor] = None
                    ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Each position's k = min(beam, V) candidate tokens: (candidates (B,T,k) long,
    their emissions (B,T,k), zero at padding).

    The candidates are the top-k tokens by emission; with force_tokens (B,T) given, that
    token is made one of them, replacing the k-th best when it is not already in. The
    emissions of the chosen candidates are gathered afterwards, so gradients reach them
    unchanged. One top-k and one gather are the only passes over the vocabulary.
    """
    k = min(beam, emissions.size(-1))
    candidates = emissions.detach().topk(k, dim=-1).indices
    if force_tokens is not None:
        forced = force_tokens.masked_fill(~mask, 0)
        missing = candidates.ne(forced[..., None]).all(-1)
        candidates[..., -1] = torch.where(missing, forced, candidates[..., -1])
    return candidates, _at_real(emissions.gather(-1, candidates), mask)


def crf_lattice(emissions: torch.Tensor, mask: torch.Tensor, transitions: LowRankTransitions,
                beam: int, force_tokens: Optional[torch.Tensor] = None
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The beam lattice the dynamic programs run over: (candidates (B,T,k) long, their
    emissions (B,T,k), moves (B,T−1,k,k) with moves[b,t,i,j] the transition score from
    candidate i at position t to candidate j at t+1).

    No loop and no value-dependent shape, so a traced graph (`paragen export`) can compute it
    and leave the position loop of `viterbi_over_lattice` to Python.
    """
    candidates, cand_emissions = beam_candidates(emissions, mask, beam, force_tokens)
    return candidates, cand_emissions, transitions.between(candidates[:, :-1], candidates[:, 1:])


# The dynamic programs below loop over positions: compiling them would recompile per length.
@torch.compiler.disable
def log_partition_over_lattice(cand_emissions: torch.Tensor, moves: torch.Tensor,
                               mask: torch.Tensor) -> torch.Tensor:
    """(B,) log Σ exp score over every path through a beam lattice (`crf_lattice`).

    The forward algorithm: alpha (B,k) holds, for each candidate at position t, the log-sum
    of the scores of all candidate prefixes ending in it. One step is a batched
    logsumexp over the k previous candidates. A row whose positions have run out keeps its
    alpha, so the final alpha of each row is the one at its own last position.
    Differentiable through the emissions and the moves.
    """
    # unbind once: indexing one position per step would make autograd build a zero gradient
    # of the whole lattice for every step, quadratic in the length
    per_position, per_move, real = cand_emissions.unbind(1), moves.unbind(1), mask.unbind(1)
    alpha = per_position[0]
    for t in range(1, cand_emissions.size(1)):
        step = torch.logsumexp(alpha[:, :, None] + per_move[t - 1], dim=1) + per_position[t]
        alpha = torch.where(real[t][:, None], step, alpha)
    log_z = torch.logsumexp(alpha, dim=-1)
    return log_z.masked_fill(~mask[:, 0], 0.0)


def crf_log_partition(emissions: torch.Tensor, mask: torch.Tensor,
                      transitions: LowRankTransitions, beam: int,
                      force_tokens: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B,) log Σ_Y exp score(Y) over the sequences Y whose every token is one of its
    position's beam candidates (`beam_candidates`; exact when beam ≥ V)."""
    _, cand_emissions, moves = crf_lattice(emissions, mask, transitions, beam, force_tokens)
    return log_partition_over_lattice(cand_emissions, moves, mask)


def crf_nll(emissions: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor,
            transitions: LowRankTransitions, beam: int) -> torch.Tensor:
    """(B,) −log p(tokens) under the beam-approximated CRF: the log partition with the gold
    forced into every beam, less the gold's score. The gold is one of the summed sequences,
    so the result is ≥ 0 up to float error (and exact when beam ≥ V).

    The gold's emissions are read from its lattice column rather than gathered again from
    the (B,T,V) emissions, whose gradient would then be built twice."""
    candidates, cand_emissions, moves = crf_lattice(emissions, mask, transitions, beam,
                                                    force_tokens=tokens)
    log_z = log_partition_over_lattice(cand_emissions, moves, mask)
    tokens = tokens.masked_fill(~mask, 0)
    gold = cand_emissions.masked_fill(candidates.ne(tokens[..., None]), 0.0).sum((1, 2))
    return log_z - gold - _transition_score(tokens, mask, transitions)


@torch.compiler.disable
def viterbi_over_lattice(cand_emissions: torch.Tensor, moves: torch.Tensor, mask: torch.Tensor
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
    """The best path through a beam lattice (`crf_lattice`): (chosen (B,T) long, the index of
    each position's chosen candidate; scores (B,) the path scores, 0 for an empty row).

    Max-product over the beam, remembering each candidate's best predecessor. Past a row's
    length the predecessor of candidate j is candidate j itself, so the backtrace walks
    through the padding unchanged and enters the real positions at the row's best final
    candidate (indices at padding are meaningless).
    """
    batch, length, k = cand_emissions.shape
    stay = torch.arange(k, device=cand_emissions.device).expand(batch, k)
    alpha = cand_emissions[:, 0]
    backpointers = []
    for t in range(1, length):
        best, previous = (alpha[:, :, None] + moves[:, t - 1]).max(dim=1)
        real = mask[:, t, None]
        alpha = torch.where(real, best + cand_emissions[:, t], alpha)
        backpointers.append(torch.where(real, previous, stay))
    scores, index = alpha.max(dim=-1)
    chosen = [index]
    for previous in reversed(backpointers):
        index = previous.gather(1, index[:, None]).squeeze(1)
        chosen.append(index)
    return torch.stack(chosen[::-1], dim=1), scores.masked_fill(~mask[:, 0], 0.0)


def crf_viterbi(emissions: torch.Tensor, mask: torch.Tensor, transitions: LowRankTransitions,
                beam: int, pad_id: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """The best-scoring sequence of each row among its beam candidates' sequences:
    (tokens (B,T) long, `pad_id` past each row's length; scores (B,) their scores)."""
    candidates, cand_emissions, moves = crf_lattice(emissions, mask, transitions, beam)
    chosen, scores = viterbi_over_lattice(cand_emissions, moves, mask)
    tokens = candidates.gather(-1, chosen[..., None]).squeeze(-1)
    return tokens.masked_fill(~mask, pad_id), scores
