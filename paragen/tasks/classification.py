"""Sentence (pair) classification, GLUE style: SST-2, CoLA, MNLI, QQP ...

The label ↔ index map is fixed once, when training starts, and stored in the model folder (in
the config of every checkpoint, as `task.labels`), then reused by evaluate, generate and
serve. ParaGen rebuilt it from the order labels appeared in the data, so evaluating a
re-ordered file silently permuted the labels. Here an explicit `task.labels` list is used as
given; otherwise the train split's labels are sorted (numerically when all are integers). A
label the model does not know is an error naming file and line, at training and evaluation.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List

import torch
import torch.nn.functional as F

from paragen.errors import ConfigError, DataError
from paragen.registry import register_task
from paragen.tasks.sentence import SentencePredictionTask

logger = logging.getLogger("paragen")


def sorted_labels(labels) -> List[str]:
    """Distinct labels in a stable order: by value when all are integers ('2' before '10')."""
    distinct = set(labels)
    try:
        return sorted(distinct, key=int)
    except ValueError:
        return sorted(distinct)


@register_task
class SequenceClassificationTask(SentencePredictionTask):
    output_field = "label"
    default_criterion = {"class": "ClassificationCrossEntropy"}
    default_metrics = {"accuracy": {"class": "Accuracy"}, "macro_f1": {"class": "MacroF1"},
                       "mcc": {"class": "MatthewsCorrelation"}}

    def prepare_targets(self, raw: Dict[str, Dict[str, Any]]) -> None:
        """Fix the label list: the config's, else (training) the train split's, sorted; it is
        written into the config that every checkpoint stores."""
        if self.labels is None:
            if self.mode != "train" or "train" not in raw:
                raise ConfigError("task.labels: no label list; a model folder stores the one "
                                  "it was trained with (was this model trained by paragen?)")
            self.labels = sorted_labels(raw["train"]["targets"])
            logger.info("labels (from the train split, sorted): %s", ", ".join(self.labels))
        if len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"task.labels: a label is listed twice ({self.labels})")
        if len(self.labels) < 2:
            where = raw["train"]["where"](0).rsplit(":", 1)[0] if "train" in raw else "task.labels"
            raise DataError(f"{where}: only one label ({', '.join(self.labels)}); a classifier "
                            f"needs two or more (list them in task.labels)")
        self.config["task"]["labels"] = list(self.labels)
        self.num_outputs = len(self.labels)

    def encode_targets(self, raw: List[str], where: Callable[[int], str]) -> torch.Tensor:
        index = {label: i for i, label in enumerate(self.labels)}
        targets = torch.tensor([index.get(label, -1) for label in raw], dtype=torch.long)
        unknown = (targets < 0).nonzero()
        if len(unknown):
            row = int(unknown[0])
            raise DataError(f"{where(row)}: label {raw[row]!r} is not one of the model's labels "
                            f"({', '.join(self.labels)}); {len(unknown)} such row(s)")
        return targets

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        return F.cross_entropy(outputs, targets).item()

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.argmax(-1)

    def render(self, outputs: torch.Tensor) -> List[Dict[str, Any]]:
        """`{"label": best, "probabilities": {label: p, ...}}` per row, labels in index order."""
        probabilities = outputs.double().softmax(-1)
        best = probabilities.argmax(-1).tolist()
        rounded = probabilities.round(decimals=6).tolist()
        return [{"label": self.labels[b], "probabilities": dict(zip(self.labels, p))}
                for b, p in zip(best, rounded)]

    def describe(self) -> Dict[str, Any]:
        return {**super().describe(), "labels": self.labels}
