"""Criteria: model + batch → (loss, logging numbers). Registered with `@register_criterion`."""
from paragen.criteria.cross_entropy import LabelSmoothedCrossEntropy

__all__ = ["LabelSmoothedCrossEntropy"]
