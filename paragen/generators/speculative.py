"""Speculative decoding: a NAT model drafts, the AR model verifies a whole block per pass.

Generalized Aggressive Decoding (Xia et al. 2023), with greedy verification as in speculative
decoding (Leviathan et al. 2023; Chen et al. 2023). Every verification step, each unfinished
sentence feeds [its last accepted token, the next k draft tokens] through the AR decoder in
one pass over its key/value cache (`TransformerDecoder.forward_block`). The pass gives the
AR model's greedy choice at every position of the block; the longest draft prefix that
agrees with it is accepted, plus the AR model's own token after it (at the first
disagreement, or past the block), so a step gains between 1 and k + 1 tokens per sentence.
Sentences progress independently: each row has its own accepted length, writes its block
where its sentence is, and keeps only its accepted cache entries (rejected ones are masked
and overwritten later; the accepted prefix is never recomputed).

`block_size` k: 0 verifies the whole rest of the draft at every step, the fewest passes
when drafts are good. Every position of a block costs a decoder position and an output layer
row whether it is accepted or not, so with a poor drafter in large batches (compute-bound)
a small k (4–8) wastes less; where a pass costs about the same for one token or twenty (a
GPU at batch 1), the whole draft pays. `min_confidence` p trims each row's block by the
drafter's own belief instead: the block ends at the first draft token the drafter gives a
probability below p (that token is still verified), so a pass after an unsure token does not
pay for the positions behind it, which the verifier mostly rejects. 0 (default): off.

Lossless: every accepted token is the AR model's greedy choice given the accepted prefix,
under GreedySearch's length rules (`search: {max_length_a, max_length_b, min_length}`),
applied at each block position with that position's own step. The output is therefore
GreedySearch's. One caveat, as for every kernel change: the block pass sums in another order
than greedy's one-token step (logits differ by ~1e-6 in fp32, more in bf16), which can flip
an argmax between two tokens tied that closely: never on Multi30k's test set in fp32, but on
5–8 of 200 of its sentences in bf16, so the generator warns once in bf16 or fp16.

After a disagreement the draft past it is stale (`paragen.generators.drafting`):
  * `redraft: true` (default): length-predicting drafters (GLAT, vanilla NAT, CMLM,
    NAT-CRF) propose again given the accepted prefix, one NAT pass for the rows that
    disagreed; CTC drafters re-align the prefix to their first pass's slots (no NAT
    pass) and continue from where it ends, so a draft that missed a token or held one
    too many is back in step;
  * `redraft: false`: the stale draft is kept, as if the AR model's token had replaced
    the rejected one, and continues after it.
A drafter trained from the AR model with its encoder frozen (`task.trainer.freeze:
[encoder.*]`) drafts from the AR model's encoder output: one encoder pass instead of two.

An exported AR model (`paragen export`, ONNX or TorchScript) verifies through its `block`
graph, with a PyTorch or exported NAT drafter: `--beam 1 --task.generator.class
SpeculativeGenerator --task.generator.drafter runs/exported/glat-ctc-onnx` on the exported
folder (`--beam 1`: greedy search in place of a stored beam search).

Relaxed acceptance (GAD++), off by default (`accept_top: 1`): a draft token is also accepted
when it is among the AR model's `accept_top` best tokens and its log-probability is within
`accept_tolerance` of the best one. More tokens pass per step, and the output is no longer
greedy's: BLEU may drop (`benchmarks/speculative.py` reports both).

Statistics: `accepted_histogram[n]` counts (sentence, verification step) pairs that gained n
tokens (the accepted draft tokens + the AR model's own); `statistics()` summarises them.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Dict, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from paragen.errors import ConfigError
from paragen.generators.drafting import Draft, build_drafter
from paragen.registry import build, register_generator
from paragen.search.base import Search, select_rows
from paragen.search.greedy import GreedySearch

logger = logging.getLogger("paragen")


@dataclasses.dataclass
class Rows:
    """The unfinished sentences' state; every tensor is batch-first (one row per sentence)."""

    index: torch.Tensor  # (N,) the sentence each row decodes
    length: torch.Tensor  # (N,) output tokens accepted; the newest is not in the cache yet
    last: torch.Tensor  # (N,) newest accepted token (bos before the first), fed next
    cursor: torch.Tensor  # (N,) the draft slot proposing output token `length`
    draft: torch.Tensor  # (N,D) draft tokens, then one spare column
    draft_len: torch.Tensor  # (N,)
    draft_log_probs: torch.Tensor  # (N,D) the drafter's log-probability of each draft token
    max_len: torch.Tensor  # (N,) GreedySearch's length limit
    tokens: torch.Tensor  # (N,W) accepted tokens, then a column that takes discarded writes
    scores: torch.Tensor  # (N,) summed log-probabilities of the accepted tokens
    live: torch.Tensor  # (N,) not finished
    memory: torch.Tensor
    memory_padding: torch.Tensor
    context: Dict[str, torch.Tensor]  # the drafter's own per-sentence tensors

    def select(self, keep: torch.Tensor) -> "Rows":
        def pick(value):
            if isinstance(value, dict):
                return {key: pick(tensor) for key, tensor in value.items()}
            return value.index_select(0, keep)

        return Rows(**{f.name: pick(getattr(self, f.name)) for f in dataclasses.fields(self)})


