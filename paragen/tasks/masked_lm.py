"""Masked-LM pre-training (BERT, RoBERTa): plain text in, an encoder to fine-tune out.

    config ─→ MaskedLMTask.build()
                ├ tokenizer               text ⇄ ids, with a <mask> symbol (--mask-token)
                ├ datasets → lines        one sentence or segment per line, several files
                │                         allowed (TextDataset)
                ├ samples                 [bos] ids [eos], at most max_length, packed flat
                ├ dataloaders             index batches → padded ids, by gather; training
                │                         batches masked as the trainer draws them
                ├ model, criterion        MaskedLM + MaskedLMCrossEntropy (masked positions)
                └ validation              loss, perplexity, masked-token accuracy
            task.run() → trainer.train(task) or task.evaluate()

Masks are drawn anew for every batch (RoBERTa's dynamic masking; see `masking.py` for what
is masked and how). A fine-tuning task takes the encoder with `task.trainer.init_from:
<save_dir>/best.pt`: every model that builds its encoder with `build("encoder")` under the
name `encoder` (SequenceClassifier, MaskedLM) shares its parameter names, and the same
tokenizer must be used (a differently sized vocabulary is an error, not a silent skip).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Callable, Dict, List, Literal, Optional

import torch
import torch.nn.functional as F

from paragen.datasets import TextDataset
from paragen.errors import ConfigError
from paragen.registry import build, register_task
from paragen.tasks.common import (build_loader, build_training, check_splits, gather_rows,
                                  pack_rows, place_model, report_scores, run_task,
                                  test_split_like_valid)
from paragen.tasks.masking import masker_for
from paragen.tokenizers import build_tokenizers

logger = logging.getLogger("paragen")

# Every validation (and `evaluate`) draws its masks from a generator seeded with this, so
# each scores the same positions: the curve follows the model, and runs compare.
VALIDATION_MASK_SEED = 0


class MaskedBatches:
    """The training loader's batches, masked in the training process as the trainer draws
    them: with the global generator, which every checkpoint saves, so a resumed run masks as
    an uninterrupted one does, even when collation runs in loader worker processes (whose
    own generators restart with every epoch)."""

    def __init__(self, loader, mask: Callable[[Dict[str, Any]], Dict[str, Any]]):
        self.loader, self.mask = loader, mask

    @property
    def rank_local(self) -> bool:
        return self.loader.rank_local

    def num_batches(self, epoch: int) -> int:
        return self.loader.num_batches(epoch)

    def epoch_batches(self, epoch: int, start: int = 0):
        return map(self.mask, self.loader.epoch_batches(epoch, start))


@register_task
class MaskedLMTask:
    renamed_keys = {"maxlen": "max_length"}

    def __init__(self, tokenizer: Dict[str, Any], model: Dict[str, Any],
                 data: Dict[str, Dict[str, Any]] = None, dataloader: Dict[str, Any] = None,
                 criterion: Dict[str, Any] = None, trainer: Dict[str, Any] = None,
                 mask_rate: float = 0.15, mask_token_prob: float = 0.8,
                 random_token_prob: float = 0.1, whole_word: bool = False,
                 span_masking: bool = False, span_mean_length: float = 3.8,
                 span_max_length: int = 10,
                 mode: Literal["train", "evaluate", "infer"] = "train", max_length: int = 512,
                 output_dir: Optional[str] = None, *, env, config: Dict[str, Any],
                 base_dir: str = "."):
        if max_length < 3:
            raise ConfigError(f"task.max_length: {max_length} leaves no room for text "
                              f"between bos and eos")
        self.mode, self.max_length, self.env = mode, max_length, env
        self.masking = {"mask_rate": mask_rate, "mask_token_prob": mask_token_prob,
                        "random_token_prob": random_token_prob, "whole_word": whole_word,
                        "span_masking": span_masking, "span_mean_length": span_mean_length,
                        "span_max_length": span_max_length}
        if output_dir:  # `evaluate --output-dir`: translations and labels have outputs
            raise ConfigError("task.output_dir (--output-dir): a masked LM writes no outputs; "
                              "its scores are printed")
        self.config, self.base_dir = config, base_dir
        self.sections = {"tokenizer": tokenizer, "model": model, "data": data or {},
                         "dataloader": dataloader or {}, "criterion": criterion,
                         "trainer": trainer}

    # ------------------------------------------------------------------ build
    def build(self) -> "MaskedLMTask":
        self.tokenizer, _ = build_tokenizers(self.sections["tokenizer"], "text", "text",
                                             self.base_dir)
        self.masker = masker_for(self.tokenizer, self.masking)
        self.model = build("model", self.sections["model"], "task.model",
                           vocab_size=self.tokenizer.vocab_size, pad_id=self.tokenizer.pad_id)
        place_model(self.model, self.env, self.mode)
        if self.mode == "infer":
            return self
        self.splits = {name: self._read_split(name, cfg)
                       for name, cfg in self.sections["data"].items()}
        check_splits({name: len(split["lengths"]) for name, split in self.splits.items()},
                     self.mode)
        self.loaders = {name: build_loader(name, self.sections["dataloader"],
                                           split["lengths"].numpy(), self._collate_fn(split))
                        for name, split in self.splits.items()}
        if self.mode == "train":
            self._build_training()
        return self

    def _build_training(self) -> None:
        """The shared training parts, checkpoints chosen by the masked-token loss unless the
        config says otherwise; batches are masked as the trainer draws them."""
        build_training(self, {"class": "MaskedLMCrossEntropy"}, "loss")
        self.train_loader = MaskedBatches(self.loaders["train"], self.mask_batch)

    # ------------------------------------------------------------------ data
    def _read_split(self, name: str, cfg: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        dataset = build("dataset", cfg, f"task.data.{name}")
        lines = dataset.lines() if isinstance(dataset, TextDataset) else list(dataset)
        if lines and not isinstance(lines[0], str):
            raise ConfigError(f"task.data.{name}.class: {type(dataset).__name__} gives "
                              f"{type(lines[0]).__name__} samples; masked-LM pre-training "
                              f"reads plain lines of text (TextDataset)")
        return self.encode(lines, f"task.data.{name}")

    def encode(self, lines: List[str], where: str) -> Dict[str, torch.Tensor]:
        """Lines as `[bos] ids [eos]` rows of at most max_length ids, packed flat. Blank lines
        hold nothing to mask; they are left out, and counted in the log."""
        ids = self.tokenizer.encode_batch(lines)
        blank = sum(not row for row in ids)
        if blank:
            logger.warning("%s: %d blank line(s) left out (nothing to mask in them)", where,
                           blank)
            ids = [row for row in ids if row]
        limit = self.max_length - 2
        truncated = sum(len(row) > limit for row in ids)
        if truncated:
            logger.warning("%s: %d line(s) longer than max_length %d tokens were truncated",
                           where, truncated, self.max_length)
        bos, eos = self.tokenizer.bos_id, self.tokenizer.eos_id
        return pack_rows([[bos] + row[:limit] + [eos] for row in ids])

    def _collate_fn(self, split: Dict[str, torch.Tensor]):
        def collate(indices: List[int]) -> Dict[str, Any]:
            ids = torch.tensor(indices, dtype=torch.long)
            return {"ids": ids, "src": gather_rows(split, ids, self.tokenizer.pad_id)}
        return collate

    def mask_batch(self, batch: Dict[str, Any], generator: Optional[torch.Generator] = None
                   ) -> Dict[str, Any]:
        """The batch with masks in `src`, the (B,S) `masked` positions, their original ids
        as `target`, and `ntokens` = the number of masked positions (the loss is a mean per
        masked token)."""
        masked = self.masker(batch["src"], generator)
        return {**batch, **masked, "ntokens": len(masked["target"])}

    # ------------------------------------------------------------------ run
    def run(self) -> Dict[str, Any]:
        return run_task(self)

    @torch.no_grad()
    def score(self, name: str) -> Dict[str, float]:
        """Loss (nats per masked token), perplexity, masked-token accuracy (%) and the count
        of masked tokens on split `name`, with the masks of `VALIDATION_MASK_SEED`."""
        generator = torch.Generator().manual_seed(VALIDATION_MASK_SEED)
        device = self.env.device
        nll = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        count = 0
        was_training = self.model.training
        self.model.eval()
        with self.env.autocast():
            for batch in self.loaders[name].epoch_batches(0):
                batch = self.mask_batch(batch, generator)
                target = batch["target"].to(device)
                logits = self.model(batch["src"].to(device), batch["masked"].to(device)
                                    )["logits"].float()
                nll += F.cross_entropy(logits, target, reduction="sum")
                correct += logits.argmax(-1).eq(target).sum()
                count += len(target)
        self.model.train(was_training)
        loss = nll.item() / count
        return {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else math.inf,
                "masked_accuracy": 100.0 * correct.item() / count, "masked_tokens": count}

    def _eval_splits(self) -> List[str]:
        return [name for name in self.splits if name != "train"]

    def validate(self) -> Dict[str, float]:
        """`valid.loss`, `valid.perplexity`, `valid.masked_accuracy` for every non-train split."""
        scores: Dict[str, float] = {}
        for name in self._eval_splits():
            for metric, value in self.score(name).items():
                if metric != "masked_tokens":
                    scores[f"{name}.{metric}"] = value
        return scores

    def evaluate(self) -> Dict[str, Any]:
        results: Dict[str, Any] = {}
        for name in self._eval_splits():
            scores = self.score(name)
            signature = (f"masked|rate:{self.masking['mask_rate']}|seed:{VALIDATION_MASK_SEED}"
                         f"|n:{scores.pop('masked_tokens')}")
            results.update(report_scores(
                name, {metric: (value, signature) for metric, value in scores.items()},
                None, []))
        return results

    @classmethod
    def input_data(cls, task_config: Dict[str, Any], input: str,
                   reference: Optional[str] = None) -> Dict[str, Any]:
        """`evaluate --input FILE`: a `test` split of plain lines, read like the stored
        validation split."""
        if reference:
            raise ConfigError(f"--reference is for translation; a masked LM is scored on the "
                              f"text of {input} itself")
        return test_split_like_valid(task_config, input, "TextDataset")
