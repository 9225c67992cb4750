"""Extractive question answering, SQuAD style: the answer is a span of the given context.

    config ─→ ExtractiveQATask.build()
                ├ tokenizer            text ⇄ ids, and the character offsets of context tokens
                ├ datasets             questions, contexts, gold answers (SquadDataset)
                ├ windows              [bos] question [eos] context-window [eos] per row; a long
                │                      context is cut into windows `doc_stride` tokens apart
                ├ targets              the answer's start/end row positions in each window
                │                      (both 0, the bos, in a window without the answer: BERT)
                ├ dataloaders          index batches of windows → padded ids + segment ids,
                │                      gathered from flat question and context tensors
                ├ model, criterion     SpanExtractor + SpanCrossEntropy
                └ evaluator (metrics)  SQuAD v1.1 exact match and F1
            task.run() → trainer.train(task) or task.evaluate();  task.predict(lines)

Decoding scores every legal span of every window at once (`spans.best_spans`: start ≤ end <
start + max_answer_length, context tokens only) by the log-probability the model gives its
start and its end within the window, keeps each question's best window, and maps the span's
tokens back to character offsets of the original context: the answer is the exact context
substring. Log-probabilities rather than raw logits, because logits of two windows have
unrelated offsets, while a window that does not hold the answer puts its probability on the
bos and so ranks its spans low.
"""
from __future__ import annotations

import itertools
import logging
from typing import Any, Callable, Dict, List, Literal, Optional, Sequence

import torch

from paragen.criteria.span import span_loss_sum
from paragen.errors import ConfigError, DataError, InputError
from paragen.interfaces import OffsetTokenizer
from paragen.registry import build, register_task
from paragen.tasks.common import (build_loader, build_training, check_splits, place_model,
                                  report_scores, run_task, test_split_like_valid)
from paragen.tasks.spans import (best_spans, best_window, char_to_token_spans, plan_windows,
                                 window_targets)
from paragen.tokenizers import build_tokenizers

logger = logging.getLogger("paragen")


