"""Exact match and F1 of extractive QA, exactly as the official SQuAD v1.1 `evaluate-v1.1.py`.

Hypotheses are answer strings, one per question; references are, per question, the list of
gold answer strings. Both sides are normalised (lowercase; punctuation removed; the articles
a/an/the removed as whole words; whitespace collapsed); a question scores the maximum over
its gold answers; F1 is over the bag of whitespace tokens. Scores are percentages, as the
official script prints them. Kept character for character with that script (its regular
expression, its `string.punctuation`, the order of the steps), because published SQuAD and
XQuAD numbers are only comparable under that exact normalisation.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Callable, Sequence, Tuple

from paragen.metrics.text import Metric
from paragen.registry import register_metric

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower text and remove punctuation, articles and extra whitespace (the official order:
    lower, punctuation, articles, whitespace)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match_score(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(predicted) & Counter(expected)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def _mean_best(score: Callable[[str, str], float], hypotheses: Sequence[str],
               references: Sequence[Sequence[str]]) -> float:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} predictions but {len(references)} references")
    if not hypotheses:
        raise ValueError("no examples to score")
    for golds in references:
        if isinstance(golds, str) or not golds:
            raise ValueError("each reference is a non-empty list of gold answers")
    total = sum(max(score(hyp, gold) for gold in golds)
                for hyp, golds in zip(hypotheses, references))
    return 100.0 * total / len(hypotheses)


@register_metric
class ExactMatch(Metric):
    """Share of questions whose normalised answer equals a normalised gold answer."""

    name = "exact_match"

    def compute(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]
                ) -> Tuple[float, str]:
        return (_mean_best(exact_match_score, hypotheses, references),
                f"squad-v1.1-em|n:{len(hypotheses)}")


@register_metric
class SquadF1(Metric):
    """Mean over questions of the best token-bag F1 against any gold answer."""

    name = "f1"

    def compute(self, hypotheses: Sequence[str], references: Sequence[Sequence[str]]
                ) -> Tuple[float, str]:
        return (_mean_best(f1_score, hypotheses, references),
                f"squad-v1.1-f1|n:{len(hypotheses)}")
