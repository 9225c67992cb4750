"""What every task does the same way: place the model, make the model folder self-contained,
build a split's loader, pack a split's rows and gather batches from them, build the training
parts, report scores. Shared by translation, the sentence tasks, extractive QA and masked-LM
pre-training."""
from __future__ import annotations

import itertools
import logging
import os
import shutil
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch import nn

from paragen.errors import ConfigError, DataError
from paragen.files import atomic_text_output
from paragen.registry import KINDS, build, lookup

logger = logging.getLogger("paragen")

DEFAULT_LOADERS = {
    "train": {"class": "DataLoader", "sampler": {"class": "BucketSampler", "max_tokens": 4096}},
    "eval": {"class": "DataLoader",
             "sampler": {"class": "BucketSampler", "max_tokens": 8192, "shuffle": False}},
}


def place_model(model: nn.Module, env, mode: str) -> nn.Module:
    """Move the model to the device and, for decoding in bf16/fp16, store its weights in that
    type once, as fairseq's `--fp16` does: autocast over fp32 weights would cast every weight
    again at every call, which made bf16 slower than fp32 at batch 1 on a GPU."""
    model.to(env.device)
    if mode != "train" and env.amp_dtype is not None:
        model.to(env.amp_dtype)
    logger.info("model %s: %.2fM parameters", type(model).__name__,
                sum(p.numel() for p in model.parameters()) / 1e6)
    return model


def check_splits(sizes: Dict[str, Optional[int]], mode: str) -> None:
    """`sizes`: samples per split (None for a streamed split, whose size is unknown). Empty
    splits are found at start-up, not after an hour of training; training needs a train
    split."""
    for name, size in sizes.items():
        if size == 0:
            raise DataError(f"task.data.{name}: the split has no samples (empty files, or "
                            f"every line skipped as empty)")
    if mode == "train" and "train" not in sizes:
        raise ConfigError("task.data.train: training needs a 'train' split")


def make_self_contained(save_dir: str, config: Dict[str, Any], base_dir: str) -> None:
    """Make a training's `save_dir` all that generate/evaluate/serve need: tokenizer models
    copied beside the checkpoints, and every pretrained component's architecture written into
    the config the checkpoints store (so the pretrained folder is not needed again)."""
    copy_tokenizers(save_dir, config, base_dir)
    store_architectures(config["task"].get("model"), "model", "task.model")


def copy_tokenizers(save_dir: str, config: Dict[str, Any], base_dir: str) -> None:
    """Copy tokenizer models next to the checkpoints and point the stored config at them. A
    model that is a folder (HuggingFaceTokenizer) becomes `tokenizer/`; a tokenizer class
    with a `copy_model(source, target)` copies only what it needs (not weights beside it)."""
    os.makedirs(save_dir, exist_ok=True)
    cfg = config["task"]["tokenizer"]
    entries = [("", cfg)] if "class" in cfg else [(f".{k}", v) for k, v in cfg.items()]
    for suffix, entry in entries:
        if "model" in entry:
            source = os.path.join(base_dir, entry["model"])
            folder = os.path.isdir(source)
            target = f"tokenizer{suffix}" if folder else f"tokenizer{suffix}.model"
            if os.path.abspath(source) != os.path.abspath(os.path.join(save_dir, target)):
                tokenizer_class = lookup("tokenizer", entry["class"], "task.tokenizer")
                copy = getattr(tokenizer_class, "copy_model", None) or (
                    partial(shutil.copytree, dirs_exist_ok=True) if folder else shutil.copyfile)
                copy(source, os.path.join(save_dir, target))
            entry["model"] = target


def store_architectures(node: Any, kind: Optional[str], path: str) -> None:
    """Replace, in place, every component entry under `node` whose class says what a model
    folder must store instead (`config_to_store(entry)`: HuggingFaceEncoder swaps its
    pretrained folder for the architecture the folder holds)."""
    if not isinstance(node, dict):
        return
    if kind and "class" in node:
        to_store = getattr(lookup(kind, node["class"], path), "config_to_store", None)
        if to_store is not None:
            replacement = to_store(dict(node))
            node.clear()
            node.update(replacement)
    for key, value in node.items():
        store_architectures(value, key if key in KINDS else None, f"{path}.{key}")


