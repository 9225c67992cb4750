"""Sentence (pair) regression, STS-B style: one real value per row, squared-error loss,
Pearson and Spearman correlation (in torch). Everything else is the classification task's
machinery (`SentencePredictionTask`); the model is the same `SequenceClassifier` with one
output."""
from __future__ import annotations

import math
from typing import Any, Callable, Dict, List

import torch

from paragen.errors import ConfigError, DataError
from paragen.registry import register_task
from paragen.tasks.sentence import SentencePredictionTask


@register_task
class SequenceRegressionTask(SentencePredictionTask):
    output_field = "value"
    default_criterion = {"class": "MeanSquaredError"}
    default_metrics = {"pearson": {"class": "Pearson"}, "spearman": {"class": "Spearman"}}
    num_outputs = 1

    def prepare_targets(self, raw: Dict[str, Dict[str, Any]]) -> None:
        if self.labels is not None:
            raise ConfigError("task.labels: a regression task predicts values, not labels")

    def encode_targets(self, raw: List[str], where: Callable[[int], str]) -> torch.Tensor:
        values = []
        for row, text in enumerate(raw):
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise DataError(f"{where(row)}: target {text!r} is not a finite number")
            values.append(value)
        return torch.tensor(values, dtype=torch.float32)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return (outputs.squeeze(-1) - targets).pow(2).mean().item()

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.squeeze(-1)

    def render(self, outputs: torch.Tensor) -> List[Dict[str, Any]]:
        return [{"value": round(value, 6)} for value in outputs.squeeze(-1).tolist()]
