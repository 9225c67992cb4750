"""Generate hypotheses for a split, restore input order, detokenize and score them."""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterable, List, Tuple

import torch

import paragen.metrics  # noqa: F401  (registers the metrics a config names)
from paragen.registry import build, register_evaluator

logger = logging.getLogger("paragen")


def generate_in_order(generator: Callable, batches: Iterable[Dict[str, Any]], num_samples: int,
                      decode: Callable[[List[List[int]]], List[str]], env) -> List[str]:
    """Hypotheses in input order, whatever order the (length-sorted) batches come in."""
    hypotheses: List[str] = [""] * num_samples
    was_training = generator.training
    generator.eval()
    with torch.inference_mode(), env.autocast():
        for batch in batches:
            tokens, _ = generator(batch["src"].to(env.device))
            for index, text in zip(batch["ids"].tolist(), decode(tokens.tolist())):
                hypotheses[index] = text
    generator.train(was_training)
    return hypotheses


@register_evaluator
class Evaluator:
    """The configured metrics (default BLEU + chrF) and how many examples to log."""

    def __init__(self, metric: Dict[str, Dict[str, Any]] = None, log_examples: int = 3):
        metric = metric or {"bleu": {"class": "BLEU"}, "chrf": {"class": "ChrF"}}
        self.metrics = {name: build("metric", cfg, f"task.evaluator.metric.{name}")
                        for name, cfg in metric.items()}
        self.log_examples = log_examples

    def score(self, hypotheses: List[str], references: List[str]) -> Dict[str, Tuple[float, str]]:
        for hyp, ref in list(zip(hypotheses, references))[:self.log_examples]:
            logger.info("hyp: %s | ref: %s", hyp, ref)
        return {name: metric.compute(hypotheses, references) for name, metric in self.metrics.items()}
