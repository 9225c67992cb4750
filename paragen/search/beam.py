"""Beam search with fairseq's semantics, vectorised over sentences and beams.

Per step and sentence, the 2K best (beam, token) extensions are ranked by summed log-prob:
  * an eos extension ranked within the top K is *finished*: its score becomes
    `sum_logprob / length ** lenpen`, where `length` counts the eos;
  * the K best non-eos extensions become the next beams (2K candidates always hold K of them,
    because each beam contributes at most one eos).
Finished hypotheses live in a fixed (B, K) buffer kept sorted by score; new ones are merged in
with one `topk`, so no Python loop over sentences or hypotheses is needed. (fairseq keeps the
first K to finish; when a step overfills the buffer we keep the K best, never a worse result.)
Sentences that are done leave the batch (their rows are dropped from the memory and the
cache) once they are `Search.COMPACT_SHARE` of it; until then their finished buffer is
frozen and their rows are decoded for nothing.

Stopping rule (fairseq's): a sentence is done as soon as it holds K finished hypotheses, or it
has no live beam left (every extension was eos: always the case at its length limit, where eos
is forced). The best of its finished hypotheses is returned. This rule is not exact in general
(with lenpen > 0 a live beam could still end with a better normalised score), but when K is at
least the number of candidates per step, nothing is ever pruned and the result equals the
exhaustive optimum; `tests/test_search.py` checks that.
"""
from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

from paragen.registry import register_search
from paragen.search.base import Search, select_rows, step_log_probs, top_k

MAX_BEAM = 256  # beyond this the (B·beam × V) scores of one step fill memory, to no gain


