"""NAT-CRF: the beam forward algorithm, Viterbi and NLL against brute-force enumeration."""
from __future__ import annotations

import itertools
from typing import List, Sequence

import torch
from torch import nn
from torch.func import functional_call

from paragen.modules.crf import (LowRankTransitions, crf_log_partition, crf_nll,
                                  crf_sequence_score, crf_viterbi)

V, T, PAD = 5, 4, 0
LENGTHS = [4, 2, 3, 1]


def setup(seed: int = 0, lengths: Sequence[int] = LENGTHS):
    """Random float64 emissions (B,T,V), a left-aligned mask, gold tokens and transitions
    large enough (std ≈ 1) that ignoring them would be noticed."""
    torch.manual_seed(seed)
    mask = torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]
    emissions = torch.randn(len(lengths), T, V, dtype=torch.float64)
    emissions = emissions.masked_fill(~mask[..., None], float("-inf"))  # must be ignored
    tokens = torch.randint(0, V, (len(lengths), T)).masked_fill(~mask, -100)
    transitions = LowRankTransitions(V, rank=3).double()
    with torch.no_grad():
        for table in (transitions.E1, transitions.E2):
            table.weight.normal_(0, 0.8)
    return emissions, mask, tokens, transitions


def scores_of(emissions: torch.Tensor, mask: torch.Tensor, row: int,
              sequences: List[Sequence[int]], transitions: LowRankTransitions) -> torch.Tensor:
    """crf_sequence_score of each prefix sequence in row `row`, as one batch."""
    n = len(sequences)
    tokens = torch.full((n, T), PAD, dtype=torch.long)
    for i, seq in enumerate(sequences):
        tokens[i, :len(seq)] = torch.tensor(seq, dtype=torch.long)
    return crf_sequence_score(emissions[row].expand(n, T, V), tokens,
                              mask[row].expand(n, T), transitions)


def allowed_tokens(emissions: torch.Tensor, beam: int, gold: int | None) -> List[int]:
    """One position's beam, worked out independently of the implementation: the top-`beam`
    tokens, or the top-(beam−1) plus the gold when the gold is not among them."""
    order = sorted(range(V), key=lambda v: -emissions[v].item())
    if gold is None or gold in order[:beam]:
        return order[:beam]
    return order[:beam - 1] + [gold]


def enumerate_row(emissions, mask, tokens, transitions, row, beam, force):
    """(sequences, their scores) of every sequence of row `row` within its beams."""
    length = int(mask[row].sum())
    choices = [allowed_tokens(emissions[row, t], beam, int(tokens[row, t]) if force else None)
               for t in range(length)]
    sequences = list(itertools.product(*choices))
    return sequences, scores_of(emissions, mask, row, sequences, transitions)


def test_between_and_pair_agree_with_the_full_matrix():
    _, _, _, transitions = setup()
    full = transitions.E1.weight @ transitions.E2.weight.T  # (V,V)
    prev, nxt = torch.randint(0, V, (2, 3, 4)), torch.randint(0, V, (2, 3, 4))
    expected = full[prev[..., :, None], nxt[..., None, :]]
    assert torch.allclose(transitions.between(prev, nxt), expected)
    assert torch.allclose(transitions.pair(prev[:, :, 0], nxt[:, :, 0]),
                          full[prev[:, :, 0], nxt[:, :, 0]])


def test_sequence_score_is_the_sum_of_emissions_and_transitions():
    emissions, mask, tokens, transitions = setup()
    full = transitions.E1.weight @ transitions.E2.weight.T
    score = crf_sequence_score(emissions, tokens, mask, transitions)
    for row, length in enumerate(LENGTHS):
        y = tokens[row, :length].tolist()
        expected = sum(emissions[row, t, y[t]] for t in range(length))
        expected = expected + sum(full[y[t - 1], y[t]] for t in range(1, length))
        assert torch.allclose(score[row], expected)


def test_full_beam_log_partition_is_logsumexp_over_every_sequence():
    emissions, mask, tokens, transitions = setup()
    log_z = crf_log_partition(emissions, mask, transitions, beam=V)
    assert torch.isfinite(log_z).all()
    for row in range(len(LENGTHS)):
        sequences, scores = enumerate_row(emissions, mask, tokens, transitions, row, V, False)
        assert len(sequences) == V ** LENGTHS[row]
        assert torch.allclose(log_z[row], torch.logsumexp(scores, 0))


def test_empty_row_has_only_the_empty_sequence():
    emissions, mask, tokens, transitions = setup(lengths=[0, 2])
    log_z = crf_log_partition(emissions, mask, transitions, beam=V)
    assert log_z[0].item() == 0.0
    assert crf_nll(emissions, tokens, mask, transitions, beam=2)[0].item() == 0.0
    best, score = crf_viterbi(emissions, mask, transitions, beam=V, pad_id=PAD)
    assert best[0].eq(PAD).all() and score[0].item() == 0.0


