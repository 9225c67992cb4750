"""The DA-Transformer likelihood (Huang et al. 2022): a target's log-probability summed over
every path through a directed acyclic graph of decoder vertices.

A DA-Transformer decodes L vertices in parallel (L = upsample × source length). Vertex v
carries a token distribution log p_v(y) and transition links log P(next = u | v) to the later
vertices u > v of its sentence. A path starts at vertex 0, ends at the sentence's last vertex
L_b − 1 and emits one token per vertex it visits, so a target of M tokens is aligned to a
strictly increasing choice of M vertices, and

    P(Y | X) = Σ over such paths  Π links along the path × Π p_{path_i}(y_i).

Shape contract shared by every function here (B sentences, L vertices, M target positions):
    token_logp[b, v, i]  log p_v(y_i), the i-th target token's log-prob at vertex v (B, L, M)
    links[b, v, u]       log P(next = u | current = v)                                (B, L, L)
    vertex_lengths[b]    L_b, the sentence's vertex count; vertices ≥ L_b are padding   (B,)
    target_lengths[b]    M_b, the target's token count; positions ≥ M_b are padding    (B,)
Entries at padding vertices or positions, and links with u ≤ v or u ≥ L_b, may hold anything
(even NaN): every function masks them itself, so callers need not clean them.

A row with M_b > L_b (more tokens than vertices), M_b = 0, or M_b = 1 < L_b has no path: its
likelihood is −inf and its Viterbi path is flagged infeasible. Callers drop those rows from the
loss, e.g. `torch.where(ll.isfinite(), ll, 0)`; the gradient stays NaN-free when they do.
"""
from __future__ import annotations

from typing import Tuple

import torch


def valid_links(vertex_lengths: torch.Tensor, num_vertices: int) -> torch.Tensor:
    """(B, L, L) bool: which links v → u exist, i.e. v < u < L_b.

    Only forward links keep every path acyclic and strictly increasing, and no link may lead
    into a padding vertex.
    """
    ids = torch.arange(num_vertices, device=vertex_lengths.device)
    forward = ids[None, :, None] < ids[None, None, :]
    return forward & (ids[None, None, :] < vertex_lengths[:, None, None])


def normalize_links(link_scores: torch.Tensor, vertex_lengths: torch.Tensor) -> torch.Tensor:
    """Raw link scores (B, L, L) → log transition probabilities (B, L, L).

    A log-softmax over u restricted to the valid successors v < u < L_b; every other entry is
    −inf. Rows without any successor (the last vertex L_b − 1 and the padding vertices) come
    out all −inf rather than NaN, and pass no gradient back: a plain log-softmax over an all
    −inf row would give NaN and poison the whole batch's gradient.
    """
    valid = valid_links(vertex_lengths, link_scores.size(-1))
    has_successor = valid.any(-1, keepdim=True)
    # Rows without a successor get finite dummy scores, so their softmax is well defined.
    scores = link_scores.masked_fill(~valid, float("-inf")).masked_fill(~has_successor, 0.0)
    return scores.log_softmax(-1).masked_fill(~valid, float("-inf"))


def _safe_logsumexp(x: torch.Tensor, dim: int) -> torch.Tensor:
    """logsumexp whose gradient is 0, not NaN, where every input is −inf.

    torch.logsumexp backpropagates exp(x − result) = exp(−inf − −inf) = NaN there, which in
    the DAG recursion happens at every vertex not reachable in exactly i steps.
    """
    peak = x.amax(dim, keepdim=True).detach()
    finite = peak.isfinite()
    peak = torch.where(finite, peak, torch.zeros_like(peak))
    total = (x - peak).exp().sum(dim, keepdim=True)  # ≥ 1 wherever peak is finite
    total = torch.where(finite, total, torch.ones_like(total))
    out = torch.where(finite, peak + total.log(), torch.full_like(total, float("-inf")))
    return out.squeeze(dim)


