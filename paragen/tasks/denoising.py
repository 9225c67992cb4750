"""Denoising pre-training (BART): plain text in, an encoder-decoder to fine-tune out.

    config ─→ DenoisingTask.build()            (a Seq2SeqTask whose source is its own target)
                ├ tokenizer               one vocabulary with <mask> (--mask-token), the one
                │                         the fine-tuning task will use
                ├ datasets → lines        one sentence or segment per line, several files
                │                         allowed (TextDataset)
                ├ encode                  target bos + ids + eos; source ids + eos, noised per
                │                         batch as the trainer draws it (`noising.py`)
                ├ model, criterion        Seq2Seq + LabelSmoothedCrossEntropy
                └ validation              loss (nats per target token), perplexity, token
                                          accuracy of the reconstruction, fixed noise
            task.run() → trainer.train(task) or task.evaluate()

A translation or summarization task starts from the whole model with `task.trainer.init_from:
<save_dir>/best.pt`: the same `Seq2Seq` shape and tokenizer give the same parameter names and
shapes, so encoder and decoder are copied (another vocabulary is an error, not a skip).
"""
from __future__ import annotations

import logging
import math
from typing import Any, Dict, List, Literal, Optional

import torch
import torch.nn.functional as F

from paragen.datasets import TextDataset
from paragen.errors import ConfigError
from paragen.registry import build, register_task
from paragen.tasks.common import report_scores, test_split_like_valid
from paragen.tasks.masked_lm import MaskedBatches
from paragen.tasks.noising import noiser_for
from paragen.tasks.seq2seq import Seq2SeqTask
from paragen.tokenizers import build_tokenizers

logger = logging.getLogger("paragen")

# Every validation (and `evaluate`) noises from a generator seeded with this, so each scores
# the same noised sources: the curve follows the model, and runs compare.
VALIDATION_NOISE_SEED = 0