@register_task
class ExtractiveQATask:
    """`max_length`: tokens per row (question, context window and 3 specials); `doc_stride`:
    context tokens between the starts of consecutive windows; `max_query_length`: a longer
    question keeps its first tokens; `max_answer_length`: the most tokens an answer spans."""

    output_field = "answer"
    default_criterion = {"class": "SpanCrossEntropy"}
    default_metrics = {"exact_match": {"class": "ExactMatch"}, "f1": {"class": "SquadF1"}}

    def __init__(self, tokenizer: Dict[str, Any], model: Dict[str, Any],
                 data: Dict[str, Dict[str, Any]] = None, dataloader: Dict[str, Any] = None,
                 criterion: Dict[str, Any] = None, trainer: Dict[str, Any] = None,
                 evaluator: Dict[str, Any] = None,
                 mode: Literal["train", "evaluate", "infer"] = "train", max_length: int = 384,
                 doc_stride: int = 128, max_query_length: int = 64, max_answer_length: int = 30,
                 output_dir: Optional[str] = None, *, env, config: Dict[str, Any],
                 base_dir: str = "."):
        for key, value in (("doc_stride", doc_stride), ("max_query_length", max_query_length),
                           ("max_answer_length", max_answer_length)):
            if value < 1:
                raise ConfigError(f"task.{key}: must be ≥ 1, got {value}")
        if max_length < max_query_length + 4:
            raise ConfigError(f"task.max_length: {max_length} leaves no room for context after "
                              f"a question of max_query_length {max_query_length} tokens and 3 "
                              f"special tokens")
        self.mode, self.env, self.max_length, self.doc_stride = mode, env, max_length, doc_stride
        self.max_query_length, self.max_answer_length = max_query_length, max_answer_length
        self.config, self.base_dir, self.output_dir = config, base_dir, output_dir
        self.sections = {"tokenizer": tokenizer, "model": model, "data": data or {},
                         "dataloader": dataloader or {}, "criterion": criterion,
                         "trainer": trainer, "evaluator": evaluator}

    # ------------------------------------------------------------------ build
    def build(self) -> "ExtractiveQATask":
        self.tokenizer, _ = build_tokenizers(self.sections["tokenizer"], "text", "text",
                                             self.base_dir)
        if not isinstance(self.tokenizer, OffsetTokenizer):
            raise ConfigError(f"task.tokenizer: {type(self.tokenizer).__name__} gives no token "
                              f"offsets (encode_with_offsets), which extractive QA needs to "
                              f"return context substrings (SentencePieceTokenizer has them)")
        raw = {} if self.mode == "infer" else {
            name: self._read_split(name, cfg) for name, cfg in self.sections["data"].items()}
        if self.mode != "infer":
            check_splits({name: len(split["questions"]) for name, split in raw.items()},
                         self.mode)
        self.model = build("model", self.sections["model"], "task.model",
                           vocab_size=self.tokenizer.vocab_size, pad_id=self.tokenizer.pad_id)
        place_model(self.model, self.env, self.mode)
        if self.mode == "infer":
            return self
        self.splits = {name: self.encode(**split, name=name) for name, split in raw.items()}
        self.loaders = {name: self._build_loader(name, split)
                        for name, split in self.splits.items()}
        self.evaluator = build("evaluator", self.sections["evaluator"] or {
            "class": "Evaluator", "metric": self.default_metrics, "log_examples": 0},
            "task.evaluator")
        if self.mode == "train":
            metrics = list(self.evaluator.metrics)
            build_training(self, self.default_criterion,
                           "f1" if "f1" in metrics else next(iter(metrics), "loss"))
        return self

    # ------------------------------------------------------------------ data
    def _read_split(self, name: str, cfg: Dict[str, Any]) -> Dict[str, Any]:
        """Questions, their contexts (each paragraph once), gold answers, and where each
        question came from."""
        dataset = build("dataset", cfg, f"task.data.{name}")
        if not (hasattr(dataset, "contexts") and hasattr(dataset, "paragraph_of")):
            raise ConfigError(f"task.data.{name}.class: {type(dataset).__name__} does not give "
                              f"questions with contexts and answers (use SquadDataset)")
        location = getattr(dataset, "location", None)
        return {"questions": dataset.lines("question"), "contexts": dataset.contexts,
                "paragraph": dataset.paragraph_of, "answers": dataset.lines("answers"),
                "where": location or (lambda i: f"task.data.{name}, question {i + 1}")}

    def encode(self, questions: Sequence[str], contexts: Sequence[str], paragraph: Sequence[int],
               answers: Optional[Sequence[Sequence[Dict[str, Any]]]] = None,
               where: Callable[[int], str] = lambda i: f"question {i + 1}",
               name: str = "input") -> Dict[str, Any]:
        """Tokenize questions and contexts once, plan the windows and (with `answers`, a list
        of `{"text", "answer_start"}` per question) the targets; everything stays in flat
        tensors that `collate` gathers from."""
        question_ids = self.tokenizer.encode_batch(list(questions))
        cut = sum(len(ids) > self.max_query_length for ids in question_ids)
        question_ids = [ids[:self.max_query_length] for ids in question_ids]
        if cut:
            logger.warning("%s: %d question(s) longer than max_query_length %d tokens were "
                           "truncated", name, cut, self.max_query_length)
        encoded = self.tokenizer.encode_with_offsets(list(contexts))
        paragraph = torch.as_tensor(paragraph, dtype=torch.long)
        split = {"contexts": contexts, "paragraph": paragraph,
                 **_pack("q", question_ids), **_pack("c", [ids for ids, _ in encoded])}
        offsets = torch.tensor(list(itertools.chain.from_iterable(o for _, o in encoded)),
                               dtype=torch.long).reshape(-1, 2)
        split["c_begin"], split["c_end"] = offsets[:, 0].contiguous(), offsets[:, 1].contiguous()
        for side, lengths in (("context", split["c_lengths"][paragraph]),
                              ("question", split["q_lengths"])):
            empty = lengths.eq(0).nonzero().flatten().tolist()
            if empty:
                raise DataError(f"{where(empty[0])}: the {side} has no tokens (nothing left "
                                f"after the tokenizer's normalisation)")
        window_question, window_start, window_length = plan_windows(
            split["q_lengths"], split["c_lengths"][paragraph], self.max_length, self.doc_stride)
        split.update(w_question=window_question, w_start=window_start, w_length=window_length,
                     lengths=split["q_lengths"][window_question] + window_length + 3)
        if answers is not None:
            logger.info("%s: %d questions in %d windows of at most %d tokens", name,
                        len(paragraph), len(window_question), self.max_length)
            self._encode_targets(split, answers, where, name)
        return split

    def _encode_targets(self, split: Dict[str, Any], answers, where, name: str) -> None:
        """Gold answer strings for the metrics; the first gold answer's token span, and each
        window's start/end row positions, for the loss."""
        split["golds"] = [[answer["text"] for answer in golds] for golds in answers]
        char_start = torch.tensor([golds[0]["answer_start"] for golds in answers],
                                  dtype=torch.long)
        char_end = char_start + torch.tensor([len(golds[0]["text"]) for golds in answers],
                                             dtype=torch.long)
        first, last, exact = char_to_token_spans(
            split["c_begin"], split["c_end"], split["c_offsets"], split["c_lengths"],
            split["paragraph"], char_start, char_end)
        split["answer_tokens"] = torch.stack([first, last], -1)
        inexact = (~exact).nonzero().flatten().tolist()
        if inexact:
            i = inexact[0]
            covered = span_text(split, torch.tensor([i]), first[i:i + 1], last[i:i + 1])[0][0]
            logger.info("%s: %d of %d answers do not start and end on token boundaries; their "
                        "targets cover the enclosing tokens (first: %s, %r as %r)", name,
                        len(inexact), len(answers), where(i), answers[i][0]["text"], covered)
        split["start"], split["end"] = window_targets(
            first, last, split["w_question"], split["w_start"], split["w_length"],
            split["q_lengths"])

    def collate(self, indices: List[int], split: Dict[str, Any]) -> Dict[str, Any]:
        """Padded (B,S) rows of windows `indices`, gathered from the flat question and context
        tensors in one indexing operation each; `segments` 0 for bos, question and eos, 1 for
        the context and its eos; `context` marks the positions an answer may take."""
        window = torch.tensor(indices, dtype=torch.long)
        question = split["w_question"][window]
        question_length, window_length = split["q_lengths"][question], split["w_length"][window]
        context_at = (question_length + 2)[:, None]
        context_end = context_at + window_length[:, None]
        positions = torch.arange(int(context_end.max()) + 1)[None, :]
        in_question = (positions >= 1) & (positions <= question_length[:, None])
        in_context = (positions >= context_at) & (positions < context_end)
        from_question = (split["q_offsets"][question, None] + positions - 1).clamp(
            0, len(split["q_flat"]) - 1)
        from_context = (split["c_offsets"][split["paragraph"][question]][:, None]
                        + split["w_start"][window, None] + positions - context_at).clamp(
            0, len(split["c_flat"]) - 1)
        src = torch.where(in_question, split["q_flat"][from_question],
                          torch.where(in_context, split["c_flat"][from_context],
                                      self.tokenizer.pad_id))
        src = src.masked_fill((positions == context_at - 1) | (positions == context_end),
                              self.tokenizer.eos_id)
        src[:, 0] = self.tokenizer.bos_id
        batch = {"ids": window, "ntokens": len(indices), "src": src, "context": in_context,
                 "segments": ((positions >= context_at) & (positions <= context_end)).long()}
        if "start" in split:
            batch["start"], batch["end"] = split["start"][window], split["end"][window]
        return batch

    def _build_loader(self, name: str, split: Dict[str, Any]):
        return build_loader(name, self.sections["dataloader"], split["lengths"].numpy(),
                            lambda indices: self.collate(indices, split))

    # ------------------------------------------------------------------ decoding
    @torch.no_grad()
    def _decode(self, split: Dict[str, Any], loader) -> Dict[str, Any]:
        """Per window: the best span's log-probability and its row positions; the summed
        loss over windows when the split has targets."""
        count = len(split["lengths"])
        scores = torch.full((count,), -torch.inf)
        starts, ends = torch.zeros(count, dtype=torch.long), torch.zeros(count, dtype=torch.long)
        loss_sum, device = 0.0, self.env.device
        was_training = self.model.training
        self.model.eval()
        with self.env.autocast():
            for batch in loader.epoch_batches(0):
                outputs = self.model(batch["src"].to(device), batch["segments"].to(device))
                start_logits, end_logits = outputs["start_logits"], outputs["end_logits"]
                score, start, end = best_spans(
                    start_logits.float().log_softmax(-1), end_logits.float().log_softmax(-1),
                    batch["context"].to(device), self.max_answer_length)
                ids = batch["ids"]
                scores[ids], starts[ids], ends[ids] = score.cpu(), start.cpu(), end.cpu()
                if "start" in batch:
                    loss_sum += span_loss_sum(start_logits, end_logits, batch["start"].to(device),
                                              batch["end"].to(device)).item()
        self.model.train(was_training)
        return {"scores": scores, "starts": starts, "ends": ends, "loss": loss_sum / count}

    def answers(self, split: Dict[str, Any], decoded: Dict[str, Any]) -> List[Dict[str, Any]]:
        """Per question, from its best window: `{"answer": context substring, "score": the
        span's probability in its window, "start", "end": character offsets in the context}`."""
        questions = len(split["paragraph"])
        best = best_window(decoded["scores"], split["w_question"], questions)
        shift = split["w_start"][best] - split["q_lengths"] - 2  # row position → context token
        texts, char_start, char_end = span_text(split, torch.arange(questions),
                                                decoded["starts"][best] + shift,
                                                decoded["ends"][best] + shift)
        probability = decoded["scores"][best].double().exp().round(decimals=6).tolist()
        return [{"answer": text, "score": p, "start": a, "end": b}
                for text, p, a, b in zip(texts, probability, char_start, char_end)]

    # ------------------------------------------------------------------ run
    def run(self) -> Dict[str, Any]:
        return run_task(self)

    def _eval_splits(self) -> List[str]:
        return [name for name in self.splits if name != "train"]

    def validate(self) -> Dict[str, float]:
        """Loss and metrics on every non-train split (`valid.loss`, `valid.f1`, ...)."""
        scores: Dict[str, float] = {}
        for name in self._eval_splits():
            split = self.splits[name]
            decoded = self._decode(split, self.loaders[name])
            scores[f"{name}.loss"] = decoded["loss"]
            hypotheses = [row["answer"] for row in self.answers(split, decoded)]
            for metric, (value, _) in self.evaluator.score(hypotheses, split["golds"]).items():
                scores[f"{name}.{metric}"] = value
        return scores

    def evaluate(self) -> Dict[str, Any]:
        """Print exact match and F1 per split; `output_dir` receives one answer per line
        (line breaks inside an answer written as spaces, to keep one line per question)."""
        results: Dict[str, Any] = {}
        for name in self._eval_splits():
            split = self.splits[name]
            hypotheses = [row["answer"] for row in
                          self.answers(split, self._decode(split, self.loaders[name]))]
            scores = self.evaluator.score(hypotheses, split["golds"])
            lines = [" ".join(text.splitlines()) for text in hypotheses]
            results.update(report_scores(name, scores, self.output_dir, lines))
        return results

    # ------------------------------------------------------------------ serving
    plain_answers = False  # an answer comes with its score and character offsets
    max_input_tokens = None  # a long context is read in windows, never cut

    def describe(self) -> Dict[str, Any]:
        return {"input": "question<TAB>context", "output_field": self.output_field,
                "max_answer_length": self.max_answer_length}

    def input_tokens(self, lines: Sequence[str], first_line: int = 1) -> List[int]:
        """Question plus context tokens of each `question<TAB>context` line."""
        rows = _question_context_rows(lines, first_line)
        sides = [self.tokenizer.encode_batch([row[i] for row in rows]) for i in (0, 1)]
        return [len(q) + len(c) for q, c in zip(*sides)]

    def predict(self, lines: Sequence[str], first_line: int = 1) -> List[Dict[str, Any]]:
        """One answer per line `question<TAB>context` (split at the first tab, so a context
        may hold tabs), in input order; questions on the same context share its encoding."""
        rows = _question_context_rows(lines, first_line)
        if not rows:
            return []
        index: Dict[str, int] = {}
        paragraph = [index.setdefault(context, len(index)) for _, context in rows]
        split = self.encode([question for question, _ in rows], list(index), paragraph,
                            where=lambda i: f"input line {first_line + i}")
        return self.answers(split, self._decode(split, self._build_loader("infer", split)))

    @classmethod
    def input_data(cls, task_config: Dict[str, Any], input: str,
                   reference: Optional[str] = None) -> Dict[str, Any]:
        """`evaluate --input FILE`: every question of a SQuAD v1.1 JSON file (read like the
        stored validation split, but `split: all`); the file holds its own answers."""
        if reference:
            raise ConfigError(f"--reference is for translation; {input} holds the gold "
                              f"answers itself")
        return test_split_like_valid(task_config, input, "SquadDataset",
                                     drop=("max_samples", "split", "test_every"))