def test_full_beam_viterbi_is_the_brute_force_argmax():
    for seed in range(3):
        emissions, mask, tokens, transitions = setup(seed)
        best, score = crf_viterbi(emissions, mask, transitions, beam=V, pad_id=PAD)
        assert best[~mask].eq(PAD).all()
        assert torch.allclose(score, crf_sequence_score(emissions, best, mask, transitions))
        for row, length in enumerate(LENGTHS):
            sequences, scores = enumerate_row(emissions, mask, tokens, transitions, row, V,
                                              False)
            assert best[row, :length].tolist() == list(sequences[int(scores.argmax())])
            assert torch.allclose(score[row], scores.max())


def test_narrow_beam_sums_over_the_beams_with_the_gold_forced_in():
    beam = 2
    for seed in range(4):
        emissions, mask, tokens, transitions = setup(seed)
        forced = crf_log_partition(emissions, mask, transitions, beam, force_tokens=tokens)
        free = crf_log_partition(emissions, mask, transitions, beam)
        best, best_score = crf_viterbi(emissions, mask, transitions, beam, pad_id=PAD)
        for row, length in enumerate(LENGTHS):
            sequences, scores = enumerate_row(emissions, mask, tokens, transitions, row, beam,
                                              True)
            assert len(sequences) == beam ** length
            assert torch.allclose(forced[row], torch.logsumexp(scores, 0))
            # Without a gold (the partition for decoding, and Viterbi), the plain top-k beams.
            sequences, scores = enumerate_row(emissions, mask, tokens, transitions, row, beam,
                                              False)
            assert torch.allclose(free[row], torch.logsumexp(scores, 0))
            assert best[row, :length].tolist() == list(sequences[int(scores.argmax())])
            assert torch.allclose(best_score[row], scores.max())
        # Narrower than the full sum, and the gold is inside it: 0 ≤ NLL ≤ full-beam NLL.
        nll = crf_nll(emissions, tokens, mask, transitions, beam)
        full_nll = crf_nll(emissions, tokens, mask, transitions, V)
        assert (nll >= -1e-12).all() and (nll <= full_nll + 1e-12).all()


def test_gold_outside_the_top_k_is_still_counted():
    emissions, mask, tokens, transitions = setup()
    worst = emissions.masked_fill(~mask[..., None], 0).argmin(-1)  # never in a top-2 beam
    log_z = crf_log_partition(emissions, mask, transitions, 2, force_tokens=worst)
    gold = crf_sequence_score(emissions, worst, mask, transitions)
    free = crf_log_partition(emissions, mask, transitions, 2)
    assert (log_z > gold).all()
    assert not torch.allclose(log_z, free)


def test_padding_never_changes_any_result():
    emissions, mask, tokens, transitions = setup()
    other = emissions.masked_fill(~mask[..., None], 7.0)
    other_tokens = tokens.masked_fill(~mask, 3)
    for beam in (2, V):
        assert torch.equal(crf_nll(emissions, tokens, mask, transitions, beam),
                           crf_nll(other, other_tokens, mask, transitions, beam))
        a, b = (crf_viterbi(e, mask, transitions, beam) for e in (emissions, other))
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_non_finite_logits_at_padding_reach_neither_the_loss_nor_its_gradient():
    emissions, mask, tokens, transitions = setup()
    clean = emissions.masked_fill(~mask[..., None], 0.0).requires_grad_()
    poisoned = emissions.masked_fill(~mask[..., None], float("nan"))
    poisoned[..., 0] = poisoned[..., 0].masked_fill(~mask, float("-inf"))
    poisoned.requires_grad_()
    for beam in (2, V):
        losses = [crf_nll(e, tokens, mask, transitions, beam).sum() for e in (clean, poisoned)]
        grads = [torch.autograd.grad(loss, e)[0] for loss, e in zip(losses, (clean, poisoned))]
        assert torch.isfinite(losses[1]) and torch.equal(losses[0], losses[1])
        assert torch.equal(grads[0], grads[1]) and not grads[1][~mask].any()


class NLL(nn.Module):
    """crf_nll as a module call, so gradcheck can swap in the embedding weights."""

    def __init__(self, transitions: LowRankTransitions, tokens, mask, beam: int):
        super().__init__()
        self.transitions, self.tokens, self.mask, self.beam = transitions, tokens, mask, beam

    def forward(self, emissions: torch.Tensor) -> torch.Tensor:
        return crf_nll(emissions, self.tokens, self.mask, self.transitions, self.beam)


def test_nll_gradients_match_finite_differences():
    emissions, mask, tokens, transitions = setup()
    emissions = emissions.masked_fill(~mask[..., None], 0.0)  # finite for the perturbations
    for beam in (2, V):
        nll = NLL(transitions, tokens, mask, beam)

        def f(e, w1, w2):
            return functional_call(nll, {"transitions.E1.weight": w1,
                                         "transitions.E2.weight": w2}, (e,))

        inputs = (emissions.clone().requires_grad_(),
                  transitions.E1.weight.detach().clone().requires_grad_(),
                  transitions.E2.weight.detach().clone().requires_grad_())
        assert torch.autograd.gradcheck(f, inputs)
