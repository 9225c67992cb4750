"""Metrics over detokenized hypotheses and references. Registered with `@register_metric`."""
from paragen.metrics.text import BLEU, ChrF, Metric

__all__ = ["BLEU", "ChrF", "Metric"]
