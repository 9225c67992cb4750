"""DA-Transformer DAG: likelihood, Viterbi alignment and decoders against brute force."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from paragen.modules.dag import (dag_best_path, dag_log_likelihood, normalize_links,
                                  path_to_vertex_targets)
from paragen.generators.dag_search import dag_greedy, dag_lookahead, dag_viterbi

PAD = 0
NEG = float("-inf")


def paths(num_vertices: int, length: int):
    """Every strictly increasing path of `length` vertices from 0 to num_vertices − 1."""
    if length == 1:
        return [(0,)] if num_vertices == 1 else []
    if length > num_vertices:
        return []
    return [(0, *middle, num_vertices - 1)
            for middle in itertools.combinations(range(1, num_vertices - 1), length - 2)]


def path_score(token_logp, links, path) -> float:
    """log of one path's probability: its emissions (position i on path[i]) and links."""
    emit = sum(float(token_logp[v, i]) for i, v in enumerate(path))
    return emit + sum(float(links[v, u]) for v, u in zip(path, path[1:]))


def random_dag(vertex_lengths, target_lengths, seed: int = 0, junk: float = float("nan")):
    """float64 emissions and normalised links, with `junk` in every padding / invalid slot."""
    generator = torch.Generator().manual_seed(seed)
    vertex_lengths = torch.tensor(vertex_lengths)
    target_lengths = torch.tensor(target_lengths)
    batch, num_vertices, num_positions = len(vertex_lengths), 6, int(target_lengths.max())
    token_logp = torch.randn(batch, num_vertices, num_positions, generator=generator,
                             dtype=torch.float64) - 2.0
    scores = torch.randn(batch, num_vertices, num_vertices, generator=generator,
                         dtype=torch.float64)
    links = normalize_links(scores, vertex_lengths)
    for b, (length, count) in enumerate(zip(vertex_lengths.tolist(), target_lengths.tolist())):
        token_logp[b, length:] = junk
        token_logp[b, :, count:] = junk
    links = torch.where(links.isfinite(), links, torch.full_like(links, junk))
    return token_logp, links, scores, vertex_lengths, target_lengths


CASES = [([6, 4, 3], [4, 3, 4]),  # the last row has more tokens than vertices
         ([1, 2, 5], [1, 2, 2]),  # one-vertex sentence; two-vertex path; the shortest path
         ([6, 6, 5], [1, 6, 3])]  # one token cannot span 6 vertices; a path through all


@pytest.mark.parametrize("vertex_lengths,target_lengths", CASES)
def test_log_likelihood_is_the_log_of_the_sum_over_all_paths(vertex_lengths, target_lengths):
    token_logp, links, _, lengths, counts = random_dag(vertex_lengths, target_lengths)
    ll = dag_log_likelihood(token_logp, links, lengths, counts)
    for b, (length, count) in enumerate(zip(vertex_lengths, target_lengths)):
        scores = [path_score(token_logp[b], links[b], p) for p in paths(length, count)]
        if not scores:
            assert ll[b] == NEG
        else:
            assert ll[b].item() == pytest.approx(math.log(sum(map(math.exp, scores))), rel=1e-10)


def test_log_likelihood_gradient_matches_finite_differences():
    token_logp, _, scores, lengths, counts = random_dag([6, 4, 3], [4, 3, 4], junk=0.0)

    def loss(token_logp, scores):
        ll = dag_log_likelihood(token_logp, normalize_links(scores, lengths), lengths, counts)
        return torch.where(ll.isfinite(), ll, torch.zeros_like(ll))  # drops the infeasible row

    assert torch.autograd.gradcheck(loss, (token_logp.requires_grad_(),
                                           scores.requires_grad_()))


def test_infeasible_row_masked_out_leaves_finite_gradients_and_none_for_itself():
    token_logp, _, scores, lengths, counts = random_dag([6, 4, 3], [4, 3, 4], junk=float("nan"))
    token_logp, scores = token_logp.float().requires_grad_(), scores.float().requires_grad_()
    ll = dag_log_likelihood(token_logp, normalize_links(scores, lengths), lengths, counts)
    assert ll.isfinite().tolist() == [True, True, False]
    torch.where(ll.isfinite(), ll, torch.zeros_like(ll)).sum().backward()
    assert token_logp.grad.isfinite().all() and scores.grad.isfinite().all()
    assert token_logp.grad[2].eq(0).all() and scores.grad[2].eq(0).all()
    assert token_logp.grad[0].abs().sum() > 0 and scores.grad[1].abs().sum() > 0


