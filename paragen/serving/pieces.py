"""Cut a text that is too long for the model into pieces that fit (`--long-inputs split`).

The model reads at most `max_length - 1` source tokens (plus eos); the task's `encode` cuts
anything longer, so without this a long paragraph came back as a couple of words. The server
refuses such inputs by default (413); with `--long-inputs split` it translates them piece by
piece and joins the outputs with spaces instead.

Cuts go at the coarsest boundary that works: sentence ends first, then clause punctuation,
then whitespace, and only for a run with no boundary at all (a 2,000-character "word") in the
middle of the characters. Neighbouring parts that fit are merged again up to the budget, so a long
paragraph of short sentences becomes a few full-size pieces, not one model input per word;
the fragments of a part that had to be cut finer are not merged across its ends.
The pieces concatenate back to the original text (only the whitespace at their ends is
stripped). This is request-level work on one input; decoding itself stays batched.
"""
from __future__ import annotations

import re
from typing import Callable, List

CountTokens = Callable[[str], int]

# Boundaries, coarsest first; a cut goes right after the match (the whitespace stays behind).
BOUNDARIES = (
    re.compile(r"[.!?\u2026]+[\"'\u201d\u2019\u00bb)\]]*\s+|[\u3002\uff01\uff1f]+"),  # sentences
    re.compile(r"[,;:\u2013\u2014]\s+|[\uff0c\u3001\uff1b\uff1a]"),  # clauses
    re.compile(r"\s+"),  # words
)


def split_to_fit(text: str, count_tokens: CountTokens, limit: int) -> List[str]:
    """Non-empty, stripped pieces of `text`, each at most `limit` tokens by `count_tokens`
    (a single character that alone is longer, which no real tokenizer produces, stays whole)."""
    pieces = _split(text, count_tokens, limit, 0)
    return [piece.strip() for piece in pieces if piece.strip()]


def _cut(text: str, boundary: re.Pattern) -> List[str]:
    ends = [match.end() for match in boundary.finditer(text) if 0 < match.end() < len(text)]
    return [text[a:b] for a, b in zip([0] + ends, ends + [len(text)]) if a < b]


def _split(text: str, count_tokens: CountTokens, limit: int, level: int) -> List[str]:
    if count_tokens(text) <= limit:
        return [text]
    parts: List[str] = [text]
    while level < len(BOUNDARIES) and len(parts) < 2:
        parts = _cut(text, BOUNDARIES[level])
        level += 1
    if len(parts) < 2:  # no boundary left: halve the characters
        if len(text) < 2:
            return [text]
        parts = [text[:len(text) // 2], text[len(text) // 2:]]
    pieces: List[str] = []
    run: List[str] = []  # consecutive parts that fit whole: merged with each other only, so
    for part in parts:   # a piece never ends inside one sentence and goes on into the next
        if count_tokens(part) <= limit:
            run.append(part)
            continue
        pieces += _merge(run, count_tokens, limit) + _split(part, count_tokens, limit, level)
        run = []
    return pieces + _merge(run, count_tokens, limit)


def _merge(pieces: List[str], count_tokens: CountTokens, limit: int) -> List[str]:
    """Join neighbours greedily while the joined text still fits."""
    merged: List[str] = []
    for piece in pieces:
        if merged and count_tokens(merged[-1] + piece) <= limit:
            merged[-1] += piece
        else:
            merged.append(piece)
    return merged
