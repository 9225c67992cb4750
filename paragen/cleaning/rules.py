"""The cleaning rules and their settings: surface filters that judge one pair alone, and the
duplicate filters that remember what they have seen.

Every rule has a name (the reason written beside each removed pair) and can be switched off;
its thresholds live in `CleanConfig`, which `paragen clean --config clean.yaml` and the flags
fill. The defaults follow the filters of ParaGen's WMT21 pipeline and of Moses'
`clean-corpus-n.perl`; a rule returns True when the pair must go.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
import unicodedata
from typing import Callable, Dict, List, Optional, Set, Tuple

from paragen.errors import ConfigError

# Checked in this order; the first rule a pair breaks is the reason written for it.
SURFACE_RULES = ("empty", "unprintable", "html_url", "copy", "repeated", "word_length",
                 "length", "ratio", "punctuation", "numbers")
LANGUAGE_RULE = "language"
DUPLICATE_RULES = ("duplicate", "near_duplicate")
ALIGNMENT_RULE = "alignment"
RULES = SURFACE_RULES + (LANGUAGE_RULE,) + DUPLICATE_RULES + (ALIGNMENT_RULE,)


@dataclasses.dataclass
class CleanConfig:
    """Every threshold of every rule (flags use the same names with `-` for `_`)."""

    src_lang: str = "de"
    tgt_lang: str = "en"
    disable: List[str] = dataclasses.field(default_factory=list)  # rule names switched off
    normalize: bool = True            # Moses punctuation normalisation before any rule
    min_words: int = 1                # length: fewest whitespace words per side
    max_words: int = 250              # length: most whitespace words per side
    max_ratio: float = 3.0            # ratio: longest side's words / shortest side's words
    max_char_ratio: float = 2.0       # ratio: the same in characters, for sides of 20 or more
    max_word_chars: int = 40          # word_length: longest word, in characters
    max_repeats: int = 5              # repeated: a character or word run longer than this
    max_punctuation: float = 0.5      # punctuation: share of a side's non-space characters
    max_digits: float = 0.5           # numbers: share of a side's non-space characters
    langid_min_chars: int = 20        # language: shorter lines are not judged
    langid_min_prob: float = 0.1      # language: least probability of the expected language
    langid_languages: List[str] = dataclasses.field(default_factory=list)  # [] = all 97
    min_script: float = 0.9           # language: least share of letters in the expected script
    align_min_score: float = -2.9     # alignment: least mean word log-probability
    align_sample: int = 1_000_000     # alignment: pairs the lexicon is learned from
    align_min_count: int = 1          # alignment: least link count of a lexicon entry
    align_min_prob: float = 0.0       # alignment: least p(t|s) and p(s|t) of an entry
    align_min_words: int = 4          # alignment: shorter pairs are not judged

    def enabled(self, rule: str) -> bool:
        return rule not in self.disable

    def validate(self) -> "CleanConfig":
        unknown = sorted(set(self.disable) - set(RULES))
        if unknown:
            raise ConfigError(f"clean: unknown rule(s) {', '.join(unknown)} to disable "
                              f"(rules: {', '.join(RULES)})")
        for name in ("max_punctuation", "max_digits", "langid_min_prob", "min_script",
                     "align_min_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"clean: {name} must lie in [0, 1], got {getattr(self, name)}")
        if self.min_words < 1 or self.max_words < self.min_words:
            raise ConfigError(f"clean: need 1 <= min_words <= max_words, got "
                              f"{self.min_words} and {self.max_words}")
        return self

    @classmethod
    def from_mapping(cls, values: Dict[str, object], origin: str) -> "CleanConfig":
        """A config from YAML keys, naming `origin` and the key when one is unknown or mistyped."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for key, value in values.items():
            if key not in fields:
                raise ConfigError(f"{origin}: unknown key {key!r} (known: "
                                  f"{', '.join(sorted(fields))})")
            expected = type(getattr(cls(), key))
            ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
            if not ok or (expected is not bool and isinstance(value, bool)):
                raise ConfigError(f"{origin}: {key} must be {expected.__name__}, "
                                  f"got {value!r}")
        return cls(**values)


RATIO_MIN_CHARS = 20  # shorter pairs ("Ja." / "Yes, sir.") skip the character ratio
_HTML = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(\s[^<>]*)?/?>|&(#\d+|#x[0-9A-Fa-f]+|[A-Za-z]+);")
_URL = re.compile(r"(https?|ftp)://|www\.\w|\b[\w.-]+@[\w-]+\.[A-Za-z]{2,}\b")
_REPEATED_CHAR = "(.)\\1{%d,}"
_REPEATED_WORD = r"(?:^|\s)(\S+)(?:\s+\1(?=\s|$)){%d,}"
_NOT_WORD = re.compile(r"[\W\d_]+", re.UNICODE)


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ufffd\ue000-\uf8ff]")