def _question_context_rows(lines: Sequence[str], first_line: int) -> List[List[str]]:
    rows = [line.split("\t", 1) for line in lines]
    for i, row in enumerate(rows):
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise InputError(i, "expected a question and its context separated by a tab, "
                                "both non-empty", first_line)
    return rows


def _pack(prefix: str, rows: List[List[int]]) -> Dict[str, torch.Tensor]:
    """Rows of ids as one flat tensor with offsets and lengths (`<prefix>_flat` ...)."""
    lengths = torch.tensor([len(row) for row in rows], dtype=torch.long)
    flat = torch.tensor(list(itertools.chain.from_iterable(rows)), dtype=torch.long)
    return {f"{prefix}_flat": flat, f"{prefix}_offsets": lengths.cumsum(0) - lengths,
            f"{prefix}_lengths": lengths}


def span_text(split: Dict[str, Any], question: torch.Tensor, first: torch.Tensor,
              last: torch.Tensor):
    """(texts, char starts, char ends) of context token spans `first..last` of questions
    `question`: the exact substring of the original context between the first token's start
    and the last token's end."""
    paragraph = split["paragraph"][question]
    base = split["c_offsets"][paragraph]
    char_start = split["c_begin"][base + first].tolist()
    char_end = split["c_end"][base + last].tolist()
    contexts = split["contexts"]
    texts = [contexts[p][a:b] for p, a, b in zip(paragraph.tolist(), char_start, char_end)]
    return texts, char_start, char_end
