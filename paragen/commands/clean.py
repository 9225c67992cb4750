"""`paragen clean --src train.de --tgt train.en --output-prefix clean/train`: parallel-data cleaning.

The rules ParaGen's WMT21 pipeline applied, streaming and line-aligned across both sides:
  1. punctuation normalisation (sacremoses, Moses' normalize-punctuation) of both sides;
  2. `empty`: either side empty;
  3. `length`: either side outside [min_words, max_words] whitespace words;
  4. `ratio`: word-count ratio above max_ratio;
  5. `duplicate`: the same (normalised) pair seen before;
  6. `near_duplicate`: the same pair once lower-cased with digits and punctuation removed;
  7. `language`: a side whose language (py3langid) is not the expected one; only sentences
     of at least `langid_min_chars` characters are judged, as short captions are too often
     misidentified.
Kept pairs go to PREFIX.<src_lang>/<tgt_lang>; every removed pair, with its rule and line
number, to PREFIX.removed.tsv, so nothing disappears silently. Needs the `clean` extra.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
from collections import Counter
from typing import Callable, Iterator, Optional, Tuple

from paragen.datasets import decode_line
from paragen.errors import ConfigError, DataError

RULES = ("empty", "length", "ratio", "duplicate", "near_duplicate", "language")
_NOT_WORD = re.compile(r"[\W\d_]+", re.UNICODE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", required=True, help="source side, one sentence per line")
    parser.add_argument("--tgt", required=True, help="target side, line-aligned with --src")
    parser.add_argument("--src-lang", default="de", help="expected language of --src")
    parser.add_argument("--tgt-lang", default="en", help="expected language of --tgt")
    parser.add_argument("--output-prefix", required=True,
                        help="writes PREFIX.SRC_LANG, PREFIX.TGT_LANG and the removed pairs")
    parser.add_argument("--min-words", type=int, default=1, help="fewest words per side")
    parser.add_argument("--max-words", type=int, default=250, help="most words per side")
    parser.add_argument("--max-ratio", type=float, default=3.0,
                        help="largest length ratio between the two sides")
    parser.add_argument("--langid-min-chars", type=int, default=30,
                        help="shorter lines skip language identification")
    parser.add_argument("--no-normalize", action="store_true",
                        help="keep punctuation as it is (no Moses normalisation)")
    parser.add_argument("--no-langid", action="store_true",
                        help="skip the language-identification filter")


def read_pairs(src: str, tgt: str) -> Iterator[Tuple[int, str, str]]:
    """(line number, source, target), failing on bad UTF-8 or files of different lengths."""
    for path in (src, tgt):
        if not os.path.isfile(path):
            raise DataError(f"{path}: file not found")
    with open(src, "rb") as fs, open(tgt, "rb") as ft:
        number = 0
        while True:
            a, b = fs.readline(), ft.readline()
            if not a and not b:
                return
            number += 1
            if not a or not b:
                short, other = (src, tgt) if not a else (tgt, src)
                raise DataError(f"parallel files are not aligned: {short} ends at line "
                                f"{number - 1} but {other} goes on")
            yield number, decode_line(a, src, number), decode_line(b, tgt, number)


def _key(a: str, b: str) -> bytes:
    return hashlib.blake2b(f"{a}\t{b}".encode("utf-8"), digest_size=8).digest()


class PairFilter:
    """Applies the rules in order; `__call__` returns the first rule a pair breaks, or None."""

    def __init__(self, args: argparse.Namespace,
                 identify: Optional[Callable[[str], str]] = None):
        self.args, self.identify = args, identify
        self.seen, self.seen_near = set(), set()

    def __call__(self, src: str, tgt: str) -> Optional[str]:
        a = self.args
        if not src.strip() or not tgt.strip():
            return "empty"
        ns, nt = len(src.split()), len(tgt.split())
        if not (a.min_words <= ns <= a.max_words and a.min_words <= nt <= a.max_words):
            return "length"
        if max(ns, nt) / min(ns, nt) > a.max_ratio:
            return "ratio"
        exact = _key(src, tgt)
        if exact in self.seen:
            return "duplicate"
        near = _key(_NOT_WORD.sub(" ", src.lower()).strip(), _NOT_WORD.sub(" ", tgt.lower()).strip())
        if near in self.seen_near:
            return "near_duplicate"
        if self.identify is not None and any(
                len(text) >= a.langid_min_chars and self.identify(text) != lang
                for text, lang in ((src, a.src_lang), (tgt, a.tgt_lang))):
            return "language"
        self.seen.add(exact)
        self.seen_near.add(near)
        return None


def run(args: argparse.Namespace) -> int:
    try:
        from sacremoses import MosesPunctNormalizer
    except ImportError:
        raise ConfigError("cleaning needs the clean extra: pip install 'paragen[clean]'") from None
    identify = None
    if not args.no_langid:
        import py3langid

        identify = lambda text: py3langid.classify(text)[0]  # noqa: E731
    normalize = {lang: MosesPunctNormalizer(lang=lang).normalize
                 for lang in (args.src_lang, args.tgt_lang)}
    keep = PairFilter(args, identify)
    prefix = args.output_prefix
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    outputs = [f"{prefix}.{args.src_lang}", f"{prefix}.{args.tgt_lang}", f"{prefix}.removed.tsv"]
    counts: Counter = Counter()
    try:
        with open(outputs[0] + ".tmp", "w", encoding="utf-8") as out_src, \
                open(outputs[1] + ".tmp", "w", encoding="utf-8") as out_tgt, \
                open(outputs[2] + ".tmp", "w", encoding="utf-8") as removed:
            for number, src, tgt in read_pairs(args.src, args.tgt):
                if not args.no_normalize:
                    src, tgt = normalize[args.src_lang](src), normalize[args.tgt_lang](tgt)
                rule = keep(src, tgt)
                counts[rule or "kept"] += 1
                if rule is None:
                    out_src.write(src + "\n")
                    out_tgt.write(tgt + "\n")
                else:
                    removed.write(f"{rule}\t{number}\t{src}\t{tgt}\n")
    except BaseException:
        for path in outputs:
            if os.path.exists(path + ".tmp"):
                os.remove(path + ".tmp")
        raise
    for path in outputs:
        os.replace(path + ".tmp", path)
    total = sum(counts.values())
    print(f"{total} pairs: kept {counts['kept']}, removed {total - counts['kept']} "
          f"({', '.join(f'{r} {counts[r]}' for r in RULES)}); removed pairs in {outputs[2]}")
    return 0
