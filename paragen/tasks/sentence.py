"""Sentence-level prediction: one or two text columns in, one prediction per row out.

    config ─→ SentencePredictionTask.build()
                ├ tokenizer               text ⇄ ids
                ├ datasets → columns      text column(s) + target column (e.g. TsvDataset)
                ├ targets                 label indices (classification) or values (regression)
                ├ samples                 [bos] a [eos] (b [eos]), packed in one flat id tensor
                ├ dataloaders             index batches → padded ids (+ segment ids), by gather
                ├ model, criterion        SequenceClassifier + cross-entropy or squared error
                └ evaluator (metrics)     accuracy, macro-F1, MCC / Pearson, Spearman
            task.run() → trainer.train(task) or task.evaluate();  task.predict(lines)

The first position (bos) is what `pooling: cls` reads. A pair is joined with eos as the
separator (RoBERTa) and, with `pair_encoding: segments`, also gets segment ids 0/1 (BERT).
Subclasses say what a target is: `SequenceClassificationTask`, `SequenceRegressionTask`.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Literal, Optional, Sequence, Union

import torch

from paragen.errors import ConfigError, InputError
from paragen.interfaces import ColumnDataset
from paragen.registry import build
from paragen.tasks.common import (build_loader, build_training, check_splits, gather_rows,
                                  pack_rows, place_model, report_scores, run_task,
                                  test_split_like_valid)
from paragen.tokenizers import build_tokenizers

logger = logging.getLogger("paragen")


class SentencePredictionTask:
    """What classification and regression share; subclasses define the targets.

    Subclass hooks: `num_outputs`, `prepare_targets(raw_by_split)` (e.g. fix the label set),
    `encode_targets(raw, where)`, `loss(outputs, targets)`, `predictions(outputs)` (what the
    metrics score), `render(outputs)` (one dict per row for `predict`), `output_field`
    (the key `generate` prints), `default_criterion`, `default_metrics`.
    """

    renamed_keys = {"label_name": "label", "maxlen": "max_length"}  # ParaGen's spellings
    output_field = "label"
    default_criterion: Dict[str, Any] = {}
    default_metrics: Dict[str, Dict[str, Any]] = {}

    def __init__(self, tokenizer: Dict[str, Any], model: Dict[str, Any],
                 text: Union[str, List[str]] = "sentence", label: str = "label",
                 labels: Optional[List[Union[str, int]]] = None,
                 pair_encoding: Literal["separator", "segments"] = "separator",
                 data: Dict[str, Dict[str, Any]] = None, dataloader: Dict[str, Any] = None,
                 criterion: Dict[str, Any] = None, trainer: Dict[str, Any] = None,
                 evaluator: Dict[str, Any] = None,
                 mode: Literal["train", "evaluate", "infer"] = "train", max_length: int = 256,
                 output_dir: Optional[str] = None, *, env, config: Dict[str, Any],
                 base_dir: str = "."):
        self.text = [text] if isinstance(text, str) else list(text)
        if len(self.text) not in (1, 2) or len(set(self.text)) != len(self.text):
            raise ConfigError(f"task.text: one text column or two different ones (a sentence "
                              f"pair), got {text!r}")
        if max_length < 3 + len(self.text):
            raise ConfigError(f"task.max_length: {max_length} leaves no room for text")
        self.label, self.mode, self.max_length, self.env = label, mode, max_length, env
        self.labels = None if labels is None else [str(name) for name in labels]
        self.segmented = pair_encoding == "segments" and len(self.text) == 2
        self.config, self.base_dir, self.output_dir = config, base_dir, output_dir
        self.sections = {"tokenizer": tokenizer, "model": model, "data": data or {},
                         "dataloader": dataloader or {}, "criterion": criterion,
                         "trainer": trainer, "evaluator": evaluator}

    # ------------------------------------------------------------------ build
    def build(self) -> "SentencePredictionTask":
        self.tokenizer, _ = build_tokenizers(self.sections["tokenizer"], "text", "text",
                                             self.base_dir)
        raw = {} if self.mode == "infer" else {
            name: self._read_split(name, cfg) for name, cfg in self.sections["data"].items()}
        if self.mode != "infer":
            check_splits({name: len(split["targets"]) for name, split in raw.items()}, self.mode)
        self.prepare_targets(raw)
        self.model = build("model", self.sections["model"], "task.model",
                           vocab_size=self.tokenizer.vocab_size, num_outputs=self.num_outputs,
                           pad_id=self.tokenizer.pad_id,
                           unk_id=getattr(self.tokenizer, "unk_id", None),
                           num_segments=2 if self.segmented else 0)
        place_model(self.model, self.env, self.mode)
        if self.mode == "infer":
            return self
        self.splits = {name: {**self.encode(split["texts"], split=name),
                              "targets": self.encode_targets(split["targets"], split["where"])}
                       for name, split in raw.items()}
        self.loaders = {name: self._build_loader(name, split)
                        for name, split in self.splits.items()}
        self.evaluator = build("evaluator", self.sections["evaluator"] or {
            "class": "Evaluator", "metric": self.default_metrics, "log_examples": 0},
            "task.evaluator")
        if self.mode == "train":
            build_training(self, self.default_criterion, next(iter(self.evaluator.metrics),
                                                              "loss"))
        return self

    # ------------------------------------------------------------------ data
    def _read_split(self, name: str, cfg: Dict[str, Any]) -> Dict[str, Any]:
        """The split's text column(s) and raw target strings, and where each row came from."""
        dataset = build("dataset", cfg, f"task.data.{name}")
        columns = [*self.text, self.label]
        if len(dataset) and not isinstance(dataset[0], dict):
            raise ConfigError(f"task.data.{name}.class: {type(dataset).__name__} gives plain "
                              f"lines; a split needs the columns {columns} (TsvDataset, "
                              f"JsonlDataset)")
        if isinstance(dataset, ColumnDataset):
            values = [dataset.lines(column) for column in columns]
        else:
            try:
                values = [[sample[column] for sample in dataset] for column in columns]
            except (KeyError, TypeError):
                raise ConfigError(f"task.data.{name}: {type(dataset).__name__} rows lack one of "
                                  f"the columns {columns} (task.text, task.label)") from None
        location = getattr(dataset, "location", None)
        return {"texts": values[:-1], "targets": [str(value) for value in values[-1]],
                "where": location or (lambda i: f"task.data.{name}, row {i + 1}")}

    def encode(self, texts: List[List[str]], split: str = "input") -> Dict[str, Any]:
        """Rows as `[bos] a [eos]` or `[bos] a [eos] b [eos]`, at most max_length ids (a pair
        is cut longest side first), packed into one flat tensor with offsets and lengths."""
        bos, eos = self.tokenizer.bos_id, self.tokenizer.eos_id
        sides = [self.tokenizer.encode_batch(column) for column in texts]
        if len(sides) == 1:
            limit = self.max_length - 2
            truncated = sum(len(ids) > limit for ids in sides[0])
            rows = [[bos] + ids[:limit] + [eos] for ids in sides[0]]
            first = None
        else:
            budget = self.max_length - 3
            pairs = [_cut_pair(a, b, budget) for a, b in zip(*sides)]
            truncated = sum(len(a) + len(b) > budget for a, b in zip(*sides))
            rows = [[bos] + a + [eos] + b + [eos] for a, b in pairs]
            first = torch.tensor([len(a) + 2 for a, _ in pairs], dtype=torch.long)
        if truncated:
            logger.warning("%s: %d row(s) longer than max_length %d tokens were truncated",
                           split, truncated, self.max_length)
        return {**pack_rows(rows), "first": first}

    def collate(self, indices: List[int], split: Dict[str, Any]) -> Dict[str, Any]:
        """Padded (B,S) ids gathered from the flat tensor in one indexing operation."""
        ids = torch.tensor(indices, dtype=torch.long)
        batch = {"ids": ids, "ntokens": len(indices),
                 "src": gather_rows(split, ids, self.tokenizer.pad_id)}
        if self.segmented:
            positions = torch.arange(batch["src"].size(1))
            inside = positions < split["lengths"][ids, None]
            batch["segments"] = (positions >= split["first"][ids, None]).long() * inside
        if split.get("targets") is not None:
            batch["target"] = split["targets"][ids]
        return batch

    def _build_loader(self, name: str, split: Dict[str, Any]):
        return build_loader(name, self.sections["dataloader"], split["lengths"].numpy(),
                            lambda indices: self.collate(indices, split))

    # ------------------------------------------------------------------ run
    def run(self) -> Dict[str, Any]:
        return run_task(self)

    def outputs(self, name: str) -> torch.Tensor:
        """(N, num_outputs) float model outputs for split `name`, in the split's row order."""
        return self._run_model(self.splits[name], self.loaders[name])

    @torch.no_grad()
    def _run_model(self, split: Dict[str, Any], loader) -> torch.Tensor:
        result = torch.zeros(len(split["lengths"]), self.num_outputs)
        was_training = self.model.training
        self.model.eval()
        with self.env.autocast():
            for batch in loader.epoch_batches(0):
                segments = batch.get("segments")
                logits = self.model(batch["src"].to(self.env.device),
                                    None if segments is None else segments.to(self.env.device)
                                    )["logits"]
                result[batch["ids"]] = logits.float().cpu()
        self.model.train(was_training)
        return result

    def _eval_splits(self) -> List[str]:
        return [name for name in self.splits if name != "train"]

    def validate(self) -> Dict[str, float]:
        """Loss and metrics on every non-train split (`valid.loss`, `valid.accuracy`, ...)."""
        scores: Dict[str, float] = {}
        for name in self._eval_splits():
            outputs, targets = self.outputs(name), self.splits[name]["targets"]
            scores[f"{name}.loss"] = self.loss(outputs, targets)
            for metric, (value, _) in self.evaluator.score(self.predictions(outputs),
                                                           targets).items():
                scores[f"{name}.{metric}"] = value
        return scores

    def evaluate(self) -> Dict[str, Any]:
        results: Dict[str, Any] = {}
        for name in self._eval_splits():
            outputs = self.outputs(name)
            scores = self.evaluator.score(self.predictions(outputs), self.splits[name]["targets"])
            rendered = [str(row[self.output_field]) for row in self.render(outputs)]
            results.update(report_scores(name, scores, self.output_dir, rendered))
        return results

    def predict(self, lines: Sequence[str], first_line: int = 1) -> List[Dict[str, Any]]:
        """One dict per input line, in input order (`output_field` holds the answer). For a
        pair task each line holds the two texts separated by a tab."""
        texts = self.input_columns(lines, first_line)
        if not texts[0]:
            return []
        split = self.encode(texts)
        return self.render(self._run_model(split, self._build_loader("infer", split)))

    def input_columns(self, lines: Sequence[str], first_line: int) -> List[List[str]]:
        """Input lines as text columns: the lines themselves, or a pair's two tab-separated
        texts (an `InputError` names the first line that is not a pair)."""
        lines = list(lines)
        if len(self.text) == 1:
            return [lines]
        cells = [line.split("\t") for line in lines]
        bad = next((i for i, row in enumerate(cells) if len(row) != 2), None)
        if bad is not None:
            raise InputError(bad, f"expected two texts separated by a tab "
                                  f"({' and '.join(self.text)}), got {len(cells[bad])}",
                             first_line)
        return [list(column) for column in zip(*cells)] if cells else [[], []]

    # ------------------------------------------------------------------ serving
    plain_answers = False  # a label comes with its probabilities

    @property
    def max_input_tokens(self) -> int:
        """Text tokens one row can have before `encode` cuts it (bos, eos and a pair's
        separator take the rest of max_length)."""
        return self.max_length - 1 - len(self.text)

    def input_tokens(self, lines: Sequence[str], first_line: int = 1) -> List[int]:
        """Text tokens of each line (a pair: of both texts), counted as `encode` counts them."""
        sides = [self.tokenizer.encode_batch(column)
                 for column in self.input_columns(lines, first_line)]
        return [sum(len(ids) for ids in row) for row in zip(*sides)]

    def describe(self) -> Dict[str, Any]:
        return {"text": self.text, "output_field": self.output_field}

    @classmethod
    def input_data(cls, task_config: Dict[str, Any], input: str,
                   reference: Optional[str] = None) -> Dict[str, Any]:
        """`evaluate --input FILE`: a `test` split read like the stored validation split; the
        file holds its own labels, so a separate reference file has no place here."""
        if reference:
            raise ConfigError(f"--reference is for translation; {input} holds the targets "
                              f"itself, in its column {task_config.get('label', 'label')!r}")
        return test_split_like_valid(task_config, input, "TsvDataset")

    # ------------------------------------------------------------------ subclass hooks
    num_outputs: int

    def prepare_targets(self, raw: Dict[str, Dict[str, Any]]) -> None:
        """Called with every split's raw targets before the model is built."""

    def encode_targets(self, raw: List[str], where) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> float:
        raise NotImplementedError

    def predictions(self, outputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def render(self, outputs: torch.Tensor) -> List[Dict[str, Any]]:
        raise NotImplementedError


def _cut_pair(first: List[int], second: List[int], budget: int):
    """Trim the longer side first until both fit `budget` ids together (Hugging Face's
    `longest_first`): the shorter side keeps its length, or half the budget if it too is long."""
    if len(first) + len(second) <= budget:
        return first, second
    short = min(len(first), len(second), budget // 2)
    if len(first) <= len(second):
        return first[:short], second[:budget - short]
    return first[:budget - short], second[:short]
