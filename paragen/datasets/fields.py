"""Field paths into JSON samples (`source`, `target[0]`, `meta.title`) and the texts they hold.

A seq2seq config names what to read from each JSON line by a path: names separated by dots,
each optionally followed by list indices in brackets. A path is checked when the config is
read (`parse_field_path`); a sample that lacks the field, or a list too short for the index,
is a `DataError` naming the file, the line and the path, never a silently empty text.

A field may hold one text or a list of texts. What a list means is the reader's choice:
`field_texts` joins a list of sentences into one text (a document), `field_references` keeps
it as several alternative references (SciTLDR's TLDRs). Line breaks inside a text become
spaces, because the texts end up in files that hold one text per line (the sources
`generate` and `distill` read, the hypotheses `evaluate` writes).
"""
from __future__ import annotations

import re
from typing import Any, Callable, List, Sequence, Tuple, Union

from paragen.errors import ConfigError, DataError

Step = Union[str, int]
_PART = r"[^.\[\]]+(?:\[\d+\])*"
_PATH = re.compile(rf"{_PART}(?:\.{_PART})*")
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_LINE_BREAKS = re.compile(r"[\r\n]+")


def parse_field_path(path: str, config_key: str) -> Tuple[Step, ...]:
    """`a.b[0][2]` → ('a', 'b', 0, 2); a malformed path is a ConfigError at `config_key`."""
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise ConfigError(f"{config_key}: {path!r} is not a field path (names separated by "
                          f"dots, each optionally followed by list indices: source, target[0], "
                          f"meta.title)")
    return tuple(name if name else int(index) for name, index in _STEP.findall(path))


def is_plain_name(steps: Tuple[Step, ...]) -> bool:
    """A path of one name, no index: what a column of line-aligned text files can be keyed by."""
    return len(steps) == 1


def field_texts(samples: Sequence[Any], path: str, steps: Tuple[Step, ...], join: str,
                location: Callable[[int], str]) -> List[str]:
    """One text per sample: the field's string, or its list of strings (sentences) joined
    with `join`. `location(i)` names sample i (file:line) in errors."""
    return _per_sample(samples, steps, location, path, lambda value: _joined(value, join))


def field_references(samples: Sequence[Any], path: str, steps: Tuple[Step, ...],
                     location: Callable[[int], str]) -> List[List[str]]:
    """Alternative references per sample: a string is one, a list of strings is several."""
    return _per_sample(samples, steps, location, path, _references)


class _Unreadable(Exception):
    """A sample's field is missing or of the wrong shape; the caller adds where it is."""


def _per_sample(samples: Sequence[Any], steps: Tuple[Step, ...], location: Callable[[int], str],
                path: str, convert: Callable[[Any], Any]) -> List[Any]:
    values = []
    for index, sample in enumerate(samples):
        try:
            values.append(convert(field_value(sample, steps)))
        except _Unreadable as err:
            raise DataError(f"{location(index)}: {path}: {err}") from None
    return values


def field_value(sample: Any, steps: Tuple[Step, ...]) -> Any:
    """The value at `steps` in one JSON sample."""
    value, walked = sample, ""
    for step in steps:
        if isinstance(step, int):
            if not isinstance(value, list):
                raise _Unreadable(f"{walked} is {_json_type(value)}, not a list, so it has no "
                                  f"element [{step}]")
            if step >= len(value):
                state = "is an empty list" if not value else f"has {len(value)} element(s)"
                raise _Unreadable(f"{walked} {state}; no element [{step}]")
            value, walked = value[step], f"{walked}[{step}]"
        else:
            if not isinstance(value, dict):
                raise _Unreadable(f"{walked or 'the line'} is {_json_type(value)}, not an "
                                  f"object, so it has no field {step!r}")
            if step not in value:
                keys = ", ".join(sorted(value)) or "no fields"
                raise _Unreadable(f"no field {step!r} in {walked or 'the line'} (it has "
                                  f"{keys})")
            value, walked = value[step], f"{walked}.{step}" if walked else step
    return value


def _joined(value: Any, join: str) -> str:
    if isinstance(value, str):
        return one_line(value)
    return one_line(join.join(part.strip() for part in _strings(value)))


def _references(value: Any) -> List[str]:
    if isinstance(value, str):
        return [one_line(value)]
    return [one_line(text) for text in _strings(value)]


def one_line(text: str) -> str:
    """`text` with each run of line breaks replaced by one space."""
    return _LINE_BREAKS.sub(" ", text) if "\n" in text or "\r" in text else text


def _strings(value: Any) -> List[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _Unreadable(f"expected a text or a list of texts, got {_json_type(value)}")
    if not value:
        raise _Unreadable("an empty list, no text")
    return value


def _json_type(value: Any) -> str:
    if isinstance(value, list):
        return "an empty list" if not value else "a list" if not all(
            isinstance(item, str) for item in value) else "a list of texts"
    names = {dict: "an object", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)
