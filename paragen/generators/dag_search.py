"""Decoding a DA-Transformer's DAG (Huang et al. 2022): pick one path from vertex 0 to the
sentence's last vertex L_b − 1 and output the best token of every vertex on it.

All three decoders take the same inputs (B sentences, L vertices):
    token_logp_max[b, v]  the best token's log-prob at vertex v          (B, L) float
    tokens[b, v]          that best token                                (B, L) long
    links[b, v, u]        log P(next = u | v), normalised (`normalize_links`)  (B, L, L)
    vertex_lengths[b]     L_b; vertices ≥ L_b are padding                (B,)
and return (B, P) long tensors, each row's tokens left-aligned and padded with `pad_id`, P the
longest output in the batch. Invalid links (u ≤ v or u ≥ L_b) are masked here, so every path
is strictly increasing and stays inside its sentence.

- greedy: follow the most probable link from each vertex (fastest; ignores token confidence);
- lookahead: follow argmax_u links[v, u] + β·token_logp_max[u], preferring confident vertices;
- viterbi (Shao et al. 2022): the path maximising its total log-probability divided by
  m^β, m its vertex count, exactly, by dynamic programming over path lengths.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

from paragen.modules.dag import valid_links


def _path_tokens(tokens: torch.Tensor, visited: torch.Tensor, pad_id: int) -> torch.Tensor:
    """The tokens at visited vertices, in vertex order, left-aligned and pad-filled: (B, P).

    Positions come from a running count of visited vertices rather than from sorting on
    `pad_id`, so a vertex whose best token happens to be the pad id keeps its place.
    """
    width = max(int(visited.sum(-1).max()), 1) if visited.numel() else 1
    position = visited.long().cumsum(-1) - 1
    position = torch.where(visited, position, torch.full_like(position, width))  # dump column
    out = tokens.new_full((tokens.size(0), width + 1), pad_id)
    out.scatter_(1, position, tokens)
    return out[:, :width]


@torch.no_grad()
def _walk(tokens: torch.Tensor, jump_scores: torch.Tensor, vertex_lengths: torch.Tensor,
          pad_id: int) -> torch.Tensor:
    """From vertex 0, jump to argmax_u jump_scores[v, u] until L_b − 1; the path's tokens.

    Every row moves each step; a row at its end stands still. A path is strictly increasing,
    so L − 1 steps always suffice, and the loop stops as soon as every row is done.
    """
    batch, num_vertices = tokens.shape
    jump_scores = jump_scores.masked_fill(~valid_links(vertex_lengths, num_vertices),
                                          float("-inf"))
    end = (vertex_lengths - 1).clamp(min=0)
    vertex = torch.zeros_like(end)
    visited = torch.zeros(batch, num_vertices, dtype=torch.bool, device=tokens.device)
    visited[:, 0] = True
    for _ in range(num_vertices - 1):
        done = vertex.eq(end)
        if bool(done.all()):
            break
        row = jump_scores.gather(1, vertex[:, None, None].expand(-1, 1, num_vertices))
        vertex = torch.where(done, vertex, row.squeeze(1).argmax(-1))
        visited.scatter_(1, vertex[:, None], True)
    return _path_tokens(tokens, visited, pad_id)


def dag_greedy(token_logp_max: torch.Tensor, tokens: torch.Tensor, links: torch.Tensor,
               vertex_lengths: torch.Tensor, *, pad_id: int) -> torch.Tensor:
    """Greedy decoding: from each vertex take its most probable link. (B, P) tokens.

    The choice reads the links only; `token_logp_max` is accepted so that the three
    decoders share one call signature and a generator can switch between them by name.
    """
    return _walk(tokens, links, vertex_lengths, pad_id)


def dag_lookahead(token_logp_max: torch.Tensor, tokens: torch.Tensor, links: torch.Tensor,
                  vertex_lengths: torch.Tensor, *, pad_id: int, beta: float = 1.0
                  ) -> torch.Tensor:
    """Lookahead decoding: next = argmax_u links[v, u] + β·token_logp_max[u]. (B, P) tokens.

    Weighing the destination's token confidence avoids jumping to a likely vertex that has
    no confident token, at the cost of one (B, L) addition per decoding call.
    """
    jump_scores = links + beta * token_logp_max[:, None, :]
    return _walk(tokens, jump_scores, vertex_lengths, pad_id)


@torch.no_grad()
def dag_viterbi(token_logp_max: torch.Tensor, tokens: torch.Tensor, links: torch.Tensor,
                vertex_lengths: torch.Tensor, *, pad_id: int, beta: float = 1.0
                ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Joint Viterbi decoding: (tokens (B, P), scores (B,)).

    Maximises, over all paths 0 → L_b − 1 of any vertex count m, the length-normalised score
    (Σ token_logp_max over the path + Σ links along it) / m^β. Without the normalisation the
    shortest path would always win, as every extra vertex adds a negative log-probability.
    g_m(u), the best score of an m-vertex path from 0 ending at u, follows
    g_m(u) = token_logp_max[u] + max_v g_{m−1}(v) + links[v, u]; the chosen m maximises
    g_m(L_b − 1) / m^β over m ≤ L_b, and back-pointers recover the path. Costs L steps over a
    (B, L, L) tensor. `scores` is the chosen path's normalised score.
    """
    batch, num_vertices = tokens.shape
    links = links.masked_fill(~valid_links(vertex_lengths, num_vertices), float("-inf"))
    end = (vertex_lengths - 1).clamp(min=0)
    score = torch.full_like(token_logp_max, float("-inf"))
    score[:, 0] = token_logp_max[:, 0]
    best = score.gather(1, end[:, None]).squeeze(1)  # m = 1: only a one-vertex sentence ends
    best_count = torch.ones_like(end)
    pointers = []  # pointers[m - 2][b, u]: the vertex before u on the best m-vertex path
    for count in range(2, num_vertices + 1):
        step, pointer = (score[:, :, None] + links).max(dim=1)
        score = token_logp_max + step
        pointers.append(pointer)
        normalised = score.gather(1, end[:, None]).squeeze(1) / count ** beta
        better = normalised > best  # -inf where no count-vertex path reaches the end
        best = torch.where(better, normalised, best)
        best_count = torch.where(better, torch.full_like(best_count, count), best_count)
    visited = torch.zeros(batch, num_vertices, dtype=torch.bool, device=tokens.device)
    vertex = end
    # rows whose path is shorter than `count` stand still at their end until count reaches
    # their own length, so the walk back starts at the longest chosen path, not at L
    for count in range(int(best_count.max()), 1, -1):
        on_path = count <= best_count
        visited |= on_path[:, None] & F.one_hot(vertex, num_vertices).bool()
        previous = pointers[count - 2].gather(1, vertex[:, None]).squeeze(1)
        vertex = torch.where(on_path, previous, vertex)
    visited[:, 0] = True
    return _path_tokens(tokens, visited, pad_id), best