def test_emission_gradient_is_the_posterior_vertex_occupancy():
    """d ll / d token_logp[v, i] = P(y_i sits on v | Y): it sums to 1 over v at each position."""
    token_logp, links, _, lengths, counts = random_dag([6, 5], [4, 3], junk=0.0)
    token_logp.requires_grad_()
    dag_log_likelihood(token_logp, links, lengths, counts).sum().backward()
    occupancy = token_logp.grad.sum(1)
    assert torch.allclose(occupancy[0], torch.ones(4, dtype=torch.float64))
    assert torch.allclose(occupancy[1], torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("vertex_lengths,target_lengths", CASES)
def test_best_path_is_the_argmax_over_all_paths(vertex_lengths, target_lengths):
    token_logp, links, _, lengths, counts = random_dag(vertex_lengths, target_lengths, seed=3)
    path, feasible = dag_best_path(token_logp, links, lengths, counts)
    width = max(target_lengths)
    assert path.shape == (3, width) and path.dtype == torch.long
    for b, (length, count) in enumerate(zip(vertex_lengths, target_lengths)):
        candidates = paths(length, count)
        assert bool(feasible[b]) == bool(candidates)
        if not candidates:
            assert path[b].eq(length - 1).all()
            continue
        best = max(candidates, key=lambda p: path_score(token_logp[b], links[b], p))
        assert path[b].tolist() == list(best) + [length - 1] * (width - count)


def test_path_to_vertex_targets_places_each_token_on_its_vertex():
    path = torch.tensor([[0, 2, 3, 5], [0, 1, 3, 3], [0, 0, 0, 0]])
    target = torch.tensor([[11, 12, 13, 14], [21, 22, 23, 7], [31, 7, 7, 7]])
    tokens, on_path = path_to_vertex_targets(path, target, torch.tensor([4, 3, 1]), 6, fill=-1)
    assert tokens.tolist() == [[11, -1, 12, 13, -1, 14],
                               [21, 22, -1, 23, -1, -1],
                               [31, -1, -1, -1, -1, -1]]
    assert on_path.tolist() == tokens.ne(-1).tolist()


def test_normalize_links_is_a_distribution_over_valid_successors_only():
    scores = torch.randn(2, 5, 5, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([5, 3])
    links = normalize_links(scores, lengths)
    assert not links.isnan().any()
    probs = links.exp()
    for b, length in enumerate(lengths.tolist()):
        for v in range(5):
            valid = [v < u < length for u in range(5)]
            assert probs[b, v, [not x for x in valid]].eq(0).all()
            expected = 1.0 if v < length - 1 else 0.0
            assert probs[b, v].sum().item() == pytest.approx(expected)
    torch.where(links.isfinite(), links, torch.zeros_like(links)).sum().backward()
    assert scores.grad.isfinite().all()


def decoder_inputs(vertex_lengths, seed: int):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(vertex_lengths)
    batch, num_vertices = len(vertex_lengths), 6
    links = normalize_links(torch.randn(batch, num_vertices, num_vertices, generator=generator,
                                        dtype=torch.float64) * 2, lengths)
    token_logp_max = -torch.rand(batch, num_vertices, generator=generator,
                                 dtype=torch.float64) * 3
    tokens = torch.randint(1, 50, (batch, num_vertices), generator=generator)
    tokens[0, 0] = PAD  # a vertex may predict the pad id; its place must survive
    return token_logp_max, tokens, links, lengths


def reference_walk(token_logp_max, tokens, links, length: int, beta: float):
    """One sentence, plainly: hop to the best next vertex until the last one."""
    vertex, out = 0, [int(tokens[0])]
    while vertex != length - 1:
        vertex = max(range(vertex + 1, length),
                     key=lambda u: float(links[vertex, u]) + beta * float(token_logp_max[u]))
        out.append(int(tokens[vertex]))
    return out


def as_rows(out: torch.Tensor, lengths) -> list:
    return [row[:n] for row, n in zip(out.tolist(), lengths)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_and_lookahead_follow_the_best_jump(seed):
    vertex_lengths = [6, 1, 4, 5]
    token_logp_max, tokens, links, lengths = decoder_inputs(vertex_lengths, seed)
    for beta, decode in [(0.0, lambda: dag_greedy(token_logp_max, tokens, links, lengths,
                                                  pad_id=PAD)),
                         (1.0, lambda: dag_lookahead(token_logp_max, tokens, links, lengths,
                                                     pad_id=PAD)),
                         (0.5, lambda: dag_lookahead(token_logp_max, tokens, links, lengths,
                                                     pad_id=PAD, beta=0.5))]:
        expected = [reference_walk(token_logp_max[b], tokens[b], links[b], n, beta)
                    for b, n in enumerate(vertex_lengths)]
        out = decode()
        assert out.shape == (4, max(map(len, expected)))
        assert as_rows(out, map(len, expected)) == expected
        for row, reference in zip(out.tolist(), expected):
            assert row[len(reference):] == [PAD] * (out.size(1) - len(reference))


@pytest.mark.parametrize("seed,beta", [(0, 1.0), (1, 0.5), (2, 2.0), (3, 1.0)])
def test_viterbi_maximises_the_length_normalised_score_over_every_path(seed, beta):
    vertex_lengths = [6, 1, 4, 5, 2]
    token_logp_max, tokens, links, lengths = decoder_inputs(vertex_lengths, seed)
    out, scores = dag_viterbi(token_logp_max, tokens, links, lengths, pad_id=PAD, beta=beta)
    expected, best_scores = [], []
    for b, n in enumerate(vertex_lengths):
        def objective(p):
            emit = sum(float(token_logp_max[b, v]) for v in p)
            return (emit + sum(float(links[b, v, u]) for v, u in zip(p, p[1:]))) / len(p) ** beta
        candidates = [p for m in range(1, n + 1) for p in paths(n, m)]
        best = max(candidates, key=objective)
        expected.append([int(tokens[b, v]) for v in best])
        best_scores.append(objective(best))
    assert out.shape == (5, max(map(len, expected)))
    assert as_rows(out, map(len, expected)) == expected
    assert scores.tolist() == pytest.approx(best_scores, rel=1e-10)
    for row, reference in zip(out.tolist(), expected):
        assert row[len(reference):] == [PAD] * (out.size(1) - len(reference))
