"""Criteria: model + batch → (loss, logging numbers). Registered with `@register_criterion`."""
from paragen.criteria.crf import CRFLoss
from paragen.criteria.dag import DAGLoss
from paragen.criteria.cross_entropy import LabelSmoothedCrossEntropy
from paragen.criteria.glancing import GlancingCrossEntropy, GlancingCTC, NATCrossEntropy
from paragen.criteria.masked_lm import MaskedLMCrossEntropy
from paragen.criteria.sentence import ClassificationCrossEntropy, MeanSquaredError
from paragen.criteria.span import SpanCrossEntropy
from paragen.registry import register_criterion

__all__ = ["CRFLoss", "ClassificationCrossEntropy", "DAGLoss", "GlancingCTC",
           "GlancingCrossEntropy", "LabelSmoothedCrossEntropy", "MaskedLMCrossEntropy",
           "MeanSquaredError", "NATCrossEntropy", "SpanCrossEntropy", "register_criterion"]
