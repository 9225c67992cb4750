"""Evaluators: generate over a data split and score the output with metrics."""
from paragen.evaluators.evaluator import Evaluator, generate_in_order

__all__ = ["Evaluator", "generate_in_order"]
