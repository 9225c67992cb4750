"""Which tokens a masked language model must recover, and what it sees in their place.

    (B,S) ids ─ choose positions ─ replace ─→ input ids, (B,S) masked positions, (N,) targets
                 │ tokens: each sentence gets about rate · its tokens masks (at least one)
                 │ whole words: the same share of words, every piece of a chosen word
                 │ spans: the same count of tokens (words with whole_word) in SpanBERT's
                 │        contiguous spans, their lengths from a truncated geometric law
                 └ never an id that stands for no text: pad, bos, eos, unk, <mask>
    replace: `mask_token_prob` → <mask>, `random_token_prob` → a random real token, else kept
             (BERT's 80/10/10: the model cannot learn that only <mask> positions matter)

Counts are drawn per sentence with probabilistic rounding (`floor(rate·n + u)`), so the rate
is exact in expectation for any sentence length, as in fairseq; BERT's at-least-one rule keeps
every batch's loss defined. Words are chosen whatever their length, so the token rate is the
word rate in expectation. All of it runs on whole (B,S) tensors, in one pass.

Randomness comes from `generator`, or from torch's global generator when it is None: the
trainer saves and restores that one with every checkpoint, so a resumed run masks exactly as
an uninterrupted one would; validation passes a freshly seeded generator, so every validation
scores the same masks and its curve shows the model, not the draw.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch

from paragen.errors import ConfigError

WORD_START = "\u2581"  # SentencePiece's marker of a piece that begins a word


def truncated_geometric(mean: float, longest: int) -> torch.Tensor:
    """P(length = 1..longest) ∝ p(1-p)^(length-1), with p chosen so the mean is `mean`
    (SpanBERT: p = 0.2 over 1..10, a mean of 3.8). The mean falls from (longest+1)/2 at p→0
    to 1 at p = 1, so bisection finds p."""
    lengths = torch.arange(1, longest + 1, dtype=torch.float64)

    def law(p: float) -> torch.Tensor:
        weights = (1.0 - p) ** (lengths - 1)
        return weights / weights.sum()

    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        if float((law(middle) * lengths).sum()) > mean:
            low = middle
        else:
            high = middle
    return law((low + high) / 2).float()


class TokenMasker:
    """Masks (B,S) batches of `[bos] ids [eos]` rows padded with pad (see the module doc)."""

    def __init__(self, *, vocab_size: int, mask_id: int, special_ids: Sequence[int],
                 pieces: Optional[Sequence[str]] = None, mask_rate: float = 0.15,
                 mask_token_prob: float = 0.8, random_token_prob: float = 0.1,
                 whole_word: bool = False, span_masking: bool = False,
                 span_mean_length: float = 3.8, span_max_length: int = 10,
                 config_path: str = "task"):
        longest_mean = (span_max_length + 1) / 2
        checks = (("mask_rate", mask_rate, 0.0 < mask_rate <= 1.0, "in (0, 1]"),
                  ("mask_token_prob", mask_token_prob, 0.0 <= mask_token_prob <= 1.0,
                   "in [0, 1]"),
                  ("random_token_prob", random_token_prob,
                   0.0 <= random_token_prob <= 1.0 - mask_token_prob,
                   "in [0, 1 - mask_token_prob] (the rest is kept unchanged)"),
                  ("span_max_length", span_max_length, span_max_length >= 1, "≥ 1"),
                  ("span_mean_length", span_mean_length,
                   1.0 <= span_mean_length <= longest_mean,
                   f"in [1, (span_max_length + 1) / 2 = {longest_mean}]"))
        for key, value, ok, expected in checks:
            if not ok:
                raise ConfigError(f"{config_path}.{key}: must be {expected}, got {value}")
        if whole_word and pieces is None:
            raise ConfigError(f"{config_path}.whole_word: the tokenizer does not list its pieces,"
                              f" so word boundaries are unknown")
        self.mask_id, self.rate = mask_id, mask_rate
        self.mask_token_prob, self.random_token_prob = mask_token_prob, random_token_prob
        self.whole_word, self.span_masking = whole_word, span_masking
        special = torch.zeros(vocab_size, dtype=torch.bool)
        special[torch.tensor(sorted({*special_ids, mask_id}), dtype=torch.long)] = True
        self.maskable = ~special  # by id: what a masked position may hold, and be replaced by
        self.random_pool = self.maskable.nonzero().squeeze(1)
        # A special id starts a word of its own, so no word runs across bos or eos.
        self.word_start = None if pieces is None else torch.tensor(
            [piece.startswith(WORD_START) for piece in pieces], dtype=torch.bool) | special
        self.span_lengths = truncated_geometric(span_mean_length, span_max_length) \
            if span_masking else None

    def __call__(self, src: torch.Tensor, generator: Optional[torch.Generator] = None
                 ) -> Dict[str, torch.Tensor]:
        """{"src": ids with masks in, "masked": (B,S) bool, "target": (N,) original ids}."""
        maskable = self.maskable[src]
        if self.whole_word:
            starts = self.word_start[src] | ~maskable
            starts[:, 1:] |= ~maskable[:, :-1]  # a word never continues after bos
        else:
            starts = torch.ones_like(maskable)
        unit = starts.long().cumsum(1) - 1  # the word (or token) index of every position
        unit_start = starts & maskable
        count = unit_start.sum(1)
        budget = torch.minimum(count, (count * self.rate + torch.rand(
            count.shape, generator=generator)).floor().long().clamp_min(1))
        choose = self._spans if self.span_masking else self._units
        masked = choose(unit, unit_start, budget, generator) & maskable
        targets = src[masked]
        return {"src": src.masked_scatter(masked, self._replacements(targets, generator)),
                "masked": masked, "target": targets}

    def _units(self, unit: torch.Tensor, unit_start: torch.Tensor, budget: torch.Tensor,
               generator: Optional[torch.Generator]) -> torch.Tensor:
        """Exactly `budget` units of each row, uniformly: the lowest random scores win."""
        scores = torch.rand(unit.shape, generator=generator).masked_fill(~unit_start, 2.0)
        chosen_start = unit_start & (_ranks(scores) < budget[:, None])
        if not self.whole_word:
            return chosen_start
        rows, positions = chosen_start.nonzero(as_tuple=True)
        chosen_unit = torch.zeros_like(chosen_start)
        chosen_unit[rows, unit[rows, positions]] = True
        return chosen_unit.gather(1, unit)  # every piece of a chosen word

    def _spans(self, unit: torch.Tensor, unit_start: torch.Tensor, budget: torch.Tensor,
               generator: Optional[torch.Generator]) -> torch.Tensor:
        """SpanBERT's spans, placed in one pass: each row draws span lengths until they add
        up to its budget (the last one cut to fit), then scatters its spans among its free
        units uniformly, as k bars among the free units' stars: slot p_j of the j-th span
        among (free units + spans) slots puts p_j - j free units before it. Spans never
        overlap, so the budget is met exactly (in units: words with `whole_word`)."""
        rows, most = len(unit), int(budget.max())
        if most == 0:
            return torch.zeros_like(unit_start)
        lengths = torch.multinomial(self.span_lengths, rows * most, replacement=True,
                                    generator=generator).view(rows, most) + 1
        before = lengths.cumsum(1) - lengths  # units in the row's earlier spans
        lengths = torch.minimum(lengths, budget[:, None] - before)  # ≤ 0: beyond the budget
        spans = lengths.gt(0).sum(1)
        slots = unit_start.sum(1) - budget + spans
        scores = torch.rand(rows, int(slots.max()), generator=generator)
        scores.masked_fill_(torch.arange(scores.size(1)) >= slots[:, None], 2.0)
        holds_span = _ranks(scores) < spans[:, None]
        row, slot = holds_span.nonzero(as_tuple=True)  # row-major: slots ascending per row
        which = holds_span.long().cumsum(1)[row, slot] - 1
        first = slot - which + before[row, which]
        edges = torch.zeros(rows, unit.size(1) + 1, dtype=torch.long)
        edges.index_put_((row, first), torch.ones_like(first), accumulate=True)
        edges.index_put_((row, first + lengths[row, which]), -torch.ones_like(first),
                         accumulate=True)
        inside = edges.cumsum(1)[:, :-1] > 0  # by index among the row's maskable units
        index = (unit_start.long().cumsum(1) - 1).clamp_min(0)
        return inside.gather(1, index)

    def _replacements(self, targets: torch.Tensor, generator: Optional[torch.Generator]
                      ) -> torch.Tensor:
        """What the model sees at each masked position: <mask>, a random token, or the token."""
        draw = torch.rand(targets.shape, generator=generator)
        random_ids = self.random_pool[torch.randint(len(self.random_pool), targets.shape,
                                                    generator=generator)]
        shown = torch.where(draw < self.mask_token_prob + self.random_token_prob, random_ids,
                            targets)
        return shown.masked_fill(draw < self.mask_token_prob, self.mask_id)


def _ranks(scores: torch.Tensor) -> torch.Tensor:
    """(B,N) rank of every score within its row, 0 for the lowest."""
    order = scores.argsort(1)
    return torch.empty_like(order).scatter_(
        1, order, torch.arange(scores.size(1)).expand_as(order).contiguous())


def masker_for(tokenizer, options: Dict[str, object], config_path: str = "task") -> TokenMasker:
    """The masker of a task's options over `tokenizer`, which must have a `<mask>` symbol."""
    mask_id = getattr(tokenizer, "mask_id", None)
    if mask_id is None:
        model = getattr(tokenizer, "model", type(tokenizer).__name__)
        raise ConfigError(f"{config_path}.tokenizer: {model} has no <mask> symbol, which masked-"
                          f"LM pre-training needs; rebuild it with `paragen build-tokenizer "
                          f"--mask-token --input ... --output ...` (and fine-tune later models "
                          f"with that same tokenizer)")
    special: List[int] = list(getattr(tokenizer, "special_ids", None) or [
        tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id])
    return TokenMasker(vocab_size=tokenizer.vocab_size, mask_id=mask_id, special_ids=special,
                       pieces=getattr(tokenizer, "pieces", None), config_path=config_path,
                       **options)
