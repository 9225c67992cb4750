"""Evaluators: generate over a data split and score the output with metrics."""
from paragen.evaluators.evaluator import Evaluator, generate_in_order
from paragen.registry import register_evaluator

__all__ = ["Evaluator", "generate_in_order", "register_evaluator"]
