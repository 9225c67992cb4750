"""Multilingual translation: one model for every direction between a set of languages.

    languages: [en, de, fr, cs]
    directions: all                 every ordered pair but the zero-shot ones (or [de-en, ...])
    zero_shot: [fr-cs, cs-fr]       never trained on, evaluated separately
    data: {train: {class: ParallelTextDataset, path: {en: train.en, de: train.de, ...}}, ...}

A split is N-way line-aligned text files keyed by language; the train split becomes one
(source, target) pair per row and trained direction. The source starts with the target
language's tag piece (`<2en> source ids eos`, from `paragen build-tokenizer --tags ...`), so
an autoregressive Seq2Seq and a GLAT (whose decoder reads only the source) alike learn which
language to produce. The target side is untagged.

Evaluation splits are scored per direction (`valid.de-en.bleu`), for every trained and
zero-shot direction whose two languages the split holds; `valid.bleu` is the mean over the
trained directions (what checkpoints are chosen by), zero-shot directions are reported apart
(`valid.zero_shot.fr-cs.bleu`); with `target_lang` set, only the directions into it.
`evaluate --input test.de --reference test.en` scores de-en. Generation translates into
`target_lang` (`paragen generate --model DIR --task.target_lang en < in.de`), as fairseq's
`--target-lang`; the source language needs no saying.

With `TemperatureSampler` as the train sampler, directions are mixed by temperature
(p_d ∝ n_d^(1/T)); any other sampler sees all pairs as one pool.
"""
from __future__ import annotations

import logging
import os
from functools import cached_property
from itertools import permutations
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple, Union

import numpy as np

from paragen.errors import ConfigError
from paragen.evaluators import generate_in_order
from paragen.interfaces import ColumnDataset
from paragen.registry import build, register_task
from paragen.tasks.common import build_loader
from paragen.tasks.seq2seq import Seq2SeqTask
from paragen.tokenizers.sentencepiece import language_tag

logger = logging.getLogger("paragen")

Direction = Tuple[str, str]


class TaggedSources(Sequence):
    """The sources of a split, as blocks of (target language, one language's lines): a
    language's lines are the source of several directions and are tokenized once."""

    def __init__(self, blocks: List[Tuple[str, List[str]]]) -> None:
        self.blocks = blocks
        self.texts = [text for _, lines in blocks for text in lines]

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index):
        return self.texts[index]