def build_loader(name: str, loaders: Dict[str, Any], lengths: Sequence[int],
                 collate_fn: Callable[[List[int]], Dict[str, Any]],
                 groups: Optional[Sequence[int]] = None):
    """The loader of split `name` (`task.dataloader.<name>`, else a length-bucketed default:
    shuffled for train, sorted for the others). `groups` (a group id per row: a multilingual
    task's directions) goes to samplers that mix groups (`uses_groups`, TemperatureSampler);
    other samplers see one pool of rows."""
    default = DEFAULT_LOADERS["train" if name == "train" else "eval"]
    cfg = dict(loaders.get(name) or default)
    sampler_cfg = cfg.pop("sampler", default["sampler"])
    path = f"task.dataloader.{name}.sampler"
    runtime = {}
    if isinstance(sampler_cfg, dict) and "class" in sampler_cfg and getattr(
            lookup("sampler", sampler_cfg["class"], path), "uses_groups", False):
        if groups is None:
            raise ConfigError(f"{path}.class: {sampler_cfg['class']} mixes groups of rows (a "
                              f"multilingual task's directions); this split has none")
        runtime["groups"] = groups
    sampler = build("sampler", sampler_cfg, path, **runtime)
    return build("dataloader", cfg, f"task.dataloader.{name}",
                 samples=list(range(len(lengths))), lengths=lengths, sampler=sampler,
                 collate_fn=collate_fn)


def build_training(task, default_criterion: Dict[str, Any], metric: str) -> None:
    """`task.train_loader`, `task.criterion` and `task.trainer` of a task with `sections`,
    `splits`, `loaders`, `env`, `config` and `base_dir` (the sentence and QA tasks).

    Checkpoints are chosen by `metric` on the first evaluation split unless the config says
    otherwise (the trainer's own default, valid.bleu, never appears in these tasks); the
    choice is written into the config the checkpoints store."""
    task.train_loader = task.loaders["train"]
    task.criterion = build("criterion", task.sections["criterion"] or default_criterion,
                           "task.criterion")
    if task.sections["trainer"] is None:
        raise ConfigError("task.trainer: training needs a trainer section")
    first = next((name for name in task.splits if name != "train"), "valid")
    trainer = {"assess_by": f"{first}.{metric}", **task.sections["trainer"]}
    task.config["task"]["trainer"]["assess_by"] = trainer["assess_by"]
    task.trainer = build("trainer", trainer, "task.trainer", env=task.env)
    make_self_contained(task.trainer.save_dir, task.config, task.base_dir)


def pack_rows(rows: List[List[int]]) -> Dict[str, torch.Tensor]:
    """Rows of ids as one flat tensor with offsets and lengths: a split of 100k rows is three
    tensors, not 100k lists, and a batch is gathered from it in one indexing operation."""
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    flat = torch.tensor(list(itertools.chain.from_iterable(rows)), dtype=torch.long)
    return {"flat": flat, "offsets": lengths.cumsum(0) - lengths, "lengths": lengths}


def gather_rows(packed: Dict[str, torch.Tensor], ids: torch.Tensor, pad_id: int
                ) -> torch.Tensor:
    """(B,S) ids of rows `ids` of a `pack_rows` split, padded with `pad_id` to the longest."""
    lengths = packed["lengths"][ids]
    positions = torch.arange(int(lengths.max()))
    gather = (packed["offsets"][ids, None] + positions).clamp_max(len(packed["flat"]) - 1)
    return packed["flat"][gather].masked_fill(positions >= lengths[:, None], pad_id)


def test_split_like_valid(task_config: Dict[str, Any], input: str, default_class: str,
                          drop: Sequence[str] = ("max_samples",)) -> Dict[str, Any]:
    """`evaluate --input FILE` for tasks whose files hold their own targets: a `test` split
    read like the stored validation split (its dataset class and options), minus the options
    in `drop` that would select part of the new file."""
    stored = dict(((task_config.get("data") or {}).get("valid")) or {"class": default_class})
    for key in drop:
        stored.pop(key, None)
    return {"test": {**stored, "path": input}}


def run_task(task) -> Dict[str, Any]:
    """`task.run()`: train, or evaluate a trained model (`task.mode`)."""
    if task.mode == "train":
        return task.trainer.train(task)
    if task.mode == "evaluate":
        return task.evaluate()
    raise ConfigError(f"task.mode: {task.mode!r} cannot be run; use train or evaluate")


def report_scores(name: str, scores: Dict[str, Any], output_dir: str | None,
                  outputs: List[str]) -> Dict[str, float]:
    """Print `<split> <metric> = <value>  (<signature>)` lines and, with `output_dir`, write
    the split's outputs (hypotheses, labels) in input order to `<output_dir>/<split>.hyp`."""
    results = {}
    for metric, (value, signature) in scores.items():
        results[f"{name}.{metric}"] = value
        print(f"{name} {metric} = {value:.2f}  ({signature})")
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
        with atomic_text_output(os.path.join(output_dir, f"{name}.hyp"),
                                flag="--output-dir") as f:
            f.writelines(line + "\n" for line in outputs)
    return results