def _masked_inputs(token_logp: torch.Tensor, links: torch.Tensor,
                   vertex_lengths: torch.Tensor, target_lengths: torch.Tensor
                   ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Zero the padding emissions and set impossible links to −inf.

    Padding emissions are never selected by a valid path (their vertices are unreachable and
    their positions past the answer), but NaN or inf there would still leak NaN into the
    recursion and, through 0 × inf, into the gradient.
    """
    num_vertices, num_positions = token_logp.shape[1:]
    device = token_logp.device
    padding = ((torch.arange(num_vertices, device=device)[None, :, None]
                >= vertex_lengths[:, None, None])
               | (torch.arange(num_positions, device=device)[None, None, :]
                  >= target_lengths[:, None, None]))
    links = links.masked_fill(~valid_links(vertex_lengths, num_vertices), float("-inf"))
    return token_logp.masked_fill(padding, 0.0), links


def has_path(vertex_lengths: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """(B,) bool: whether some path 0 → L_b − 1 visits exactly M_b vertices.

    It needs 1 ≤ M_b ≤ L_b, and a single token only fits a single-vertex sentence, since the
    path must both start on vertex 0 and end on vertex L_b − 1.
    """
    single = target_lengths.eq(1) & vertex_lengths.eq(1)
    return single | ((target_lengths >= 2) & (target_lengths <= vertex_lengths))


def _start(token_logp: torch.Tensor) -> torch.Tensor:
    """f_1: position 0 sits on vertex 0, every other vertex is −inf. (B, L)"""
    start = torch.full_like(token_logp[:, :, 0], float("-inf"))
    start[:, 0] = 0.0
    return start + token_logp[:, :, 0]


# The dynamic programs loop over target positions: compiling them would recompile per length.
@torch.compiler.disable
def dag_log_likelihood(token_logp: torch.Tensor, links: torch.Tensor,
                       vertex_lengths: torch.Tensor, target_lengths: torch.Tensor
                       ) -> torch.Tensor:
    """log P(Y | X) summed over all paths, (B,); −inf for rows without a path (`has_path`).

    Forward algorithm in log space: f_1(v) = token_logp[v, 0] if v == 0 else −inf, and
    f_i(u) = token_logp[u, i−1] + logsumexp_v(f_{i−1}(v) + links[v, u]); the answer is
    f_{M_b}(L_b − 1). A row stops updating once i reaches its M_b, so one loop over the
    longest target serves the whole batch. Each step builds a (B, L, L) tensor that autograd
    keeps, so memory grows as B·L²·M. `links` should already be normalised
    (`normalize_links`); invalid links are masked here regardless.
    """
    token_logp, links = _masked_inputs(token_logp, links, vertex_lengths, target_lengths)
    forward = _start(token_logp)
    for i in range(1, token_logp.size(-1)):
        step = token_logp[:, :, i] + _safe_logsumexp(forward[:, :, None] + links, dim=1)
        forward = torch.where((i < target_lengths)[:, None], step, forward)
    last = (vertex_lengths - 1).clamp(min=0)
    answer = forward.gather(1, last[:, None]).squeeze(1)
    feasible = has_path(vertex_lengths, target_lengths)
    return torch.where(feasible, answer, torch.full_like(answer, float("-inf")))


@torch.compiler.disable
@torch.no_grad()
def dag_best_path(token_logp: torch.Tensor, links: torch.Tensor, vertex_lengths: torch.Tensor,
                  target_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The most probable alignment of each target to a path: (path (B, M) long, feasible (B,)).

    Viterbi: the forward recursion with max in place of logsumexp, keeping each step's
    argmax as a back-pointer. path[b, i] is the vertex emitting y_i: path[b, 0] = 0,
    path[b, M_b − 1] = L_b − 1, strictly increasing in between. Positions i ≥ M_b are filled
    with L_b − 1 (the path's end). Rows that are not feasible (`has_path`: e.g. M_b > L_b)
    have no path; theirs is all L_b − 1. Glancing uses this to decide which vertex shows which
    reference token; no gradient flows through it.
    """
    token_logp, links = _masked_inputs(token_logp, links, vertex_lengths, target_lengths)
    num_positions = token_logp.size(-1)
    score = _start(token_logp)
    pointers = []  # pointers[i - 1][b, u]: the best vertex for y_{i-1} given y_i on u
    for i in range(1, num_positions):
        best, pointer = (score[:, :, None] + links).max(dim=1)
        score = token_logp[:, :, i] + best
        pointers.append(pointer)
    last = (vertex_lengths - 1).clamp(min=0)
    path = last[:, None].repeat(1, num_positions)
    vertex = last
    for i in range(num_positions - 1, 0, -1):
        path[:, i] = vertex
        previous = pointers[i - 1].gather(1, vertex[:, None]).squeeze(1)
        vertex = torch.where(i < target_lengths, previous, vertex)
    path[:, 0] = vertex
    feasible = has_path(vertex_lengths, target_lengths)
    path = torch.where(feasible[:, None], path, last[:, None])
    return path, feasible


def path_to_vertex_targets(path: torch.Tensor, target: torch.Tensor,
                           target_lengths: torch.Tensor, num_vertices: int, fill: int
                           ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Scatter each target token onto the vertex its path assigns: (tokens (B, L), on_path (B, L)).

    tokens[b, path[b, i]] = target[b, i] for i < M_b, `fill` at vertices off the path;
    on_path marks the vertices that received a token. Glancing feeds a share of these
    reference tokens back as decoder input at their vertices. Padding positions i ≥ M_b are
    dropped (their path entries repeat the last vertex and must not overwrite its token).
    """
    batch, num_positions = path.shape
    real = torch.arange(num_positions, device=path.device)[None, :] < target_lengths[:, None]
    # Padding positions go to an extra dump column, cut off afterwards.
    index = torch.where(real, path, torch.full_like(path, num_vertices))
    tokens = target.new_full((batch, num_vertices + 1), fill)
    tokens.scatter_(1, index, target)
    on_path = torch.zeros(batch, num_vertices + 1, dtype=torch.bool, device=path.device)
    on_path.scatter_(1, index, True)
    return tokens[:, :num_vertices], on_path[:, :num_vertices]
