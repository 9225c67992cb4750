"""Line-based datasets: plain text, sentence-aligned parallel text and JSON lines.

Every error names the file and the 1-based line, because a corrupted line in a 29k-line corpus
is otherwise a needle in a haystack. Empty lines are never dropped silently: they are counted,
logged and handled according to an explicit `empty_lines` policy.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any, BinaryIO, Dict, Iterator, List, Literal, Optional, Union

from paragen.errors import DataError
from paragen.registry import register_dataset

logger = logging.getLogger("paragen")

EmptyPolicy = Literal["keep", "skip", "error"]


def decode_line(raw: bytes, name: str, number: int) -> str:
    """One line of bytes as text, without its `\n` / `\r\n`; bad UTF-8 names file and line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{name}:{number}: not valid UTF-8 ({err.reason} at column "
                        f"{err.start + 1})") from None
    if text.endswith("\n"):
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
    return text


def iter_line_chunks(stream: BinaryIO, name: str, size: int) -> Iterator[List[str]]:
    """A binary stream's lines in chunks of `size`, so inputs of any length use bounded memory."""
    chunk: List[str] = []
    for number, raw in enumerate(stream, start=1):
        chunk.append(decode_line(raw, name, number))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def read_text(path: str) -> str:
    """A whole UTF-8 file as one string; a missing file or bad UTF-8 names file and line.

    The whole file is decoded at once (fast for a 29k-line corpus); only when decoding fails do
    we spend time locating the offending line, so the error can point straight at it.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 ({err.reason} at column {column})") from None
    return text


def read_lines(path: str) -> List[str]:
    """Read a UTF-8 file into lines, removing only the line terminators (`\\n` or `\\r\\n`).

    Splitting on `\\n` only (not `str.splitlines`) keeps exotic separators such as U+2028
    inside a line, which would otherwise silently misalign parallel files.
    """
    text = read_text(path)
    if not text:
        return []
    if "\r\n" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if lines[-1] == "":  # the file ends with a terminator: no extra empty line
        lines.pop()
    return lines


def _empty_indices(lines: List[str]) -> List[int]:
    return [i for i, line in enumerate(lines) if not line.strip()]


def _apply_empty_policy(empty: List[int], policy: str, where: List[str], total: int) -> List[int]:
    """Log (and possibly reject) the empty lines; return the indices of the samples to keep.

    `where[i]` names the file(s) in which sample i is empty, for the error message.
    """
    if policy not in ("keep", "skip", "error"):
        raise DataError(f"empty_lines must be 'keep', 'skip' or 'error', got {policy!r}")
    if not empty:
        return list(range(total))
    if policy == "error":
        raise DataError(f"{where[0]}:{empty[0] + 1}: empty line ({len(empty)} empty in total; "
                        "set empty_lines to 'keep' or 'skip' to accept them)")
    action = "kept" if policy == "keep" else "skipped"
    logger.warning("%s: %d empty line(s) %s (first at line %d)",
                   where[0], len(empty), action, empty[0] + 1)
    if policy == "keep":
        return list(range(total))
    dropped = set(empty)
    return [i for i in range(total) if i not in dropped]


@register_dataset
class TextDataset(Sequence):
    """One string per line of a monolingual file (e.g. text to translate), or of several files
    one after the other (a pre-training corpus gathered from several sources)."""

    def __init__(self, path: Union[str, List[str]], empty_lines: EmptyPolicy = "keep",
                 max_samples: Optional[int] = None) -> None:
        paths = [path] if isinstance(path, str) else list(path)
        if not paths:
            raise DataError("TextDataset: `path` names no file")
        lines: List[str] = []
        self.num_empty = 0
        for file in paths:
            file_lines = read_lines(file)
            empty = _empty_indices(file_lines)
            keep = _apply_empty_policy(empty, empty_lines, [file] * len(empty), len(file_lines))
            lines.extend(file_lines if len(keep) == len(file_lines)
                         else [file_lines[i] for i in keep])
            self.num_empty += len(empty)
        self.path = path
        self._lines = lines[:max_samples] if max_samples is not None else lines

    def __len__(self) -> int:
        return len(self._lines)

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        return self._lines[index]

    def lines(self) -> List[str]:
        """All samples as one list, for batch tokenization."""
        return self._lines


@register_dataset
class ParallelTextDataset(Sequence):
    """Sentence-aligned files, one per language; sample i is `{key: line i of that file}`.

    Columns are stored per key rather than as a list of dicts: the task usually tokenizes a whole
    column in one multithreaded call (`lines(key)`), and 29k small dicts would waste memory.
    """

    def __init__(self, path: Dict[str, str], empty_lines: EmptyPolicy = "keep",
                 max_samples: Optional[int] = None) -> None:
        if not path:
            raise DataError("ParallelTextDataset: `path` must map at least one key to a file")
        self.keys: List[str] = list(path)
        columns = {key: read_lines(file) for key, file in path.items()}
        first = self.keys[0]
        for key in self.keys[1:]:
            if len(columns[key]) != len(columns[first]):
                raise DataError(
                    f"parallel files are not aligned: {path[first]} has {len(columns[first])} "
                    f"lines but {path[key]} has {len(columns[key])}")
        total = len(columns[first])
        empty_in = {key: set(_empty_indices(column)) for key, column in columns.items()}
        empty = sorted(set().union(*empty_in.values()))
        where = [next(path[k] for k in self.keys if i in empty_in[k]) for i in empty]
        keep = _apply_empty_policy(empty, empty_lines, where, total)
        if len(keep) != total:
            columns = {key: [column[i] for i in keep] for key, column in columns.items()}
        if max_samples is not None:
            columns = {key: column[:max_samples] for key, column in columns.items()}
        self.path = dict(path)
        self.num_empty = len(empty)
        self._columns = columns

    def __len__(self) -> int:
        return len(self._columns[self.keys[0]])

    def __getitem__(self, index: int) -> Dict[str, str]:  # type: ignore[override]
        return {key: column[index] for key, column in self._columns.items()}

    def lines(self, key: str) -> List[str]:
        """The whole column for `key`, for batch tokenization."""
        return self._columns[key]


@register_dataset
class JsonlDataset(Sequence):
    """One JSON object per line. With `fields`, each sample keeps only those keys (all required);
    with `max_samples`, only the first lines are read (a slice of a large file).

    `location(i)` names the file and line of sample i (`test.jsonl:14`), for errors raised later
    about a field's content (a seq2seq task's missing or empty field)."""

    def __init__(self, path: str, fields: Optional[List[str]] = None,
                 max_samples: Optional[int] = None) -> None:
        samples: List[Dict[str, Any]] = []
        lines = read_lines(path)
        for number, line in enumerate(lines[:max_samples], start=1):
            try:
                sample = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{number}: invalid JSON ({err.msg} at column {err.colno})"
                                ) from None
            if not isinstance(sample, dict):
                raise DataError(f"{path}:{number}: expected a JSON object, got "
                                f"{type(sample).__name__}")
            if fields is not None:
                missing = [field for field in fields if field not in sample]
                if missing:
                    raise DataError(f"{path}:{number}:{missing[0]}: missing field "
                                    f"(line has {', '.join(sorted(sample)) or 'no fields'})")
                sample = {field: sample[field] for field in fields}
            samples.append(sample)
        self.path = path
        self.fields = fields
        self._samples = samples

    def __len__(self) -> int:
        return len(self._samples)

    def __getitem__(self, index: int) -> Dict[str, Any]:  # type: ignore[override]
        return self._samples[index]

    def location(self, index: int) -> str:
        """`file:line` of sample `index` (every line is a sample: an empty one is an error)."""
        return f"{self.path}:{index + 1}"
