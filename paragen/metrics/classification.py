"""Label metrics: accuracy, macro-F1 and Matthews correlation, computed in torch.

Hypotheses and references are label indices (tensors or lists of ints), one per example, in
the same order. Scores are percentages (×100), as GLUE reports them and as BLEU is reported
here, so `valid.accuracy 82.3` and `valid.bleu 38.9` read alike. All three come from one
confusion matrix, built with a single `bincount`, so a 100k-example split costs no Python loop.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import torch

from paragen.metrics.text import Metric
from paragen.registry import register_metric


def as_pairs(hypotheses: Sequence, references: Sequence, dtype: torch.dtype
             ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Both sides as 1-D tensors of `dtype`; different lengths or no examples are errors."""
    hyp = torch.as_tensor(hypotheses, dtype=dtype).reshape(-1)
    ref = torch.as_tensor(references, dtype=dtype).reshape(-1)
    if hyp.numel() != ref.numel():
        raise ValueError(f"{hyp.numel()} predictions but {ref.numel()} references")
    if hyp.numel() == 0:
        raise ValueError("no examples to score")
    return hyp, ref


def confusion_matrix(hypotheses: Sequence, references: Sequence) -> torch.Tensor:
    """(C,C) counts, rows = reference class, columns = predicted class, C = largest index + 1."""
    hyp, ref = as_pairs(hypotheses, references, torch.long)
    if min(int(hyp.min()), int(ref.min())) < 0:
        raise ValueError("label indices must be ≥ 0")
    classes = int(max(hyp.max(), ref.max())) + 1
    return torch.bincount(ref * classes + hyp, minlength=classes * classes).view(classes, classes)


@register_metric
class Accuracy(Metric):
    """Share of examples whose predicted label is the reference label."""

    name = "accuracy"

    def compute(self, hypotheses: Sequence, references: Sequence) -> Tuple[float, str]:
        hyp, ref = as_pairs(hypotheses, references, torch.long)
        return 100.0 * hyp.eq(ref).double().mean().item(), f"accuracy|n:{ref.numel()}"


@register_metric
class MacroF1(Metric):
    """Unweighted mean of per-class F1 over the classes that occur in the references or the
    predictions (scikit-learn's `average="macro"`). A class predicted but never right, or
    present but never predicted, scores 0; one class always predicted correctly scores 100."""

    name = "macro_f1"

    def compute(self, hypotheses: Sequence, references: Sequence) -> Tuple[float, str]:
        matrix = confusion_matrix(hypotheses, references).double()
        true_positive = matrix.diagonal()
        predicted, actual = matrix.sum(0), matrix.sum(1)
        seen = (predicted + actual) > 0
        # F1 = 2TP / (2TP + FP + FN) = 2TP / (predicted + actual); seen classes only.
        f1 = 2 * true_positive[seen] / (predicted[seen] + actual[seen])
        return 100.0 * f1.mean().item(), f"macro_f1|classes:{int(seen.sum())}|n:{int(matrix.sum())}"


@register_metric
class MatthewsCorrelation(Metric):
    """Matthews correlation (Gorodkin's multi-class form, as scikit-learn), ×100: +100 perfect,
    0 no better than chance, -100 always wrong (binary). When the predictions or the references
    hold a single class the correlation is undefined and scored 0, as scikit-learn does."""

    name = "mcc"

    def compute(self, hypotheses: Sequence, references: Sequence) -> Tuple[float, str]:
        matrix = confusion_matrix(hypotheses, references).double()
        total, correct = matrix.sum(), matrix.diagonal().sum()
        predicted, actual = matrix.sum(0), matrix.sum(1)
        covariance = correct * total - predicted @ actual
        spread = (total ** 2 - predicted @ predicted) * (total ** 2 - actual @ actual)
        score = 0.0 if spread == 0 else (covariance / spread.sqrt()).item()
        return 100.0 * score, f"mcc|n:{int(total)}"