@register_generator
class SpeculativeGenerator(nn.Module):
    def __init__(self, drafter: Union[str, nn.Module], block_size: int = 0, redraft: bool = True,
                 accept_top: int = 1, accept_tolerance: float = 1.0, min_confidence: float = 0.0,
                 search: Optional[Dict[str, Any]] = None, *, model: nn.Module, bos_id: int,
                 eos_id: int, pad_id: int, config_path: str = "task.generator"):
        """`drafter`: a NAT model folder or checkpoint sharing the AR model's tokenizer (or,
        in-process, a NAT model or a `Drafter`); `block_size`: draft tokens verified per
        step (0: the whole rest of the draft); `min_confidence`: end blocks at the first
        draft token the drafter gives a lower probability (0: off)."""
        super().__init__()
        if block_size < 0:
            raise ValueError(f"{config_path}.block_size: ≥ 1, or 0 for the whole draft; got "
                             f"{block_size}")
        if accept_top < 1 or accept_tolerance < 0:
            raise ValueError(f"{config_path}: accept_top must be ≥ 1 (1: exact greedy) and "
                             f"accept_tolerance ≥ 0, got {accept_top} and {accept_tolerance}")
        if not 0.0 <= min_confidence < 1.0:
            raise ValueError(f"{config_path}.min_confidence: a probability in [0, 1) (0: off), "
                             f"got {min_confidence}")
        search = {"class": "GreedySearch", **(search or {})}
        self.search = build("search", search, f"{config_path}.search")
        if not isinstance(self.search, GreedySearch):
            raise ConfigError(f"{config_path}.search.class: speculative decoding verifies "
                              f"greedy choices; use GreedySearch (or leave the class out; "
                              f"`paragen generate/evaluate --beam 1` switches a model folder "
                              f"that decodes with beam search)")
        decoder = getattr(model, "decoder", None)
        if not hasattr(decoder, "forward_block"):
            raise ConfigError(f"{config_path}.class: SpeculativeGenerator needs an AR model "
                              f"whose decoder verifies blocks (TransformerDecoder); "
                              f"{type(model).__name__} has none")
        self.model = model
        self.drafter = build_drafter(drafter, model, eos_id, pad_id, config_path)
        self.block_size, self.accept_top = block_size, accept_top
        self.accept_tolerance = float(accept_tolerance)
        self.min_confidence = float(min_confidence)
        self.redraft = redraft and self.drafter.can_redraft
        self.bos_id, self.eos_id, self.pad_id = bos_id, eos_id, pad_id
        self._checked = False  # the model's weights load after the generator is built: see
        # `_check_at_first_call`
        self.reset_statistics()

    # ------------------------------------------------------------------ statistics
    def reset_statistics(self) -> None:
        self.accepted_histogram = torch.zeros(1, dtype=torch.long)
        self.verify_passes = 0  # AR decoder passes
        self.draft_passes = 0  # NAT passes (the first draft and each re-draft)

    def statistics(self) -> Dict[str, Any]:
        """Mean tokens gained per sentence and verification step, its histogram, pass counts."""
        hist = self.accepted_histogram.tolist()
        while len(hist) > 1 and hist[-1] == 0:
            hist.pop()
        steps = sum(hist)
        return {"mean_tokens_per_step": sum(n * c for n, c in enumerate(hist)) / max(steps, 1),
                "histogram": hist, "sentence_steps": steps, "verify_passes": self.verify_passes,
                "draft_passes": self.draft_passes}

    def _record(self, histogram: torch.Tensor) -> None:
        histogram = histogram.cpu()
        histogram[0] = 0  # finished rows still in the batch
        grow = histogram.numel() - self.accepted_histogram.numel()
        if grow > 0:
            self.accepted_histogram = F.pad(self.accepted_histogram, (0, grow))
        self.accepted_histogram[:histogram.numel()] += histogram

    # ------------------------------------------------------------------ decoding
    @torch.inference_mode()
    def forward(self, src: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B,S) source ids → (B,T) output ids padded with pad (no bos/eos), as GreedySearch's,
        and (B,) scores: summed log-probabilities, eos included."""
        model, pad = self.model, self.pad_id
        memory, memory_padding = model.encoder(src)
        self._place_drafter()
        if not self._checked:
            self._check_at_first_call()
        context, first = self.drafter.first_draft(src, memory, memory_padding,
                                                  with_log_probs=self.min_confidence > 0)
        self.draft_passes += 1
        max_len = self.search.max_lengths(model.decoder, memory_padding)
        bsz, device = src.size(0), src.device
        width = int(max_len.max()) + 2  # output positions 0..max_len, then the discard column
        spare = max(width, first.tokens.size(1) + 1) - first.tokens.size(1)
        zeros = torch.zeros(bsz, dtype=torch.long, device=device)
        rows = Rows(index=torch.arange(bsz, device=device), length=zeros, cursor=zeros.clone(),
                    last=torch.full_like(zeros, self.bos_id),
                    draft=F.pad(first.tokens, (0, spare), value=pad), draft_len=first.lengths,
                    draft_log_probs=F.pad(draft_log_probs(first), (0, spare)),
                    max_len=max_len, tokens=torch.full((bsz, width), pad, device=device),
                    scores=torch.zeros(bsz, device=device),
                    live=torch.ones(bsz, dtype=torch.bool, device=device),
                    memory=memory, memory_padding=memory_padding, context=context)
        out = torch.full((bsz, width - 1), pad, dtype=torch.long, device=device)
        out_scores = torch.zeros(bsz, device=device)
        histogram = torch.zeros(width + 1, dtype=torch.long, device=device)
        cache = model.decoder.init_cache()
        while True:
            ended = self._step(rows, cache, histogram)
            if bool(ended.any()):
                done = rows.index[ended]
                finished = rows.tokens[ended, :-1]
                out[done] = finished.masked_fill(finished.eq(self.eos_id), pad)
                out_scores[done] = rows.scores[ended]
                rows.live &= ~ended
                num_live = int(rows.live.sum())
                if num_live == 0:
                    break
                if num_live <= (1 - Search.COMPACT_SHARE) * rows.live.numel():
                    keep = rows.live.nonzero().squeeze(1)
                    rows = rows.select(keep)
                    select_rows(cache, keep)
        self._record(histogram)
        return out[:, :int(out.ne(pad).sum(1).max())], out_scores

    def _step(self, rows: Rows, cache: list, histogram: torch.Tensor) -> torch.Tensor:
        """One verification pass over every live row, updating `rows` in place; returns (N,)
        which rows accepted eos in it.

        Row b feeds its last token and k_b draft tokens and gets the AR model's choice after
        each: k_b + 1 choices, compared with the draft tokens at those k_b + 1 slots (the
        last one past the block). The draft tokens agreeing up to the first disagreement are
        taken, then the AR model's own choice there, if any."""
        room = torch.minimum(rows.draft_len - rows.cursor, rows.max_len - rows.length)
        if self.block_size:
            room = room.clamp_max(self.block_size)
        if self.min_confidence:
            room = self._trim_unsure(rows, room)
        k = room.clamp_min(0).masked_fill_(~rows.live, 0)  # (N,) draft tokens verified
        width = int(k.max())
        offsets = torch.arange(width + 1, device=k.device)
        slots = rows.cursor[:, None] + offsets
        drafted = rows.draft.gather(1, slots.clamp_max(rows.draft.size(1) - 1))  # (N, width+1)
        positions = rows.length[:, None] + offsets
        logits = self.model.decoder.forward_block(
            torch.cat([rows.last[:, None], drafted[:, :width]], 1), positions, rows.memory,
            rows.memory_padding, cache)
        self.verify_passes += 1
        lprobs = torch.log_softmax(logits.float(), dim=-1)
        self.constrain_(lprobs, positions, rows.max_len)
        best = lprobs.argmax(-1)  # (N, width+1): the AR model's choice after each input
        compared = (offsets <= k[:, None]) & (slots < rows.draft_len[:, None])
        agreeing = (self.agrees(lprobs, drafted, best) & compared).long().cumprod(1).sum(1)
        chosen = torch.where(offsets < agreeing[:, None], drafted, best)
        closing = torch.minimum(agreeing, k)  # index of the last token gained before eos
        is_eos = chosen.eq(self.eos_id) & (offsets <= closing[:, None])
        ended = is_eos.any(1) & rows.live
        gain = (torch.where(ended, is_eos.int().argmax(1), closing) + 1).masked_fill_(
            ~rows.live, 0)  # tokens gained, eos included
        histogram.index_add_(0, gain, torch.ones_like(gain))
        taken = offsets < gain[:, None]
        discard = rows.tokens.size(1) - 1
        rows.tokens.scatter_(1, torch.where(taken, positions, discard), chosen)
        rows.scores += lprobs.gather(2, chosen[..., None]).squeeze(2).masked_fill(~taken, 0.0) \
            .sum(1)
        rows.last = torch.where(rows.live, chosen.gather(1, (gain - 1).clamp_min(0)[:, None])
                                .squeeze(1), rows.last)
        rows.length += gain
        stale = rows.live & ~ended & (agreeing <= k)
        self._follow_draft(rows, closing, stale)
        return ended

    def _follow_draft(self, rows: Rows, closing: torch.Tensor, stale: torch.Tensor) -> None:
        """Move each row's draft cursor past the `closing` + 1 (N,) slots just decided. In
        `stale` rows the AR model's own token replaced the draft's in the last of them, or
        the draft ran out: they are re-drafted, or keep their draft, which then continues
        after the replaced token."""
        rows.cursor += closing + 1
        if self.redraft and bool(stale.any()):
            self._redraft(rows, stale.nonzero().squeeze(1))

    def _check_at_first_call(self) -> None:
        """Whether the drafter shares the AR model's encoder, and a warning when the output
        may not be greedy's: in bf16 or fp16 a block pass and a one-token step round
        differently, so near-ties can go the other way (a few lines in a hundred on
        Multi30k)."""
        if hasattr(self.drafter, "check_shared_encoder"):
            self.drafter.check_shared_encoder(self.model)
        weights = next(self.model.parameters(), None)
        low = (weights is not None and weights.dtype in (torch.bfloat16, torch.float16)) or any(
            torch.is_autocast_enabled(device) for device in ("cpu", "cuda"))
        if low and self.accept_top == 1:
            logger.warning("speculative decoding in bf16/fp16: a few outputs may differ from "
                           "greedy search's; env.precision=fp32 gives greedy's output exactly")
        self._checked = True

    def _trim_unsure(self, rows: Rows, room: torch.Tensor) -> torch.Tensor:
        """(N,) block sizes cut at each row's first draft token below `min_confidence`,
        that token included."""
        span = torch.arange(max(int(room.max()), 1), device=room.device)
        slots = (rows.cursor[:, None] + span).clamp_max(rows.draft_log_probs.size(1) - 1)
        sure = rows.draft_log_probs.gather(1, slots) >= math.log(self.min_confidence)
        return torch.minimum(room, sure.long().cumprod(1).sum(1) + 1)

    def _redraft(self, rows: Rows, need: torch.Tensor) -> None:
        """New drafts for rows `need` (M,), given their accepted tokens."""
        context = {key: value.index_select(0, need) for key, value in rows.context.items()}
        prefix_len = rows.length.index_select(0, need)
        new = self.drafter.redraft(context, rows.tokens.index_select(0, need), prefix_len,
                                   with_log_probs=self.min_confidence > 0)
        self.draft_passes += 1
        spare = rows.draft.size(1) - new.tokens.size(1)
        rows.draft.index_copy_(0, need, F.pad(new.tokens, (0, spare), value=self.pad_id))
        rows.draft_log_probs.index_copy_(0, need, F.pad(draft_log_probs(new), (0, spare)))
        rows.draft_len.index_copy_(0, need, new.lengths.clamp_max(rows.draft.size(1) - 1))
        rows.cursor.index_copy_(0, need, prefix_len)

    def constrain_(self, lprobs: torch.Tensor, steps: torch.Tensor, max_len: torch.Tensor
                   ) -> None:
        """GreedySearch's rules (`Search.constrain_`) on (N,W,V) log-probs, each block
        position at its own step (N,W): pad never; only eos from step max_len on; no eos
        before min_length unless forced."""
        lprobs[..., self.pad_id] = -torch.inf
        forced = steps >= max_len[:, None]
        eos = lprobs[..., self.eos_id].masked_fill((steps < self.search.min_length) & ~forced,
                                                   -torch.inf)
        # Filling whole forced rows and putting eos back skips an (N,W,V) mask.
        lprobs.masked_fill_(forced[..., None], -torch.inf)
        lprobs[..., self.eos_id] = eos

    def agrees(self, lprobs: torch.Tensor, block: torch.Tensor, best: torch.Tensor
               ) -> torch.Tensor:
        """(N,W) whether each draft token passes: the AR model's greedy choice, or (relaxed)
        within its `accept_top` best and `accept_tolerance` of the best log-probability."""
        same = block.eq(best)
        if self.accept_top == 1:
            return same
        drafted = lprobs.gather(2, block[..., None])
        rank = lprobs.gt(drafted).sum(-1)  # tokens strictly more probable than the draft's
        close = drafted.squeeze(2) >= lprobs.gather(2, best[..., None]).squeeze(2) \
            - self.accept_tolerance
        return same | ((rank < self.accept_top) & close)

    def _place_drafter(self) -> None:
        """The drafter on the AR model's device and in its dtype (a no-op once there)."""
        reference = next(self.model.parameters(), None)
        own = next(self.drafter.parameters(), None) if isinstance(self.drafter, nn.Module) \
            else None
        if reference is not None and own is not None and (
                own.device != reference.device or own.dtype != reference.dtype):
            self.drafter.to(device=reference.device, dtype=reference.dtype)

    def extra_repr(self) -> str:
        return (f"block_size={self.block_size}, redraft={self.redraft}, "
                f"accept_top={self.accept_top}, accept_tolerance={self.accept_tolerance}, "
                f"min_confidence={self.min_confidence}")


def draft_log_probs(draft: Draft) -> torch.Tensor:
    """The draft's log-probabilities, float32; 0 (sure) for a drafter that gives none."""
    if draft.log_probs is None:
        return torch.zeros(draft.tokens.shape, device=draft.tokens.device)
    return draft.log_probs.float()
