"""Sequence to sequence: a source text in, a target text out (summarization, translation...).

    config ─→ Seq2SeqTask.build()
                ├ tokenizer(s)            text ⇄ ids (one joint, or one per side)
                ├ datasets → rows         a source text and its reference(s) per row: JSON
                │                         lines (field paths; a list of sentences joined) or
                │                         line-aligned text files
                ├ encode                  source ids + eos (cut to max_source_length),
                │                         bos + target ids + eos (cut to max_target_length)
                ├ dataloaders             sampler batches → padded tensors
                ├ model, criterion        Seq2Seq (AR) or GLAT (NAT), trained by the trainer
                ├ generator (+ search)    used by validation, evaluate, generate
                └ evaluator (metrics)     BLEU / chrF / ROUGE on detokenized text, against
                                          every reference of a row
            task.run() → trainer.train(task) or task.evaluate()

References: a target field that holds a list (SciTLDR's several TLDRs per paper) gives its row
several references. Evaluation scores each hypothesis against all of them, by each metric's
own multi-reference rule (ROUGE: the best reference; BLEU: n-grams counted against all).
Training reads `train_references: each` (the default) as one (source, target) pair per
reference, as fairseq and the SciTLDR authors train; `first` keeps the first reference only.
The loss of an evaluation split is computed on each row's first reference.

Subclasses (translation; multilingual translation or denoising later) change a part through
small hooks: `read_split(name, cfg)` gives a split's rows (source texts, references per row),
`training_pairs` the pairs the train split learns from, `source_ids(texts)` and
`target_ids(texts)` tokenize one side (a tag token may be prepended there), and `encode` adds
eos/bos, cuts to the length budgets and counts every cut.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from paragen.datasets import field_references, field_texts, is_plain_name, parse_field_path
from paragen.datasets.binarized import WrappedIds
from paragen.errors import ConfigError
from paragen.evaluators import generate_in_order
from paragen.interfaces import ColumnDataset, StreamingDataset, TokenArrayDataset
from paragen.metrics.text import Reference
from paragen.registry import build, lookup, register_task
from paragen.tasks.common import (build_loader, check_splits, make_self_contained,
                                  place_model, report_scores, run_task)
from paragen.tokenizers import build_tokenizers

logger = logging.getLogger("paragen")


@register_task
class Seq2SeqTask:
    """`source_field` / `target_field`: field paths into JSON lines (`source`, `target[0]`),
    or the keys of line-aligned files (ParallelTextDataset); also the keys of per-side
    tokenizers. `join`: what goes between the sentences of a source given as a list.
    `max_source_length` / `max_target_length`: tokens kept per side, eos included."""

    output_field = "output"  # what `generate` prints of each `predict` result
    # The config keys behind each setting, for messages (TranslationTask spells them its way).
    config_keys = {"source": "source_field", "target": "target_field",
            "max_source": "max_source_length", "max_target": "max_target_length"}

    def __init__(self, tokenizer: Dict[str, Any], model: Dict[str, Any],
                 source_field: str = "source", target_field: str = "target", join: str = " ",
                 train_references: Literal["each", "first"] = "each",
                 max_source_length: int = 256, max_target_length: int = 256,
                 data: Dict[str, Dict[str, Any]] = None, dataloader: Dict[str, Any] = None,
                 criterion: Dict[str, Any] = None, trainer: Dict[str, Any] = None,
                 generator: Dict[str, Any] = None, evaluator: Dict[str, Any] = None,
                 mode: Literal["train", "evaluate", "infer"] = "train",
                 output_dir: Optional[str] = None, reverse_target: bool = False, *, env,
                 config: Dict[str, Any], base_dir: str = "."):
        for key, value in (("max_source", max_source_length), ("max_target", max_target_length)):
            if value < 2:
                raise ConfigError(f"task.{self.config_keys[key]}: must be ≥ 2 (a token and "
                                  f"eos), got {value}")
        self.src, self.tgt = source_field, target_field
        self.src_steps = parse_field_path(source_field, f"task.{self.config_keys['source']}")
        self.tgt_steps = parse_field_path(target_field, f"task.{self.config_keys['target']}")
        self.join, self.train_references = join, train_references
        self.max_source_length, self.max_target_length = max_source_length, max_target_length
        self.mode, self.env, self.config, self.base_dir = mode, env, config, base_dir
        self.sections = {"tokenizer": tokenizer, "model": model, "data": data or {},
                         "dataloader": dataloader or {}, "criterion": criterion,
                         "trainer": trainer, "generator": generator, "evaluator": evaluator}
        self.output_dir = output_dir
        # right-to-left models (a reranking feature): targets are learned and generated
        # reversed, and turned back before any text leaves the task
        self.reverse_target = reverse_target

    # ------------------------------------------------------------------ build
    def build(self) -> "Seq2SeqTask":
        self.src_tokenizer, self.tgt_tokenizer = build_tokenizers(
            self.sections["tokenizer"], self.src, self.tgt, self.base_dir)
        pad = self.tgt_tokenizer.pad_id
        self.model = build("model", self.sections["model"], "task.model",
                           src_vocab_size=self.src_tokenizer.vocab_size,
                           tgt_vocab_size=self.tgt_tokenizer.vocab_size, pad_id=pad)
        place_model(self.model, self.env, self.mode)
        self.generator = build("generator", self.sections["generator"] or {"class": "SequenceGenerator"},
                               "task.generator", model=self.model, bos_id=self.tgt_tokenizer.bos_id,
                               eos_id=self.tgt_tokenizer.eos_id, pad_id=pad)
        if self.mode == "infer":
            return self
        self.evaluator = build("evaluator", self.sections["evaluator"] or {"class": "Evaluator"},
                               "task.evaluator")
        self.splits = {name: self._load_split(name, cfg) for name, cfg in self.sections["data"].items()}
        check_splits({name: len(split["lengths"]) if "lengths" in split else None
                      for name, split in self.splits.items()}, self.mode)
        self.loaders = {name: self._build_loader(name) for name in self.splits}
        if self.mode == "train":
            self._build_training(pad)
        return self

    def _build_training(self, pad: int) -> None:
        """Criterion and trainer. Checkpoints are chosen by BLEU on the first evaluation split
        when the metrics include it (translation), else by the first metric (ROUGE-1 for
        summarization), unless the config says; the choice is stored with the checkpoints."""
        self.train_loader = self.loaders["train"]
        self.criterion = build("criterion", self.sections["criterion"] or
                               {"class": "LabelSmoothedCrossEntropy"}, "task.criterion",
                               pad_id=pad)
        if self.sections["trainer"] is None:
            raise ConfigError("task.trainer: training needs a trainer section")
        trainer = dict(self.sections["trainer"])
        if "assess_by" not in trainer:
            first = next((name for name in self.splits if name != "train"), "valid")
            metrics = list(self.evaluator.metrics)
            metric = "bleu" if "bleu" in metrics or not metrics else metrics[0]
            trainer["assess_by"] = self.config["task"]["trainer"]["assess_by"] = \
                f"{first}.{metric}"
        self.trainer = build("trainer", trainer, "task.trainer", env=self.env)
        make_self_contained(self.trainer.save_dir, self.config, self.base_dir)

    # ------------------------------------------------------------------ data
    def _load_split(self, name: str, cfg: Dict[str, Any]) -> Dict[str, Any]:
        """A split ready for its loader: rows read, paired (train) and encoded."""
        rows = self.read_split(name, cfg)
        if "references" not in rows:  # streamed or binarized: encoded as it is read
            return rows
        sources, references = rows["sources"], rows["references"]
        if name == "train":
            sources, targets = self.training_pairs(sources, references)
            scored: Sequence[Reference] = targets
        else:
            targets, scored = [_first(texts) for texts in references], references
        return {"sources": sources, "targets": scored,
                **self.encode(sources, targets, split=name)}

    def read_split(self, name: str, cfg: Dict[str, Any]) -> Dict[str, Any]:
        """`{"sources": [text per row], "references": [reference(s) per row]}`, a row's
        reference being a text or a list of alternative texts; a streamed split is
        `{"streaming": dataset}`, a binarized one its encoded ids."""
        dataset = build("dataset", cfg, f"task.data.{name}")
        plain = is_plain_name(self.src_steps) and is_plain_name(self.tgt_steps)
        if isinstance(dataset, StreamingDataset) and dataset.streaming:  # read lazily
            if name != "train":
                raise ConfigError(f"task.data.{name}: streaming datasets are for training; "
                                  f"use ParallelTextDataset for {name}")
            self._require_plain(plain, name, dataset)
            return {"streaming": dataset}
        if isinstance(dataset, TokenArrayDataset):  # binarized: ids stay on disk
            self._require_plain(plain, name, dataset)
            return self._binarized_split(dataset)
        if len(dataset) and not isinstance(dataset[0], dict):
            raise ConfigError(f"task.data.{name}.class: {type(dataset).__name__} gives plain "
                              f"lines; a {type(self).__name__} split needs '{self.src}' and "
                              f"'{self.tgt}' sides (ParallelTextDataset, JsonlDataset, ...)")
        if isinstance(dataset, ColumnDataset):  # column access: no per-sample dicts built
            self._require_plain(plain, name, dataset)
            try:
                sources, targets = dataset.lines(self.src), dataset.lines(self.tgt)
            except KeyError as err:
                keys = f"task.{self.config_keys['source']}, task.{self.config_keys['target']}"
                raise ConfigError(f"task.data.{name}: no {err} side in this split; it needs "
                                  f"'{self.src}' and '{self.tgt}' ({keys})") from None
            return {"sources": sources, "references": targets}
        location = getattr(dataset, "location", None) or (
            lambda i: f"task.data.{name}, row {i + 1}")
        return {"sources": field_texts(dataset, self.src, self.src_steps, self.join, location),
                "references": field_references(dataset, self.tgt, self.tgt_steps, location)}

    def _require_plain(self, plain: bool, name: str, dataset) -> None:
        if not plain:
            raise ConfigError(f"task.data.{name}.class: {type(dataset).__name__} has named "
                              f"sides, not JSON; the field paths '{self.src}' and '{self.tgt}' "
                              f"need JsonlDataset")

    def training_pairs(self, sources: List[str], references: Sequence[Reference]
                       ) -> Tuple[List[str], List[str]]:
        """(source, target) pairs to learn from: one per reference, or the first reference.
        Rows of one text each (line-aligned files, millions of them) pass through as they are."""
        if all(isinstance(texts, str) for texts in references):
            return sources, list(references)
        if self.train_references == "first":
            return sources, [_first(texts) for texts in references]
        pairs = [(source, text) for source, texts in zip(sources, references)
                 for text in ([texts] if isinstance(texts, str) else texts)]
        if len(pairs) > len(sources):
            logger.info("train: %d pairs from %d sources (one per reference; "
                        "train_references: first keeps one)", len(pairs), len(sources))
        return [source for source, _ in pairs], [target for _, target in pairs]

    def source_ids(self, texts: Sequence[str]) -> List[List[int]]:
        """Source token ids of each text, before eos and the length budget."""
        return self.src_tokenizer.encode_batch(list(texts))

    def target_ids(self, texts: Sequence[str]) -> List[List[int]]:
        """Target token ids of each text, before bos/eos and the length budget (reversed for a
        right-to-left model)."""
        ids = self.tgt_tokenizer.encode_batch(list(texts))
        return [row[::-1] for row in ids] if self.reverse_target else ids

    def encode(self, sources: List[str], targets: Optional[List[str]] = None,
               split: str = "input") -> Dict[str, Any]:
        """Token id tensors: source ids + eos; target bos + ids + eos (sliced by `collate`).
        Every side longer than its budget is cut, and the cuts are counted in the log."""
        eos, bos = self.src_tokenizer.eos_id, self.tgt_tokenizer.bos_id
        keep = self.max_source_length - 1
        src_ids = self.source_ids(sources)
        self._log_cuts(split, src_ids, keep, "source", "max_source")
        encoded = {"src": [torch.tensor(ids[:keep] + [eos]) for ids in src_ids]}
        lengths = [len(ids) for ids in encoded["src"]]
        if targets is not None:
            keep = self.max_target_length - 1
            tgt_ids = self.target_ids(targets)
            self._log_cuts(split, tgt_ids, keep, "target", "max_target")
            encoded["tgt"] = [torch.tensor([bos] + ids[:keep] + [self.tgt_tokenizer.eos_id])
                              for ids in tgt_ids]
            lengths = [max(s, len(t) - 1) for s, t in zip(lengths, encoded["tgt"])]
        encoded["lengths"] = lengths
        return encoded

    def _log_cuts(self, split: str, ids: List[List[int]], keep: int, side: str, key: str) -> None:
        cut = sum(len(row) > keep for row in ids)
        if cut:
            logger.warning("%s: %d of %d %s(s) longer than %s %d tokens were truncated", split,
                           cut, len(ids), side, self.config_keys[key], keep + 1)

    def _binarized_split(self, dataset) -> Dict[str, Any]:
        """Ids are memory-mapped and wrapped with eos/bos on access; no reference text, so
        such a split gives a loss (and is meant for training), not BLEU."""
        if self.reverse_target:
            raise ConfigError("task.reverse_target: binarized targets are stored left to right; "
                              "train a right-to-left model on text data")
        src, tgt = dataset.token_array(self.src), dataset.token_array(self.tgt)
        src.check_tokenizer(self.src_tokenizer, f"task.tokenizer ({self.src})")
        tgt.check_tokenizer(self.tgt_tokenizer, f"task.tokenizer ({self.tgt})")
        for array, key in ((src, "max_source"), (tgt, "max_target")):
            limit = getattr(self, f"{key}_length") - 1
            if array.lengths.max(initial=0) > limit:
                raise ConfigError(f"task.{self.config_keys[key]}: binarized data has sentences "
                                  f"longer than {limit} tokens; raise it or filter the corpus "
                                  f"(paragen clean)")
        eos, bos = self.src_tokenizer.eos_id, self.tgt_tokenizer.bos_id
        return {"src": WrappedIds(src, [], [eos]),
                "tgt": WrappedIds(tgt, [bos], [self.tgt_tokenizer.eos_id]),
                "lengths": np.maximum(src.lengths + 1, tgt.lengths + 1)}

    def collate(self, indices: List[int], split: Dict[str, Any]) -> Dict[str, Any]:
        pad = self.tgt_tokenizer.pad_id
        batch = {"ids": torch.tensor(indices),
                 "src": pad_sequence([split["src"][i] for i in indices], batch_first=True,
                                     padding_value=pad)}
        if "tgt" in split:
            tgt = pad_sequence([split["tgt"][i] for i in indices], batch_first=True,
                               padding_value=pad)
            batch["prev_tokens"], batch["target"] = tgt[:, :-1], tgt[:, 1:]
            batch["ntokens"] = int(batch["target"].ne(pad).sum())
        return batch

    def _build_loader(self, name: str, split: Optional[Dict[str, Any]] = None):
        split = split or self.splits[name]
        if "streaming" in split:
            return self._build_streaming_loader(name, split["streaming"])
        return build_loader(name, self.sections["dataloader"], split["lengths"],
                            lambda idx: self.collate(idx, split))

    def _build_streaming_loader(self, name: str, dataset):
        cfg = dict(self.sections["dataloader"].get(name) or {"class": "StreamingDataLoader"})
        path = f"task.dataloader.{name}"
        if not lookup("dataloader", cfg.get("class"), path).rank_local:
            raise ConfigError(f"{path}.class: a streaming dataset needs a streaming loader "
                              f"(StreamingDataLoader), got {cfg.get('class')}")
        return build("dataloader", cfg, path, dataset=dataset, encode=self.encode,
                     collate_fn=self.collate, src=self.src, tgt=self.tgt, rank=self.env.rank,
                     world_size=self.env.world_size)

    # ------------------------------------------------------------------ run
    def run(self) -> Dict[str, Any]:
        return run_task(self)

    @torch.no_grad()
    def validate(self) -> Dict[str, float]:
        """Loss and metrics on every non-train split (keys like `valid.loss`, `valid.bleu`)."""
        scores: Dict[str, float] = {}
        self.model.eval()
        for name, loader in self.loaders.items():
            if name == "train":
                continue
            total = tokens = 0.0
            with self.env.autocast():
                for batch in loader.epoch_batches(0):
                    batch = {k: v.to(self.env.device) if torch.is_tensor(v) else v
                             for k, v in batch.items()}
                    _, logs = self.criterion(self.model, batch)
                    total, tokens = total + logs["loss"], tokens + logs["ntokens"]
            scores[f"{name}.loss"] = total / max(tokens, 1)
            if "targets" not in self.splits[name]:
                continue
            for metric, (value, _) in self._score_split(name).items():
                scores[f"{name}.{metric}"] = value
        return scores

    def _score_split(self, name: str) -> Dict[str, Any]:
        split = self.splits[name]
        hypotheses = generate_in_order(self.generator, self.loaders[name].epoch_batches(0),
                                       len(split["lengths"]), self.decode, self.env)
        self.last_hypotheses = hypotheses
        return self.evaluator.score(hypotheses, split["targets"])

    def evaluate(self) -> Dict[str, Any]:
        results: Dict[str, Any] = {}
        for name in self.splits:
            if name == "train" or "targets" not in self.splits[name]:
                continue
            scores = self._score_split(name)
            results.update(report_scores(name, scores, self.output_dir, self.last_hypotheses))
        return results

    def decode(self, token_lists: List[List[int]]) -> List[str]:
        if self.reverse_target:
            token_lists = [list(tokens)[::-1] for tokens in token_lists]
        return self.tgt_tokenizer.decode_batch(token_lists)

    def translate(self, lines: List[str]) -> List[str]:
        """Outputs for raw source texts (any order, any lengths), in input order: the
        `Translator` contract that `distill` and `bench` drive."""
        split = self.encode(lines)
        loader = self._build_loader("infer", split)
        return generate_in_order(self.generator, loader.epoch_batches(0), len(lines), self.decode,
                                 self.env)

    def predict(self, lines: List[str], first_line: int = 1) -> List[Dict[str, str]]:
        """`generate`'s entry point, common to all tasks: `{output_field: text}` per line."""
        return [{self.output_field: text} for text in self.translate(lines)]

    # ------------------------------------------------------------------ serving
    plain_answers = True  # `{"outputs": ["A dog runs."]}`, the format clients rely on

    @property
    def max_input_tokens(self) -> int:
        """Source tokens `encode` keeps (eos takes the last of max_source_length)."""
        return self.max_source_length - 1

    def input_tokens(self, lines: List[str], first_line: int = 1) -> List[int]:
        return [len(ids) for ids in self.source_ids(lines)]

    def describe(self) -> Dict[str, Any]:
        return {"generator": type(self.generator).__name__, "source": self.src,
                "target": self.tgt}

    @classmethod
    def input_data(cls, task_config: Dict[str, Any], input: Optional[str],
                   reference: Optional[str]) -> Dict[str, Any]:
        """`evaluate --input SRC --reference REF`: a `test` split of the two line-aligned
        files; `evaluate --input test.jsonl`: JSON lines holding sources and references under
        the stored field paths (every reference of a row counts)."""
        source = task_config.get(cls.config_keys["source"], "source")
        target = task_config.get(cls.config_keys["target"], "target")
        if input and reference:
            return {"test": {"class": "ParallelTextDataset",
                             "path": {source: input, target: reference}}}
        if input and not reference and os.path.splitext(input)[1] in (".jsonl", ".json"):
            return {"test": {"class": "JsonlDataset", "path": input}}
        raise ConfigError("--input and --reference go together (line-aligned text files), or "
                          "--input alone names a JSON-lines file (.jsonl) with the "
                          f"'{source}' and '{target}' fields")


def _first(texts: Reference) -> str:
    """A row's first reference: the one its loss is computed on."""
    return texts if isinstance(texts, str) else texts[0]
