"""ROUGE-1, ROUGE-2 and ROUGE-L F-measure (×100), as Google's `rouge-score` package computes it
(the `summarization` extra).

Each document is scored against its best reference: with several references (SciTLDR gives
3–4 TLDRs per test paper), the reference with the highest F-measure counts, as the SciTLDR
paper reports; the corpus score is the mean over documents. Tokens are `rouge-score`'s own
(lowercased, non-alphanumerics as separators) and stemmed with Porter's stemmer by default,
the setting most summarization papers report. One metric entry per variant, so each is a
separate score (`valid.rouge1`, `valid.rougeL`) the trainer can assess checkpoints by.
"""
from __future__ import annotations

from typing import List, Literal, Sequence, Tuple

from paragen.env import import_extra
from paragen.metrics.text import Metric, Reference, reference_lists
from paragen.registry import register_metric


@register_metric
class Rouge(Metric):
    """`variant`: rouge1 (unigrams), rouge2 (bigrams) or rougeL (longest common subsequence)."""

    def __init__(self, variant: Literal["rouge1", "rouge2", "rougeL"] = "rougeL",
                 stemming: bool = True):
        rouge_scorer = import_extra("rouge_score.rouge_scorer", "summarization",
                                    "the Rouge metric")
        self.variant, self.stemming = variant, stemming
        self.name = variant
        self._scorer = rouge_scorer.RougeScorer([variant], use_stemmer=stemming)

    def compute(self, hypotheses: List[str], references: Sequence[Reference]
                ) -> Tuple[float, str]:
        rows = reference_lists(references)
        if len(rows) != len(hypotheses):
            raise ValueError(f"{len(hypotheses)} hypotheses but {len(rows)} reference rows")
        if not rows:
            raise ValueError("no documents to score")
        best = [max(self._scorer.score(reference, hypothesis)[self.variant].fmeasure
                    for reference in row) for hypothesis, row in zip(hypotheses, rows)]
        most = max(len(row) for row in rows)
        signature = (f"rouge-score|{self.variant}|F|stem:{'yes' if self.stemming else 'no'}|"
                     f"refs:{'best of ' + str(most) if most > 1 else '1'}|n:{len(rows)}")
        return 100.0 * sum(best) / len(best), signature
