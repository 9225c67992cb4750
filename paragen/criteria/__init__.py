"""Criteria: model + batch → (loss, logging numbers). Registered with `@register_criterion`."""
from paragen.criteria.cross_entropy import LabelSmoothedCrossEntropy
from paragen.criteria.glancing import GlancingCrossEntropy
from paragen.criteria.masked_lm import MaskedLMCrossEntropy
from paragen.criteria.sentence import ClassificationCrossEntropy, MeanSquaredError
from paragen.criteria.span import SpanCrossEntropy

__all__ = ["ClassificationCrossEntropy", "GlancingCrossEntropy", "LabelSmoothedCrossEntropy",
           "MaskedLMCrossEntropy", "MeanSquaredError", "SpanCrossEntropy"]
