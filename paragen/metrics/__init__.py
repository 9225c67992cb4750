"""Metrics: hypotheses + references → (score, signature). Registered with `@register_metric`.

Text metrics (BLEU, chrF) score detokenized strings; label and correlation metrics score
tensors of label indices or real values.
"""
from paragen.metrics.classification import Accuracy, MacroF1, MatthewsCorrelation
from paragen.metrics.regression import Pearson, Spearman
from paragen.metrics.text import BLEU, ChrF, Metric

__all__ = ["Accuracy", "BLEU", "ChrF", "MacroF1", "MatthewsCorrelation", "Metric", "Pearson",
           "Spearman"]