@functools.lru_cache(maxsize=1 << 16)
def _category(ch: str) -> str:
    return unicodedata.category(ch)


def _unprintable(text: str) -> bool:
    """Control characters (tab included: it breaks TSV), private-use, unassigned or surrogate
    code points, and U+FFFD, the mark of an earlier decoding error. Distinct characters are
    looked up once each, as in every per-character rule here: lines repeat their letters."""
    if _CONTROL.search(text):
        return True
    return not text.isascii() and any(_category(ch) in ("Co", "Cn", "Cs") for ch in set(text))


def _share(text: str, kind: Callable[[str], bool]) -> float:
    visible = len(text) - text.count(" ")
    return sum(text.count(ch) for ch in set(text) if kind(ch)) / visible if visible else 0.0


def _is_punctuation(ch: str) -> bool:
    return _category(ch)[0] in ("P", "S")


def _folded(text: str) -> str:
    """Lower-cased, digits and punctuation removed: what near duplicates and copies share."""
    return _NOT_WORD.sub(" ", text.lower()).strip()


class SurfaceRules:
    """The rules that judge a pair by itself, cheap and stateless, so worker processes can run
    them; `__call__` returns the first rule broken, or None."""

    def __init__(self, config: CleanConfig):
        self.config = config
        self.repeated_char = re.compile(_REPEATED_CHAR % config.max_repeats)
        self.repeated_word = re.compile(_REPEATED_WORD % config.max_repeats)
        self.checks: List[Tuple[str, Callable[[str, str, List[str], List[str]], bool]]] = [
            (rule, getattr(self, "_" + rule)) for rule in SURFACE_RULES if config.enabled(rule)]

    def __call__(self, src: str, tgt: str) -> Optional[str]:
        src_words, tgt_words = src.split(), tgt.split()
        for rule, check in self.checks:
            if check(src, tgt, src_words, tgt_words):
                return rule
        return None

    def _empty(self, src, tgt, sw, tw) -> bool:
        return not sw or not tw

    def _unprintable(self, src, tgt, sw, tw) -> bool:
        return _unprintable(src) or _unprintable(tgt)

    def _html_url(self, src, tgt, sw, tw) -> bool:
        return any(p.search(s) for p in (_HTML, _URL) for s in (src, tgt))

    def _copy(self, src, tgt, sw, tw) -> bool:
        return _folded(src) == _folded(tgt)

    def _repeated(self, src, tgt, sw, tw) -> bool:
        return any(p.search(s) for p in (self.repeated_char, self.repeated_word)
                   for s in (src, tgt))

    def _word_length(self, src, tgt, sw, tw) -> bool:
        return max(map(len, sw + tw), default=0) > self.config.max_word_chars

    def _length(self, src, tgt, sw, tw) -> bool:
        c = self.config
        return not (c.min_words <= len(sw) <= c.max_words and c.min_words <= len(tw) <= c.max_words)

    def _ratio(self, src, tgt, sw, tw) -> bool:
        c = self.config
        if max(len(sw), len(tw)) > c.max_ratio * max(1, min(len(sw), len(tw))):
            return True
        chars = sorted((len(src), len(tgt)))
        return chars[1] >= RATIO_MIN_CHARS and chars[1] > c.max_char_ratio * chars[0]

    def _punctuation(self, src, tgt, sw, tw) -> bool:
        return max(_share(src, _is_punctuation), _share(tgt, _is_punctuation)) > \
            self.config.max_punctuation

    def _numbers(self, src, tgt, sw, tw) -> bool:
        return max(_share(src, str.isdigit), _share(tgt, str.isdigit)) > self.config.max_digits


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()


class Deduplicator:
    """Exact and near duplicates of earlier kept pairs, remembered as 8-byte digests so that
    millions of pairs fit in memory."""

    def __init__(self, config: CleanConfig):
        self.exact_on = config.enabled("duplicate")
        self.near_on = config.enabled("near_duplicate")
        self.exact: Set[bytes] = set()
        self.near: Set[bytes] = set()

    def __call__(self, src: str, tgt: str) -> Optional[str]:
        exact = _digest(f"{src}\t{tgt}") if self.exact_on else b""
        if self.exact_on and exact in self.exact:
            return "duplicate"
        near = _digest(f"{_folded(src)}\t{_folded(tgt)}") if self.near_on else b""
        if self.near_on and near in self.near:
            return "near_duplicate"
        self.exact.add(exact)
        self.near.add(near)
        return None
