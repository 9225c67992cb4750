"""sacreBLEU's BLEU and chrF on detokenized, cased text, with their reproducibility signatures.

A reference is one string, or a list of strings for several references of one hypothesis
(multi-reference data such as SciTLDR); rows may have different numbers of references.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

Reference = Union[str, Sequence[str]]

from paragen.registry import register_metric


class Metric:
    """`compute(hypotheses, references) -> (score, signature)`; higher is better."""

    name = "metric"

    def compute(self, hypotheses: List[str], references: List[Reference]) -> Tuple[float, str]:
        raise NotImplementedError


def reference_lists(references: Sequence[Reference]) -> List[List[str]]:
    """Each row's references as a list (a string is a row's only reference)."""
    rows = [[ref] if isinstance(ref, str) else list(ref) for ref in references]
    empty = next((i for i, row in enumerate(rows) if not row), None)
    if empty is not None:
        raise ValueError(f"reference row {empty + 1} is an empty list")
    return rows


def reference_streams(references: Sequence[Reference]) -> List[List[Optional[str]]]:
    """sacreBLEU's layout: stream k holds every row's k-th reference, None where a row has
    fewer (sacreBLEU skips those)."""
    rows = reference_lists(references)
    width = max((len(row) for row in rows), default=1)
    return [[row[k] if k < len(row) else None for row in rows] for k in range(width)]


@register_metric
class BLEU(Metric):
    name = "bleu"

    def __init__(self, tokenize: str = "13a", lowercase: bool = False):
        from sacrebleu.metrics import BLEU as SacreBLEU  # lazy: sacrebleu imports regex tables

        self._bleu = SacreBLEU(tokenize=tokenize, lowercase=lowercase)

    def compute(self, hypotheses: List[str], references: List[Reference]) -> Tuple[float, str]:
        score = self._bleu.corpus_score(hypotheses, reference_streams(references))
        return score.score, str(self._bleu.get_signature())


@register_metric
class ChrF(Metric):
    name = "chrf"

    def __init__(self, word_order: int = 0):
        from sacrebleu.metrics import CHRF

        self._chrf = CHRF(word_order=word_order)

    def compute(self, hypotheses: List[str], references: List[Reference]) -> Tuple[float, str]:
        score = self._chrf.corpus_score(hypotheses, reference_streams(references))
        return score.score, str(self._chrf.get_signature())
