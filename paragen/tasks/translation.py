"""Translation: the task that assembles every component from the config and runs it.

    config ─→ TranslationTask.build()
                ├ tokenizer(s)            text ⇄ ids
                ├ datasets → samples      ids per split (train/valid/test...)
                ├ dataloaders             sampler batches → padded tensors
                ├ model, criterion        trained by the trainer
                ├ generator (+ search)    used by validation, evaluate, generate
                └ evaluator (metrics)     BLEU / chrF on detokenized text
            task.run() → trainer.train(task) or task.evaluate()
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Literal, Optional

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from paragen.datasets.binarized import WrappedIds
from paragen.errors import ConfigError
from paragen.evaluators import generate_in_order
from paragen.interfaces import ColumnDataset, StreamingDataset, TokenArrayDataset
from paragen.registry import build, lookup, register_task
from paragen.tasks.common import (build_loader, check_splits, make_self_contained,
                                  place_model, report_scores, run_task)
from paragen.tokenizers import build_tokenizers

logger = logging.getLogger("paragen")


@register_task
class TranslationTask:
    renamed_keys = {"maxlen": "max_length"}  # older configs and model folders still load
    output_field = "translation"  # what `generate` prints of each `predict` result

    def __init__(self, src: str, tgt: str, tokenizer: Dict[str, Any], model: Dict[str, Any],
                 data: Dict[str, Dict[str, Any]] = None, dataloader: Dict[str, Any] = None,
                 criterion: Dict[str, Any] = None, trainer: Dict[str, Any] = None,
                 generator: Dict[str, Any] = None, evaluator: Dict[str, Any] = None,
                 mode: Literal["train", "evaluate", "infer"] = "train", max_length: int = 256,
                 output_dir: Optional[str] = None, *, env, config: Dict[str, Any],
                 base_dir: str = "."):
        self.src, self.tgt, self.mode, self.max_length, self.env = src, tgt, mode, max_length, env
        self.config, self.base_dir = config, base_dir
        self.sections = {"tokenizer": tokenizer, "model": model, "data": data or {},
                    "dataloader": dataloader or {}, "criterion": criterion,
                    "trainer": trainer, "generator": generator, "evaluator": evaluator}
        self.output_dir = output_dir

    # ------------------------------------------------------------------ build
    def build(self) -> "TranslationTask":
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
            self.train_loader = self.loaders["train"]
            self.criterion = build("criterion", self.sections["criterion"] or
                                   {"class": "LabelSmoothedCrossEntropy"}, "task.criterion",
                                   pad_id=pad)
            if self.sections["trainer"] is None:
                raise ConfigError("task.trainer: training needs a trainer section")
            self.trainer = build("trainer", self.sections["trainer"], "task.trainer", env=self.env)
            make_self_contained(self.trainer.save_dir, self.config, self.base_dir)
        return self

    # ------------------------------------------------------------------ data
    def _load_split(self, name: str, cfg: Dict[str, Any]) -> Dict[str, Any]:
        dataset = build("dataset", cfg, f"task.data.{name}")
        if isinstance(dataset, StreamingDataset) and dataset.streaming:  # read lazily
            if name != "train":
                raise ConfigError(f"task.data.{name}: streaming datasets are for training; "
                                  f"use ParallelTextDataset for {name}")
            return {"streaming": dataset}
        if isinstance(dataset, TokenArrayDataset):  # binarized: ids stay on disk
            return self._binarized_split(dataset)
        if len(dataset) and not isinstance(dataset[0], dict):
            raise ConfigError(f"task.data.{name}.class: {type(dataset).__name__} gives plain "
                              f"lines; a translation split needs '{self.src}' and '{self.tgt}' "
                              f"sides (ParallelTextDataset, JsonlDataset, ...)")
        try:
            if isinstance(dataset, ColumnDataset):  # column access: no per-sample dicts built
                sources, targets = dataset.lines(self.src), dataset.lines(self.tgt)
            else:
                sources = [sample[self.src] for sample in dataset]
                targets = [sample[self.tgt] for sample in dataset]
        except KeyError as err:
            raise ConfigError(f"task.data.{name}: no {err} side in this split; it needs "
                              f"'{self.src}' and '{self.tgt}' (task.src, task.tgt)") from None
        return {"sources": sources, "targets": targets,
                **self.encode(sources, targets, split=name)}

    def encode(self, sources: List[str], targets: Optional[List[str]] = None,
               split: str = "input") -> Dict[str, Any]:
        """Token id tensors: source ids + eos; target bos + ids + eos (sliced by `collate`)."""
        eos, bos = self.src_tokenizer.eos_id, self.tgt_tokenizer.bos_id
        limit = self.max_length - 1
        src_ids = self.src_tokenizer.encode_batch(sources)
        truncated = sum(len(ids) > limit for ids in src_ids)
        encoded = {"src": [torch.tensor(ids[:limit] + [eos]) for ids in src_ids]}
        lengths = [len(ids) for ids in encoded["src"]]
        if targets is not None:
            tgt_ids = self.tgt_tokenizer.encode_batch(targets)
            truncated += sum(len(ids) > limit for ids in tgt_ids)
            encoded["tgt"] = [torch.tensor([bos] + ids[:limit] + [self.tgt_tokenizer.eos_id])
                              for ids in tgt_ids]
            lengths = [max(s, len(t) - 1) for s, t in zip(lengths, encoded["tgt"])]
        if truncated:
            logger.warning("%s: %d sentence(s) longer than max_length %d tokens were truncated",
                           split, truncated, self.max_length)
        encoded["lengths"] = lengths
        return encoded

    def _binarized_split(self, dataset) -> Dict[str, Any]:
        """Ids are memory-mapped and wrapped with eos/bos on access; no reference text, so
        such a split gives a loss (and is meant for training), not BLEU."""
        src, tgt = dataset.token_array(self.src), dataset.token_array(self.tgt)
        src.check_tokenizer(self.src_tokenizer, f"task.tokenizer ({self.src})")
        tgt.check_tokenizer(self.tgt_tokenizer, f"task.tokenizer ({self.tgt})")
        limit = self.max_length - 1
        if max(src.lengths.max(initial=0), tgt.lengths.max(initial=0)) > limit:
            raise ConfigError(f"task.max_length: binarized data has sentences longer than {limit} "
                              f"tokens; raise max_length or filter the corpus (paragen clean)")
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
        return self.tgt_tokenizer.decode_batch(token_lists)

    def translate(self, lines: List[str]) -> List[str]:
        """Translate raw sentences (any order, any lengths) and return outputs in input order."""
        split = self.encode(lines)
        loader = self._build_loader("infer", split)
        return generate_in_order(self.generator, loader.epoch_batches(0), len(lines), self.decode,
                                 self.env)

    def predict(self, lines: List[str], first_line: int = 1) -> List[Dict[str, str]]:
        """`generate`'s entry point, common to all tasks: `{"translation": ...}` per line."""
        return [{"translation": text} for text in self.translate(lines)]

    # ------------------------------------------------------------------ serving
    plain_answers = True  # `{"outputs": ["A dog runs."]}`, the format clients rely on

    @property
    def max_input_tokens(self) -> int:
        """Source tokens `encode` keeps (eos takes the last of max_length)."""
        return self.max_length - 1

    def input_tokens(self, lines: List[str], first_line: int = 1) -> List[int]:
        return [len(ids) for ids in self.src_tokenizer.encode_batch(lines)]

    def join_pieces(self, answers: List[Dict[str, str]]) -> Dict[str, str]:
        """A long input translated piece by piece: the pieces' translations, space-joined."""
        texts = (answer["translation"].strip() for answer in answers)
        return {"translation": " ".join(text for text in texts if text)}

    def describe(self) -> Dict[str, Any]:
        return {"generator": type(self.generator).__name__, "source": self.src,
                "target": self.tgt}

    @classmethod
    def input_data(cls, task_config: Dict[str, Any], input: Optional[str],
                   reference: Optional[str]) -> Dict[str, Any]:
        """`evaluate --input SRC --reference REF`: a `test` split of the two files."""
        if not (input and reference):
            raise ConfigError("--input and --reference go together")
        return {"test": {"class": "ParallelTextDataset",
                         "path": {task_config["src"]: input, task_config["tgt"]: reference}}}
