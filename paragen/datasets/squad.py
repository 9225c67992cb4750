"""SQuAD v1.1 JSON (`data[].paragraphs[].qas[].answers[]`), as SQuAD, XQuAD and MLQA ship it.

One sample per question. Every answer is checked against its context when the file is read:
`context[answer_start:answer_start + len(text)]` must be `text`, because a model trained on a
shifted span learns the wrong words without any error. A file that does not parse names its
line and column; a missing or mistyped key names its JSON path
(`data[3].paragraphs[0].qas[2].answers[0].answer_start`).

Fixed split (`split: train | test`): article a (0-based, in file order) belongs to the test
split when `a % test_every == test_every - 1`, so with the default 5 the 5th, 10th, 15th ...
articles are test and the rest train. Whole articles move together, so no test paragraph
shares an article (and its topic, names and facts) with a training paragraph, and the split
does not depend on anything but the file's order. XQuAD English (48 articles of 5 paragraphs)
splits into 39 train articles (195 paragraphs, 991 questions) and 9 test articles
(45 paragraphs, 199 questions). `split: all` keeps every question.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Dict, List, Literal, Optional

from paragen.datasets.text import read_text
from paragen.errors import DataError
from paragen.registry import register_dataset


@register_dataset
class SquadDataset(Sequence):
    """Sample i is `{"id", "question", "context", "answers": [{"text", "answer_start"}]}`.

    `contexts` holds each paragraph once and `paragraph_of[i]` the paragraph of question i, so
    a task tokenizes every context once however many questions it has. `location(i)` names
    the file, the question id and its JSON path, for errors raised later about a question.
    """

    def __init__(self, path: str, split: Literal["all", "train", "test"] = "all",
                 test_every: int = 5, max_samples: Optional[int] = None) -> None:
        if test_every < 2:
            raise ValueError(f"test_every: must be ≥ 2 (every n-th article is a test "
                             f"article), got {test_every}")
        text = read_text(path)
        try:
            root = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}:{err.colno}: invalid JSON ({err.msg})") from None
        self.path = path
        self.contexts: List[str] = []
        self.paragraph_of: List[int] = []
        self._ids: List[str] = []
        self._questions: List[str] = []
        self._answers: List[List[Dict[str, Any]]] = []
        self._json_paths: List[str] = []
        articles = self._field(root, "data", "", list)
        for a, article in enumerate(articles):
            where = f"data[{a}]"
            is_test = a % test_every == test_every - 1
            if split != "all" and is_test != (split == "test"):
                continue
            self._check(article, where, dict)
            for p, paragraph in enumerate(self._field(article, "paragraphs", where, list)):
                self._read_paragraph(paragraph, f"{where}.paragraphs[{p}]")
        if max_samples is not None:
            del self._ids[max_samples:], self._questions[max_samples:]
            del self._answers[max_samples:], self._json_paths[max_samples:]
            del self.paragraph_of[max_samples:]
            del self.contexts[(self.paragraph_of[-1] + 1) if self.paragraph_of else 0:]

    def _read_paragraph(self, paragraph: Any, where: str) -> None:
        self._check(paragraph, where, dict)
        context = self._field(paragraph, "context", where, str)
        if not context.strip():
            raise DataError(f"{self.path}: {where}.context: empty context")
        index = len(self.contexts)
        self.contexts.append(context)
        for q, qa in enumerate(self._field(paragraph, "qas", where, list)):
            at = f"{where}.qas[{q}]"
            self._check(qa, at, dict)
            qid = str(self._field(qa, "id", at, (str, int)))
            question = self._field(qa, "question", at, str)
            if not question.strip():
                raise DataError(f"{self.path}: {at}.question: empty question (id {qid})")
            answers = self._field(qa, "answers", at, list)
            if not answers:
                raise DataError(f"{self.path}: {at}.answers: question {qid} has no answer "
                                f"(SQuAD v2 unanswerable questions are not supported)")
            checked = [self._answer(answer, f"{at}.answers[{n}]", context, qid)
                       for n, answer in enumerate(answers)]
            self._ids.append(qid)
            self._questions.append(question)
            self._answers.append(checked)
            self._json_paths.append(at)
            self.paragraph_of.append(index)

    def _answer(self, answer: Any, where: str, context: str, qid: str) -> Dict[str, Any]:
        self._check(answer, where, dict)
        text = self._field(answer, "text", where, str)
        start = self._field(answer, "answer_start", where, int)
        if not text:
            raise DataError(f"{self.path}: {where}.text: empty answer (question {qid})")
        found = context[start:start + len(text)] if start >= 0 else ""
        if found != text:
            raise DataError(f"{self.path}: question {qid} ({where}): answer_start {start} "
                            f"points at {found!r} in the context, not at the answer text "
                            f"{text!r}")
        return {"text": text, "answer_start": start}

    def _field(self, node: Dict[str, Any], key: str, where: str, kind) -> Any:
        """`node[key]`, which must exist and be of `kind`; else an error naming the JSON path."""
        path = f"{where}.{key}" if where else key
        if key not in node:
            raise DataError(f"{self.path}: {path}: missing key (a SQuAD v1.1 file has "
                            f"data[].paragraphs[].context/qas[].id/question/answers[].text/"
                            f"answer_start)")
        return self._check(node[key], path, kind)

    def _check(self, value: Any, path: str, kind) -> Any:
        wrong_bool = isinstance(value, bool) and kind is not bool
        if not isinstance(value, kind) or wrong_bool:
            names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            expected = {"dict": "an object", "list": "a list", "str": "a string",
                        "int": "an integer"}.get(names, names)
            raise DataError(f"{self.path}: {path}: expected {expected}, got "
                            f"{type(value).__name__} {json.dumps(value)[:60]}")
        return value

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index: int) -> Dict[str, Any]:  # type: ignore[override]
        return {"id": self._ids[index], "question": self._questions[index],
                "context": self.contexts[self.paragraph_of[index]],
                "answers": self._answers[index]}

    def lines(self, field: str) -> List[Any]:
        """A whole column: `id`, `question`, `context` (one per question) or `answers`."""
        columns = {"id": self._ids, "question": self._questions, "answers": self._answers}
        if field == "context":
            return [self.contexts[p] for p in self.paragraph_of]
        if field not in columns:
            raise DataError(f"{self.path}: no field {field!r} (fields: id, question, context, "
                            f"answers)")
        return columns[field]

    def location(self, index: int) -> str:
        """`file: question <id> (data[a].paragraphs[p].qas[q])`."""
        return f"{self.path}: question {self._ids[index]} ({self._json_paths[index]})"
