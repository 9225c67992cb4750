"""sacreBLEU's BLEU and chrF on detokenized, cased text, with their reproducibility signatures."""
from __future__ import annotations

from typing import List, Tuple

from paragen.registry import register_metric


class Metric:
    """`compute(hypotheses, references) -> (score, signature)`; higher is better."""

    name = "metric"

    def compute(self, hypotheses: List[str], references: List[str]) -> Tuple[float, str]:
        raise NotImplementedError


@register_metric
class BLEU(Metric):
    name = "bleu"

    def __init__(self, tokenize: str = "13a", lowercase: bool = False):
        from sacrebleu.metrics import BLEU as SacreBLEU  # lazy: sacrebleu imports regex tables

        self._bleu = SacreBLEU(tokenize=tokenize, lowercase=lowercase)

    def compute(self, hypotheses: List[str], references: List[str]) -> Tuple[float, str]:
        score = self._bleu.corpus_score(hypotheses, [references])
        return score.score, str(self._bleu.get_signature())


@register_metric
class ChrF(Metric):
    name = "chrf"

    def __init__(self, word_order: int = 0):
        from sacrebleu.metrics import CHRF

        self._chrf = CHRF(word_order=word_order)

    def compute(self, hypotheses: List[str], references: List[str]) -> Tuple[float, str]:
        score = self._chrf.corpus_score(hypotheses, [references])
        return score.score, str(self._chrf.get_signature())
