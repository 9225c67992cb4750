"""Metrics: hypotheses + references → (score, signature). Registered with `@register_metric`.

Text metrics (BLEU, chrF, ROUGE) score detokenized strings against one reference or a list
of references per hypothesis; label and correlation metrics score tensors of label indices
or real values; SQuAD's exact match and F1 score answer strings against lists of gold answers.
"""
from paragen.metrics.classification import Accuracy, MacroF1, MatthewsCorrelation
from paragen.metrics.regression import Pearson, Spearman
from paragen.metrics.rouge import Rouge
from paragen.metrics.squad import ExactMatch, SquadF1
from paragen.metrics.text import BLEU, ChrF, Metric
from paragen.registry import register_metric

__all__ = ["Accuracy", "BLEU", "ChrF", "ExactMatch", "MacroF1", "MatthewsCorrelation", "Metric",
           "Pearson", "Rouge", "Spearman", "SquadF1", "register_metric"]
