"""What every AR search shares: per-sentence length limits, the eos/pad rules, the cache helpers,
and the one-hypothesis-per-sentence decoding loop that greedy and sampling both run.

Length rules (identical for all searches, so that beam 1, greedy and top-k 1 agree exactly):
  * sentence i may emit at most `max_len[i] = int(max_length_a·src_len[i] + max_length_b)` tokens
    before its eos, where `src_len[i]` counts its non-pad source tokens (per sentence, not per
    batch, so padding never changes a sentence's output);
  * at step `max_len[i]` only eos is allowed (forced, and scored with the model's eos log-prob);
  * before step `min_length` eos is blocked, unless it is forced;
  * pad is never generated.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from paragen.interfaces import StepDecoder

Cache = List[dict]


def select_rows(cache: Cache, index: torch.Tensor) -> None:
    """Keep rows `index` of every cached tensor (self- and cross-attention alike).

    Used when finished sentences leave the batch: unlike `decoder.reorder_cache`, which only
    touches the self-attention K/V, dropping rows must also shrink the cross-attention K/V.
    Every cache entry is batch-first, so this does not depend on the layer's key names.
    """
    for layer_cache in cache:
        for key, value in layer_cache.items():
            layer_cache[key] = value.index_select(0, index)


def decoder_max_positions(decoder: nn.Module) -> Optional[int]:
    """The decoder's position table size (`StepDecoder.max_positions`): lengths fit in it.
    None: no table to fit (relative positions, as T5's)."""
    if not isinstance(decoder, StepDecoder) or decoder.max_positions is None:
        return None
    return int(decoder.max_positions)


class Search(nn.Module):
    # Older configs and model folders still load (the names are now max_length* everywhere).
    renamed_keys = {"maxlen_a": "max_length_a", "maxlen_b": "max_length_b",
                    "min_len": "min_length"}

    """Holds the length settings and applies the length/eos/pad rules to step log-probs.

    Finished sentences leave the batch (their rows are dropped from the memory and the cache)
    once they are `COMPACT_SHARE` of its rows, so a long sentence does not make the finished
    ones keep costing compute. Dropping them at every step would copy every cached tensor at
    almost every step of a batch, which costs more than decoding a few finished rows for
    nothing; until then their outputs are ignored.
    """

    COMPACT_SHARE = 0.25

    def __init__(self, max_length_a: float = 1.2, max_length_b: int = 10, min_length: int = 0):
        super().__init__()
        if max_length_a < 0 or max_length_b < 0 or min_length < 0:
            raise ValueError(f"max_length_a ({max_length_a}), max_length_b ({max_length_b}) and "
                             f"min_length ({min_length}) must be non-negative")
        self.max_length_a, self.max_length_b = float(max_length_a), int(max_length_b)
        self.min_length = int(min_length)

    def max_lengths(self, decoder: nn.Module, memory_padding: torch.Tensor) -> torch.Tensor:
        """(B,) longest output (eos excluded) per sentence, from its own source length.

        float64 makes `int(a * n + b)` agree with Python's arithmetic (1.2 * 5 is 6.0 there, but
        6.0000002 in float32). Step `max_len` feeds position `max_len` to the decoder, so the
        limit is clamped to the position table.
        """
        src_len = (~memory_padding).sum(1, dtype=torch.float64)
        max_len = (self.max_length_a * src_len + self.max_length_b).long()
        table = decoder_max_positions(decoder)
        return max_len if table is None else max_len.clamp_(max=table - 1)

    def constrain_(self, lprobs: torch.Tensor, step: int, row_max_len: torch.Tensor,
                   min_max_len: int, eos_id: int, pad_id: int) -> None:
        """Apply the length/eos/pad rules in place to step `step`'s (N,V) log-probs.

        `min_max_len` (the smallest entry of `row_max_len`, a Python int) lets the common step,
        where no row is at its limit, skip building the forced-eos mask.
        """
        lprobs[:, pad_id] = -torch.inf
        forced = row_max_len.le(step) if step >= min_max_len else None
        if step < self.min_length:
            if forced is None:
                lprobs[:, eos_id] = -torch.inf
            else:
                lprobs[:, eos_id].masked_fill_(~forced, -torch.inf)
        if forced is not None:
            not_eos = torch.ones(lprobs.size(1), dtype=torch.bool, device=lprobs.device)
            not_eos[eos_id] = False
            lprobs.masked_fill_(forced[:, None] & not_eos, -torch.inf)


def top_k(scores: torch.Tensor, k: int, chunk: int = 64) -> Tuple[torch.Tensor, torch.Tensor]:
    """`scores.topk(k, dim=1)` of (N,V) scores: values best first, and their indices.

    Over many wide rows it runs in two stages. The k best of a row lie in the k chunks with the
    largest maxima (any other element is at most the k-th largest chunk maximum, and the k
    chosen chunks each hold an element at least that large), so it ranks the chunk maxima,
    then only the k·chunk elements of the chosen chunks. torch's CPU `topk` is a selection
    over the whole row, and it was 14% of a batched beam-4 pass of the teacher's ONNX int8
    export: over 16 to 800 rows of 8,000 words the two stages take 0.3–0.7× its time, over a
    beam's 4 rows 0.7×. Over fewer rows the single call is faster, and on a GPU (not
    measured there) the single call is kept: it launches one kernel, the two stages seven.
    """
    rows, width = scores.shape
    if scores.device.type != "cpu" or rows < 4 or width < 4 * k * chunk:
        return scores.topk(k, dim=1)
    chunks = -(-width // chunk)
    if width % chunk:
        scores = F.pad(scores, (0, chunks * chunk - width), value=-torch.inf)
    blocks = scores.view(rows, chunks, chunk)
    best_chunks = blocks.amax(2).topk(k, dim=1).indices  # (N,k)
    candidates = blocks.gather(1, best_chunks[:, :, None].expand(rows, k, chunk))
    values, within = candidates.view(rows, k * chunk).topk(k, dim=1)
    chosen = best_chunks.gather(1, within.div(chunk, rounding_mode="floor"))
    return values, chosen * chunk + within % chunk


def step_log_probs(decoder: nn.Module, last: torch.Tensor, memory: torch.Tensor,
                   memory_padding: torch.Tensor, cache: Cache) -> torch.Tensor:
    """(N,V) float32 log-probs of the next token, feeding only the newest token to the cache."""
    logits = decoder(last[:, None], memory, memory_padding, cache=cache)[:, -1]
    return torch.log_softmax(logits.float(), dim=-1)


class IncrementalSearch(Search):
    """One hypothesis per sentence, extended by `choose` each step: greedy and sampling."""

    def choose(self, lprobs: torch.Tensor) -> torch.Tensor:
        """(N,) next tokens from constrained (N,V) log-probs (-inf where banned)."""
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, decoder: nn.Module, memory: torch.Tensor, memory_padding: torch.Tensor, *,
                bos_id: int, eos_id: int, pad_id: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """tokens (B,T) (no bos, no eos, pad-filled) and scores (B,): summed log-probs incl. eos."""
        bsz, device = memory.size(0), memory.device
        max_len = self.max_lengths(decoder, memory_padding)
        num_steps = int(max_len.max()) + 1
        out = torch.full((bsz, num_steps), pad_id, dtype=torch.long, device=device)
        out_scores = torch.zeros(bsz, device=device)

        rows = torch.arange(bsz, device=device)  # original sentence index of each row
        live = torch.ones(bsz, dtype=torch.bool, device=device)  # row not finished yet
        tokens = torch.empty(bsz, 0, dtype=torch.long, device=device)
        scores = torch.zeros(bsz, device=device)
        last = torch.full((bsz,), bos_id, dtype=torch.long, device=device)
        min_max_len = int(max_len.min())
        cache = decoder.init_cache()
        for step in range(num_steps):
            lprobs = step_log_probs(decoder, last, memory, memory_padding, cache)
            self.constrain_(lprobs, step, max_len, min_max_len, eos_id, pad_id)
            last = self.choose(lprobs)
            scores += lprobs.gather(1, last[:, None]).squeeze(1)
            ended = last.eq(eos_id) & live
            if bool(ended.any()):
                done = rows[ended]
                out[done, :step] = tokens[ended]
                out_scores[done] = scores[ended]
                live &= ~ended
                num_live = int(live.sum())
                if num_live == 0:
                    break
                if num_live <= (1 - self.COMPACT_SHARE) * live.numel():
                    keep = live.nonzero().squeeze(1)
                    rows, live, tokens, scores, last, max_len, memory, memory_padding = (
                        t.index_select(0, keep) for t in
                        (rows, live, tokens, scores, last, max_len, memory, memory_padding))
                    select_rows(cache, keep)
                    min_max_len = int(max_len.min())
            tokens = torch.cat([tokens, last[:, None]], dim=1)
        return out[:, :int(out.ne(pad_id).sum(1).max())], out_scores

    def extra_repr(self) -> str:
        return (f"max_length_a={self.max_length_a}, max_length_b={self.max_length_b}, "
                f"min_length={self.min_length}")