@register_task
class MultilingualTranslationTask(Seq2SeqTask):
    """`languages`: the languages of the model, each with its tag piece in the joint
    tokenizer. `directions`: the trained `src-tgt` pairs, or `all`. `zero_shot`: directions
    held out of training and evaluated. `target_lang`: the language `generate`/`serve`
    translate into. `max_length`: tokens kept per side, eos (and the source's tag) included."""

    output_field = "translation"
    config_keys = {"source": "languages", "target": "languages", "max_source": "max_length",
                   "max_target": "max_length"}

    def __init__(self, languages: List[str], tokenizer: Dict[str, Any], model: Dict[str, Any],
                 directions: Union[str, List[str]] = "all", zero_shot: List[str] = (),
                 target_lang: Optional[str] = None, max_length: int = 256,
                 data: Dict[str, Dict[str, Any]] = None, dataloader: Dict[str, Any] = None,
                 criterion: Dict[str, Any] = None, trainer: Dict[str, Any] = None,
                 generator: Dict[str, Any] = None, evaluator: Dict[str, Any] = None,
                 mode: Literal["train", "evaluate", "infer"] = "train",
                 output_dir: Optional[str] = None, *, env, config: Dict[str, Any],
                 base_dir: str = "."):
        if len(set(languages)) < 2 or len(set(languages)) != len(languages):
            raise ConfigError(f"task.languages: two or more distinct languages, got {languages}")
        if not isinstance(tokenizer, dict) or "class" not in tokenizer:
            raise ConfigError("task.tokenizer: a multilingual model has one joint tokenizer "
                              "(a mapping with 'class'), holding every language's tag")
        super().__init__(tokenizer, model, max_source_length=max_length,
                         max_target_length=max_length, data=data, dataloader=dataloader,
                         criterion=criterion, trainer=trainer, generator=generator,
                         evaluator=evaluator, mode=mode, output_dir=output_dir, env=env,
                         config=config, base_dir=base_dir)
        self.languages = list(languages)
        self.zero_shot = [self._direction(text, "task.zero_shot") for text in zero_shot]
        if directions == "all":
            self.directions = [pair for pair in permutations(self.languages, 2)
                               if pair not in self.zero_shot]
        elif isinstance(directions, list) and directions:
            self.directions = [self._direction(text, "task.directions") for text in directions]
        else:
            raise ConfigError(f"task.directions: 'all' or a list of src-tgt pairs (de-en), "
                              f"got {directions!r}")
        both = sorted({"-".join(pair) for pair in self.directions} &
                      {"-".join(pair) for pair in self.zero_shot})
        if both:
            raise ConfigError(f"task.zero_shot: {', '.join(both)} also in task.directions; a "
                              f"zero-shot direction is one never trained on")
        if target_lang is not None and target_lang not in self.languages:
            raise ConfigError(f"task.target_lang: {target_lang!r} is not one of the model's "
                              f"languages ({', '.join(self.languages)})")
        self.target_lang = target_lang
        self.split_directions: Dict[str, Dict[Direction, slice]] = {}

    def _direction(self, text: str, key: str) -> Direction:
        pair = tuple(str(text).split("-"))
        unknown = [lang for lang in pair if lang not in self.languages]
        if len(pair) != 2 or pair[0] == pair[1] or unknown:
            raise ConfigError(f"{key}: {text!r} is not a src-tgt pair of two of task.languages "
                              f"({', '.join(self.languages)})"
                              + (f"; no language {unknown[0]!r}" if unknown else ""))
        return pair

    # ------------------------------------------------------------------ tags
    @cached_property
    def tag_ids(self) -> Dict[str, int]:
        """Each language's tag piece id; a tokenizer without one cannot tell the model the
        target language, so it is refused before any data is read."""
        pieces = getattr(self.src_tokenizer, "pieces", None)
        if pieces is None:
            raise ConfigError(f"task.tokenizer: {type(self.src_tokenizer).__name__} lists no "
                              f"pieces; language tags need a SentencePieceTokenizer")
        ids = {piece: i for i, piece in enumerate(pieces)}
        missing = [lang for lang in self.languages if language_tag(lang) not in ids]
        if missing:
            source = getattr(self.src_tokenizer, "model", "the tokenizer")
            raise ConfigError(
                f"task.languages: {source} has no tag piece for {', '.join(missing)} "
                f"({', '.join(language_tag(lang) for lang in missing)}); learn it with "
                f"`paragen build-tokenizer ... --tags {' '.join(self.languages)}`")
        return {lang: ids[language_tag(lang)] for lang in self.languages}

    def build(self) -> "MultilingualTranslationTask":
        super().build()
        self.tag_ids  # infer mode reads no split: check the tags at start-up all the same
        return self

    def source_ids(self, texts: Sequence[str]) -> List[List[int]]:
        """`<2tgt>` + the text's ids: a split's tagged sources, or input lines translated into
        `target_lang`."""
        if isinstance(texts, TaggedSources):
            blocks = texts.blocks
        else:
            if self.target_lang is None:
                raise ConfigError(f"task.target_lang: say which language to translate into "
                                  f"(--task.target_lang {self.languages[0]}; one of "
                                  f"{', '.join(self.languages)})")
            blocks = [(self.target_lang, list(texts))]
        encoded: Dict[int, List[List[int]]] = {}  # a language's lines, tokenized once
        ids: List[List[int]] = []
        for target, lines in blocks:
            if id(lines) not in encoded:
                encoded[id(lines)] = self.src_tokenizer.encode_batch(lines)
            tag = [self.tag_ids[target]]
            ids.extend(tag + row for row in encoded[id(lines)])
        return ids

    # ------------------------------------------------------------------ data
    def read_split(self, name: str, cfg: Dict[str, Any]) -> Dict[str, Any]:
        """One row per line and direction: the trained directions for train, the trained and
        zero-shot ones whose languages the split holds for the others."""
        dataset = build("dataset", cfg, f"task.data.{name}")
        if not isinstance(dataset, ColumnDataset) or not hasattr(dataset, "keys"):
            raise ConfigError(f"task.data.{name}.class: a multilingual split is line-aligned "
                              f"files keyed by language (ParallelTextDataset), got "
                              f"{type(dataset).__name__}")
        held = set(dataset.keys)
        unknown = sorted(held - set(self.languages))
        if unknown:
            raise ConfigError(f"task.data.{name}.path: {', '.join(unknown)} not in "
                              f"task.languages ({', '.join(self.languages)})")
        if name == "train":
            missing = sorted({lang for pair in self.directions for lang in pair} - held)
            if missing:
                raise ConfigError(f"task.data.train.path: the trained directions need "
                                  f"{', '.join(missing)} files too")
            directions = self.directions
        else:
            directions = [pair for pair in self.directions + self.zero_shot
                          if set(pair) <= held and self.target_lang in (None, pair[1])]
            if not directions:
                into = f" into {self.target_lang} (task.target_lang)" if self.target_lang else ""
                raise ConfigError(f"task.data.{name}.path: holds {', '.join(sorted(held))}, "
                                  f"no trained or zero-shot direction{into}")
        blocks, references, rows, start = [], [], {}, 0
        for source, target in directions:
            blocks.append((target, dataset.lines(source)))
            references.extend(dataset.lines(target))
            rows[(source, target)] = slice(start, len(references))
            start = len(references)
        self.split_directions[name] = rows
        logger.info("%s: %d rows in %d directions", name, start, len(directions))
        return {"sources": TaggedSources(blocks), "references": references}

    def _build_loader(self, name: str, split: Optional[Dict[str, Any]] = None):
        """A split's loader; a temperature sampler is told each row's direction."""
        if split is not None or name not in self.split_directions:
            return super()._build_loader(name, split)
        sizes = [rows.stop - rows.start for rows in self.split_directions[name].values()]
        groups = np.repeat(np.arange(len(sizes)), sizes)
        split = self.splits[name]
        return build_loader(name, self.sections["dataloader"], split["lengths"],
                            lambda idx: self.collate(idx, split), groups=groups)

    # ------------------------------------------------------------------ scores
    def _score_split(self, name: str) -> Dict[str, Any]:
        """Metrics per direction; each metric's mean over the trained directions under its
        own name (`bleu`), zero-shot directions under `zero_shot.<direction>.<metric>`."""
        hypotheses = self._generate_split(name)
        targets = self.splits[name]["targets"]
        scores: Dict[str, Tuple[float, str]] = {}
        trained: Dict[str, List[float]] = {}
        for (source, target), rows in self.split_directions[name].items():
            zero_shot = (source, target) in self.zero_shot
            prefix = f"{'zero_shot.' if zero_shot else ''}{source}-{target}"
            for metric, (value, signature) in self.evaluator.score(hypotheses[rows],
                                                                   targets[rows]).items():
                scores[f"{prefix}.{metric}"] = (value, signature)
                if not zero_shot:
                    trained.setdefault(metric, []).append(value)
        means = {metric: (float(np.mean(values)), f"mean of {len(values)} trained directions")
                 for metric, values in trained.items()}
        return {**means, **scores}

    def _generate_split(self, name: str) -> List[str]:
        split = self.splits[name]
        self.last_hypotheses = generate_in_order(
            self.generator, self.loaders[name].epoch_batches(0), len(split["lengths"]),
            self.decode, self.env)
        return self.last_hypotheses

    # ------------------------------------------------------------------ delivery
    def describe(self) -> Dict[str, Any]:
        return {"generator": type(self.generator).__name__, "languages": self.languages,
                "target_lang": self.target_lang}

    @classmethod
    def input_data(cls, task_config: Dict[str, Any], input: Optional[str],
                   reference: Optional[str]) -> Dict[str, Any]:
        """`evaluate --input test.de --reference test.en`: a `test` split of the two files;
        each file's suffix names its language (fairseq's `--source-lang/--target-lang` name
        file suffixes too). Only the input's language into the reference's is scored (de-en):
        the reference's language becomes `target_lang`, which keeps a split's directions to
        those into it (a stored split too, with `--task.target_lang`)."""
        languages = task_config.get("languages") or []
        if not (input and reference):
            raise ConfigError("--input and --reference go together: line-aligned files named "
                              "by language (test.de, test.en)")
        path = {}
        for file in (input, reference):
            language = os.path.splitext(file)[1].lstrip(".")
            if language not in languages or language in path:
                raise ConfigError(f"{file}: name --input and --reference by their languages, "
                                  f"two of {', '.join(languages)} (test.de, test.en)")
            path[language] = file
        task_config["target_lang"] = os.path.splitext(reference)[1].lstrip(".")
        return {"test": {"class": "ParallelTextDataset", "path": path}}