@register_search
class BeamSearch(Search):
    def __init__(self, beam_size: int = 4, lenpen: float = 1.0, max_length_a: float = 1.2,
                 max_length_b: int = 10, min_length: int = 0):
        super().__init__(max_length_a, max_length_b, min_length)
        if not 1 <= beam_size <= MAX_BEAM:
            raise ValueError(f"beam_size must be between 1 and {MAX_BEAM}, got {beam_size}")
        self.beam_size, self.lenpen = beam_size, float(lenpen)

    @torch.no_grad()
    def forward(self, decoder: nn.Module, memory: torch.Tensor, memory_padding: torch.Tensor, *,
                bos_id: int, eos_id: int, pad_id: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """tokens (B,T) of each sentence's best hypothesis (no bos/eos, pad-filled) and its
        length-penalised score (B,)."""
        k, bsz, device = self.beam_size, memory.size(0), memory.device
        max_len = self.max_lengths(decoder, memory_padding)
        num_steps = int(max_len.max()) + 1
        out = torch.full((bsz, num_steps), pad_id, dtype=torch.long, device=device)
        out_scores = torch.zeros(bsz, device=device)

        # Sentence i owns rows i*K .. i*K+K-1 of every (B*K, ...) tensor. The cross-attention
        # K/V the decoder caches on step 0 are then equal within a beam and never reordered.
        memory = memory.repeat_interleave(k, dim=0)
        memory_padding = memory_padding.repeat_interleave(k, dim=0)
        row_max_len = max_len.repeat_interleave(k)
        min_max_len = int(max_len.min())
        rows = torch.arange(bsz, device=device)  # original index of each sentence
        live = torch.ones(bsz, dtype=torch.bool, device=device)  # sentence not done yet
        # All K beams start as the same empty prefix; only beam 0 may be extended on step 0.
        scores = torch.full((bsz, k), -torch.inf, device=device)
        scores[:, 0] = 0.0
        tokens = torch.empty(bsz * k, 0, dtype=torch.long, device=device)
        last = torch.full((bsz * k,), bos_id, dtype=torch.long, device=device)
        fin_scores = torch.full((bsz, k), -torch.inf, device=device)  # sorted, best first
        fin_tokens = torch.full((bsz, k, num_steps), pad_id, dtype=torch.long, device=device)
        rank = torch.arange(2 * k, device=device)
        first_row = torch.arange(bsz, device=device)[:, None] * k  # of each sentence's beams
        cache = decoder.init_cache()

        for step in range(num_steps):
            lprobs = step_log_probs(decoder, last, memory, memory_padding, cache)
            self.constrain_(lprobs, step, row_max_len, min_max_len, eos_id, pad_id)
            # A sentence's 2K best extensions are among the 2K best tokens of each of its K
            # beams: ranking those K × 2K costs one pass over the (N,V) log-probs, where adding
            # the beam scores to all of them and ranking K × V took two more.
            n, width = scores.size(0), min(2 * k, lprobs.size(1))
            beam_lprobs, beam_tok = top_k(lprobs, width)
            cand = beam_lprobs.view(n, k, width) + scores.unsqueeze(2)
            top_scores, top_idx = cand.view(n, k * width).topk(2 * k, dim=1)
            top_beam = top_idx.div(width, rounding_mode="floor")
            top_tok = beam_tok.view(n, k * width).gather(1, top_idx)
            is_eos = top_tok.eq(eos_id)

            # Scores are finite or -inf (banned or dead), never NaN or +inf: comparing with
            # -inf tests finiteness in one kernel, where `isfinite` takes several.
            new_fin = is_eos[:, :k] & top_scores[:, :k].ne(-torch.inf) & live[:, None]
            if bool(new_fin.any()):
                norm = top_scores[:, :k] / float(step + 1) ** self.lenpen
                cand_tokens = torch.full_like(fin_tokens, pad_id)
                cand_tokens[:, :, :step] = tokens.view(n, k, step).gather(
                    1, top_beam[:, :k, None].expand(n, k, step))
                fin_scores, pick = torch.cat(
                    [fin_scores, norm.masked_fill_(~new_fin, -torch.inf)], dim=1).topk(k, dim=1)
                fin_tokens = torch.cat([fin_tokens, cand_tokens], dim=1).gather(
                    1, pick[:, :, None].expand_as(fin_tokens))

            # The first K non-eos candidates in rank order continue (eos ones sort last).
            alive = (is_eos.long() * (2 * k) + rank).topk(k, dim=1, largest=False).indices
            scores = top_scores.gather(1, alive).masked_fill_(is_eos.gather(1, alive), -torch.inf)
            last = top_tok.gather(1, alive).view(-1)
            order = top_beam.gather(1, alive) + first_row[:n]

            done = (fin_scores[:, -1].ne(-torch.inf) | scores[:, 0].eq(-torch.inf)) & live
            compact = False
            if bool(done.any()):
                finished = rows[done]
                out[finished], out_scores[finished] = fin_tokens[done, 0], fin_scores[done, 0]
                live &= ~done
                num_live = int(live.sum())
                if num_live == 0:
                    break
                compact = num_live <= (1 - self.COMPACT_SHARE) * live.numel()
            if compact:
                keep = live.nonzero().squeeze(1)
                rows, live, scores, fin_scores, fin_tokens, max_len = (
                    t.index_select(0, keep)
                    for t in (rows, live, scores, fin_scores, fin_tokens, max_len))
                order = order.index_select(0, keep).view(-1)
                last = last.view(n, k).index_select(0, keep).view(-1)
                # `order` now also drops the finished sentences' rows, so it applies to every
                # cached tensor (cross-attention included) and to the memory.
                memory, memory_padding, row_max_len = (
                    t.index_select(0, order) for t in (memory, memory_padding, row_max_len))
                select_rows(cache, order)
                min_max_len = int(max_len.min())
            else:
                order = order.view(-1)
                decoder.reorder_cache(cache, order)
            tokens = torch.cat([tokens.index_select(0, order), last[:, None]], dim=1)
        return out[:, :int(out.ne(pad_id).sum(1).max())], out_scores

    def extra_repr(self) -> str:
        return (f"beam_size={self.beam_size}, lenpen={self.lenpen}, max_length_a={self.max_length_a}, "
                f"max_length_b={self.max_length_b}, min_length={self.min_length}")