@register_task
class DenoisingTask(Seq2SeqTask):
    """`mask_ratio`, `poisson_lambda`, `token_mask_ratio`, `delete_ratio`, `random_ratio`,
    `permute_sentences`: the noise (BART's defaults: spans over 30% of the tokens, Poisson(3)
    lengths, 10% of the masks random tokens, every sentence permuted); 0 switches one off.
    `max_length`: tokens kept per line, eos included."""

    config_keys = {"source": "data", "target": "data", "max_source": "max_length",
                   "max_target": "max_length"}

    def __init__(self, tokenizer: Dict[str, Any], model: Dict[str, Any],
                 data: Dict[str, Dict[str, Any]] = None, dataloader: Dict[str, Any] = None,
                 criterion: Dict[str, Any] = None, trainer: Dict[str, Any] = None,
                 generator: Dict[str, Any] = None, evaluator: Dict[str, Any] = None,
                 mask_ratio: float = 0.3, poisson_lambda: float = 3.0,
                 token_mask_ratio: float = 0.0, delete_ratio: float = 0.0,
                 random_ratio: float = 0.1, permute_sentences: float = 1.0,
                 mode: Literal["train", "evaluate", "infer"] = "train", max_length: int = 256,
                 output_dir: Optional[str] = None, *, env, config: Dict[str, Any],
                 base_dir: str = "."):
        if output_dir:  # `evaluate --output-dir`: translations and labels have outputs
            raise ConfigError("task.output_dir (--output-dir): a denoising model writes no "
                              "outputs; its scores are printed")
        super().__init__(tokenizer, model, source_field="text", target_field="text",
                         max_source_length=max_length, max_target_length=max_length, data=data,
                         dataloader=dataloader, criterion=criterion, trainer=trainer,
                         generator=generator, evaluator=evaluator, mode=mode, env=env,
                         config=config, base_dir=base_dir)
        self.noise_options = {"mask_ratio": mask_ratio, "poisson_lambda": poisson_lambda,
                              "token_mask_ratio": token_mask_ratio, "delete_ratio": delete_ratio,
                              "random_ratio": random_ratio,
                              "permute_sentences": permute_sentences}

    def build(self) -> "DenoisingTask":
        """The noiser first: a tokenizer without <mask> is refused before any data is read."""
        tokenizer, _ = build_tokenizers(self.sections["tokenizer"], self.src, self.tgt,
                                        self.base_dir)
        self.noiser = noiser_for(tokenizer, self.noise_options, self.max_source_length)
        return super().build()

    def _build_training(self, pad: int) -> None:
        """The seq2seq training parts, checkpoints chosen by the validation loss unless the
        config says otherwise; batches are noised as the trainer draws them."""
        trainer = self.sections["trainer"]
        if trainer is not None and "assess_by" not in trainer:
            first = next((name for name in self.splits if name != "train"), "valid")
            self.sections["trainer"] = {**trainer, "assess_by": f"{first}.loss"}
            self.config["task"]["trainer"]["assess_by"] = f"{first}.loss"
        super()._build_training(pad)
        self.train_loader = MaskedBatches(self.loaders["train"], self.noise_batch)

    # ------------------------------------------------------------------ data
    def read_split(self, name: str, cfg: Dict[str, Any]) -> Dict[str, Any]:
        """Each line is its own reference; blank lines hold nothing to rebuild and are left
        out, counted in the log."""
        dataset = build("dataset", cfg, f"task.data.{name}")
        lines = dataset.lines() if isinstance(dataset, TextDataset) else list(dataset)
        if lines and not isinstance(lines[0], str):
            raise ConfigError(f"task.data.{name}.class: {type(dataset).__name__} gives "
                              f"{type(lines[0]).__name__} samples; denoising pre-training "
                              f"reads plain lines of text (TextDataset)")
        kept = [line for line in lines if line.strip()]
        if len(kept) < len(lines):
            logger.warning("task.data.%s: %d blank line(s) left out (nothing to rebuild)",
                           name, len(lines) - len(kept))
        return {"sources": kept, "references": kept}

    def encode(self, sources: List[str], targets: Optional[List[str]] = None,
               split: str = "input") -> Dict[str, Any]:
        """Each line tokenized once: source `ids eos` (noised per batch), target `bos ids eos`."""
        keep = self.max_source_length - 1
        ids = self.source_ids(sources)
        self._log_cuts(split, ids, keep, "line", "max_source")
        bos, eos = self.tgt_tokenizer.bos_id, self.tgt_tokenizer.eos_id
        src = [torch.tensor(row[:keep] + [eos]) for row in ids]
        return {"src": src, "tgt": [torch.cat([torch.tensor([bos]), row]) for row in src],
                "lengths": [len(row) for row in src]}

    def noise_batch(self, batch: Dict[str, Any], generator: Optional[torch.Generator] = None
                    ) -> Dict[str, Any]:
        """The batch with its source noised; its target stays the original text."""
        return {**batch, "src": self.noiser(batch["src"], generator)}

    # ------------------------------------------------------------------ run
    @torch.no_grad()
    def score(self, name: str) -> Dict[str, float]:
        """Loss (nats per target token), perplexity, token accuracy (%) of the teacher-forced
        reconstruction, and the count of target tokens, on sources noised with
        `VALIDATION_NOISE_SEED`."""
        generator = torch.Generator().manual_seed(VALIDATION_NOISE_SEED)
        device, pad = self.env.device, self.tgt_tokenizer.pad_id
        nll = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        count = 0
        was_training = self.model.training
        self.model.eval()
        with self.env.autocast():
            for batch in self.loaders[name].epoch_batches(0):
                batch = self.noise_batch(batch, generator)
                target = batch["target"].to(device)
                keep = target.ne(pad)
                logits = self.model(batch["src"].to(device), batch["prev_tokens"].to(device),
                                    output_mask=keep)["logits"].float()
                nll += F.cross_entropy(logits, target[keep], reduction="sum")
                correct += logits.argmax(-1).eq(target[keep]).sum()
                count += int(keep.sum())
        self.model.train(was_training)
        loss = nll.item() / count
        return {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else math.inf,
                "accuracy": 100.0 * correct.item() / count, "tokens": count}

    def _eval_splits(self) -> List[str]:
        return [name for name in self.splits if name != "train"]

    def validate(self) -> Dict[str, float]:
        """`valid.loss`, `valid.perplexity`, `valid.accuracy` for every non-train split."""
        return {f"{name}.{metric}": value for name in self._eval_splits()
                for metric, value in self.score(name).items() if metric != "tokens"}

    def evaluate(self) -> Dict[str, Any]:
        results: Dict[str, Any] = {}
        for name in self._eval_splits():
            scores = self.score(name)
            signature = (f"denoise|mask:{self.noise_options['mask_ratio']}|"
                         f"seed:{VALIDATION_NOISE_SEED}|n:{scores.pop('tokens')}")
            results.update(report_scores(
                name, {metric: (value, signature) for metric, value in scores.items()},
                None, []))
        return results

    def translate(self, lines: List[str]) -> List[str]:
        raise ConfigError("task.class: a DenoisingTask model rebuilds noised text and "
                          "generates nothing useful; fine-tune it first (task.trainer.init_from)")

    @classmethod
    def input_data(cls, task_config: Dict[str, Any], input: str,
                   reference: Optional[str] = None) -> Dict[str, Any]:
        """`evaluate --input FILE`: a `test` split of plain lines, read like the stored
        validation split."""
        if reference:
            raise ConfigError(f"--reference is for translation; a denoising model is scored "
                              f"on the text of {input} itself")
        return test_split_like_valid(task_config, input, "TextDataset")
