"""BART's noise: what a denoising encoder-decoder sees in place of the text it must rebuild.

    (B,S) `ids eos` rows ─ permute sentences ─ mask tokens ─ infill spans + delete ─→ noised rows
      sentences: a `permute_sentences` share of each row's sentences (ended by a piece ending
                 in . ! ?, the rest of a row is one more sentence) swap places among themselves
      token masking: a `token_mask_ratio` share of the tokens each shown as <mask>
      infilling: a `mask_ratio` share of the tokens covered by spans whose lengths follow
                 Poisson(`poisson_lambda`); each span becomes ONE <mask> (a 0-length span
                 inserts one), so the model must also learn how many tokens are missing
      deletion: a `delete_ratio` share of the tokens outside the spans removed, no trace left
      random_ratio: that share of the <mask>s shown as a random real token instead

Counts are drawn per row with probabilistic rounding (`floor(rate·n + u)`), so each rate is
exact in expectation for any row length. Spans are placed like SpanBERT's in `masking.py`: the
row draws lengths until they cover its budget (the last one cut to fit), then places them
among its free tokens as bars among stars, so spans never overlap and the budget is met
exactly. Everything runs on whole (B,S) tensors, in one pass per noise.

Randomness comes from `generator`, or from torch's global generator when it is None: the
trainer saves and restores that one with every checkpoint, so a resumed run noises exactly as
an uninterrupted one; validation passes a freshly seeded generator (see `masking.py`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from paragen.errors import ConfigError
from paragen.tasks.masking import _ranks

SENTENCE_END = (".", "!", "?")


def poisson_spans(budget: torch.Tensor, rate: float, generator: Optional[torch.Generator]
                  ) -> torch.Tensor:
    """(B,M) span lengths per row: Poisson(rate) draws, in order, until they cover the row's
    budget; the span that crosses it is cut to fit and later ones are -1 (no span). Zero-length
    spans (insertions) inside the budget are kept."""
    rows, most = len(budget), int(budget.max())
    lengths = torch.empty(rows, 0, dtype=torch.long)
    while True:  # usually once: draws covering twice the largest budget on average
        more = torch.poisson(torch.full((rows, int(2 * most / rate) + 8), rate),
                             generator=generator).long()
        lengths = torch.cat([lengths, more], 1)
        if bool(lengths.sum(1).ge(budget).all()):
            break
    before = lengths.cumsum(1) - lengths
    inside = before < budget[:, None]
    return torch.where(inside, torch.minimum(lengths, budget[:, None] - before),
                       torch.full_like(lengths, -1))


class TextNoiser:
    """Noises (B,S) batches of `ids eos` rows padded with pad (see the module doc)."""

    def __init__(self, *, vocab_size: int, mask_id: int, eos_id: int, pad_id: int,
                 special_ids: Sequence[int], pieces: Optional[Sequence[str]] = None,
                 mask_ratio: float = 0.3, poisson_lambda: float = 3.0,
                 token_mask_ratio: float = 0.0, delete_ratio: float = 0.0,
                 random_ratio: float = 0.1, permute_sentences: float = 1.0,
                 max_length: Optional[int] = None, config_path: str = "task"):
        for key, value in (("mask_ratio", mask_ratio), ("token_mask_ratio", token_mask_ratio),
                           ("delete_ratio", delete_ratio), ("random_ratio", random_ratio),
                           ("permute_sentences", permute_sentences)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{config_path}.{key}: must be in [0, 1], got {value}")
        if mask_ratio + token_mask_ratio + delete_ratio > 1.0:
            raise ConfigError(f"{config_path}.mask_ratio + token_mask_ratio + delete_ratio: "
                              f"must be ≤ 1 (shares of one row's tokens), got "
                              f"{mask_ratio + token_mask_ratio + delete_ratio}")
        if poisson_lambda <= 0:
            raise ConfigError(f"{config_path}.poisson_lambda: must be > 0, got {poisson_lambda}")
        if permute_sentences > 0 and pieces is None:
            raise ConfigError(f"{config_path}.permute_sentences: the tokenizer does not list "
                              f"its pieces, so sentence ends are unknown; set it to 0")
        self.mask_id, self.eos_id, self.pad_id = mask_id, eos_id, pad_id
        self.mask_ratio, self.poisson_lambda = mask_ratio, poisson_lambda
        self.token_mask_ratio, self.delete_ratio = token_mask_ratio, delete_ratio
        self.random_ratio, self.permute_ratio = random_ratio, permute_sentences
        self.max_length = max_length
        special = torch.zeros(vocab_size, dtype=torch.bool)
        special[torch.tensor(sorted({*special_ids, mask_id}), dtype=torch.long)] = True
        self.random_pool = (~special).nonzero().squeeze(1)
        self.sentence_end = None if pieces is None else torch.tensor(
            [piece.endswith(SENTENCE_END) for piece in pieces], dtype=torch.bool) & ~special

    def __call__(self, src: torch.Tensor, generator: Optional[torch.Generator] = None
                 ) -> torch.Tensor:
        """The noised (B,S') rows, `ids eos` padded, cut to `max_length` (eos kept)."""
        text = src.ne(self.pad_id) & src.ne(self.eos_id)  # rows are `ids eos`: text first
        if self.permute_ratio > 0:
            src = self.permute(src, text, generator)
        if self.token_mask_ratio > 0:
            chosen = _choose(text, _budget(text.sum(1), self.token_mask_ratio, generator),
                             generator)
            src = src.masked_fill(chosen, self.mask_id)
        out = self.infill(src, text, generator)
        if self.random_ratio > 0:
            masks = out.eq(self.mask_id)
            swap = masks & (torch.rand(out.shape, generator=generator) < self.random_ratio)
            random_ids = self.random_pool[torch.randint(len(self.random_pool), out.shape,
                                                        generator=generator)]
            out = torch.where(swap, random_ids, out)
        if self.max_length is not None and out.size(1) > self.max_length:
            cut = out[:, self.max_length - 1].ne(self.pad_id)
            out = out[:, :self.max_length].clone()
            out[cut, -1] = self.eos_id
        return out

    def permute(self, src: torch.Tensor, text: torch.Tensor,
                generator: Optional[torch.Generator]) -> torch.Tensor:
        """Each row's sentences, a `permute_sentences` share of them swapped among their own
        places (the others stay put); eos and padding stay at the end."""
        ends = self.sentence_end[src] & text
        sentence = ends.long().cumsum(1) - ends.long()  # sentence index of every position
        count = torch.where(text.any(1), sentence.masked_fill(~text, 0).amax(1) + 1, 0)
        width = int(count.max()) + 1
        real = torch.arange(width) < count[:, None]
        chosen = _choose(real, _budget(count, self.permute_ratio, generator), generator)
        index = torch.arange(width).expand_as(chosen)
        places = torch.where(chosen, index, width + index).argsort(1)  # chosen first, in order
        shuffled = torch.where(chosen, torch.rand(chosen.shape, generator=generator),
                               2.0 + index).argsort(1)  # chosen first, in random order
        order = torch.empty_like(index).scatter_(1, places, shuffled)  # place → sentence
        rank = torch.empty_like(index).scatter_(1, order, index)  # sentence → place
        positions = torch.arange(src.size(1))
        key = rank.gather(1, sentence.clamp_max(width - 1)) * src.size(1) + positions
        key = torch.where(text, key, width * src.size(1) + positions)
        return src.gather(1, key.argsort(1))

    def infill(self, src: torch.Tensor, text: torch.Tensor,
               generator: Optional[torch.Generator]) -> torch.Tensor:
        """Text infilling and token deletion in one rebuild of the rows."""
        rows, width = src.shape
        count = text.sum(1)
        span_start = torch.zeros_like(text)
        in_span = torch.zeros_like(text)
        inserted = torch.zeros(rows, width, dtype=torch.long)  # 0-length spans before a token
        if self.mask_ratio > 0:
            budget = _budget(count, self.mask_ratio, generator)
            lengths = poisson_spans(budget, self.poisson_lambda, generator)
            spans = lengths.ge(0).sum(1)
            slots = count - budget + spans
            scores = torch.rand(rows, int(slots.max()) + 1, generator=generator)
            scores.masked_fill_(torch.arange(scores.size(1)) >= slots[:, None], 2.0)
            holds = _ranks(scores) < spans[:, None]
            row, slot = holds.nonzero(as_tuple=True)
            which = holds.long().cumsum(1)[row, slot] - 1
            length = lengths[row, which]
            first = slot - which + (lengths.clamp_min(0).cumsum(1) - lengths.clamp_min(0)
                                    )[row, which]  # free tokens before + earlier spans' tokens
            empty = length.eq(0)
            inserted.index_put_((row[empty], first[empty]), torch.ones_like(first[empty]),
                                accumulate=True)  # at `count`: before eos
            span_start[row[~empty], first[~empty]] = True
            edges = torch.zeros(rows, width + 1, dtype=torch.long)
            edges.index_put_((row, first), torch.ones_like(first), accumulate=True)
            edges.index_put_((row, first + length), -torch.ones_like(first), accumulate=True)
            in_span = edges.cumsum(1)[:, :-1] > 0
        deleted = in_span & ~span_start
        if self.delete_ratio > 0:
            free = text & ~in_span
            budget = torch.minimum(_budget(count, self.delete_ratio, generator), free.sum(1))
            deleted |= _choose(free, budget, generator)
        emitted = src.ne(self.pad_id) & ~deleted
        sizes = inserted + emitted.long()
        row_length = sizes.sum(1)
        out = torch.full((rows, int(row_length.max())), self.pad_id, dtype=src.dtype)
        out.masked_fill_(torch.arange(out.size(1)) < row_length[:, None], self.mask_id)
        target = (sizes.cumsum(1) - 1)[emitted]  # inserted masks come first at a position
        row_of = torch.arange(rows)[:, None].expand_as(src)[emitted]
        out[row_of, target] = src.masked_fill(span_start, self.mask_id)[emitted]
        return out


def _budget(count: torch.Tensor, rate: float, generator: Optional[torch.Generator]
            ) -> torch.Tensor:
    """`floor(rate·count + u)` per row: the rate exactly in expectation, never over count."""
    draw = (count * rate + torch.rand(count.shape, generator=generator)).floor().long()
    return torch.minimum(count, draw)


def _choose(eligible: torch.Tensor, budget: torch.Tensor,
            generator: Optional[torch.Generator]) -> torch.Tensor:
    """(B,N) bool: exactly `budget` eligible entries of each row, uniformly."""
    scores = torch.rand(eligible.shape, generator=generator).masked_fill(~eligible, 2.0)
    return eligible & (_ranks(scores) < budget[:, None])


def noiser_for(tokenizer, options: dict, max_length: Optional[int] = None,
               config_path: str = "task") -> TextNoiser:
    """The noiser of a task's options over `tokenizer`, which must have a `<mask>` symbol."""
    mask_id = getattr(tokenizer, "mask_id", None)
    if mask_id is None:
        model = getattr(tokenizer, "model", type(tokenizer).__name__)
        raise ConfigError(f"{config_path}.tokenizer: {model} has no <mask> symbol, which "
                          f"denoising pre-training needs; rebuild it with `paragen "
                          f"build-tokenizer --mask-token --input ... --output ...` and fine-tune "
                          f"with that same tokenizer")
    special = list(getattr(tokenizer, "special_ids", None) or [
        tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id])
    return TextNoiser(vocab_size=tokenizer.vocab_size, mask_id=mask_id, eos_id=tokenizer.eos_id,
                      pad_id=tokenizer.pad_id, special_ids=special,
                      pieces=getattr(tokenizer, "pieces", None), max_length=max_length,
                      config_path=config_path, **options)
