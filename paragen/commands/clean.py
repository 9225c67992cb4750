"""`paragen clean --src train.de --tgt train.en --output-prefix clean/train`: parallel-data
cleaning, the filters of ParaGen's WMT21 pipeline (paragen/cleaning/), streaming.

Pass 1 reads the two files line by line: Moses punctuation normalisation, then the surface
rules and the language rule (in `--workers` processes, in chunks, order kept), then exact and
near duplicates. Pass 2, when the alignment rule is on, learns a bilingual lexicon by word
alignment from up to `align_sample` pairs that survived pass 1 and drops the pairs it scores
below `align_min_score`. Memory stays bounded by the duplicate digests (16 bytes a pair), the
alignment sample and one chunk per worker.

Kept pairs go to PREFIX.<src_lang> / PREFIX.<tgt_lang>; every removed pair, with its rule and
input line number, to PREFIX.removed.tsv, so nothing disappears silently. Outputs appear only
when the whole run succeeds. Every threshold is a flag and a key of `--config clean.yaml`
(`CleanConfig` in paragen/cleaning/rules.py); flags win. Needs the `clean` extra.
"""
from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
from array import array
from collections import Counter
from itertools import islice
from typing import Callable, Iterator, List, Optional, Tuple

from paragen.cleaning.rules import (ALIGNMENT_RULE, LANGUAGE_RULE, RULES, CleanConfig,
                                    Deduplicator, SurfaceRules)
from paragen.datasets import decode_line
from paragen.errors import ConfigError, DataError

CHUNK = 2000
Pair = Tuple[int, str, str]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--src", required=True, help="source side, one sentence per line")
    parser.add_argument("--tgt", required=True, help="target side, line-aligned with --src")
    parser.add_argument("--output-prefix", required=True,
                        help="writes PREFIX.SRC_LANG, PREFIX.TGT_LANG and PREFIX.removed.tsv")
    parser.add_argument("--config", help="YAML of thresholds (the flags below; flags win)")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes for normalisation, surface and language rules")
    parser.add_argument("--disable", nargs="+", choices=RULES, metavar="RULE",
                        help=f"rules to switch off: {', '.join(RULES)}")
    parser.add_argument("--no-normalize", action="store_true",
                        help="keep punctuation as it is (no Moses normalisation)")
    parser.add_argument("--no-langid", action="store_true", help="same as --disable language")
    parser.add_argument("--langid-languages", nargs="+", metavar="LANG",
                        help="candidate languages of the identifier (default: all 97)")
    for field in dataclasses.fields(CleanConfig):
        if field.type in ("int", "float", "str"):
            parser.add_argument("--" + field.name.replace("_", "-"), dest=field.name,
                                type={"int": int, "float": float, "str": str}[field.type],
                                help=f"default {field.default}")


def build_config(args: argparse.Namespace) -> CleanConfig:
    """Defaults, then the --config file, then the flags given."""
    values = {}
    if args.config:
        from paragen.config import load_yaml

        values = load_yaml(args.config)
        CleanConfig.from_mapping(values, args.config)  # names the bad key
    for field in dataclasses.fields(CleanConfig):
        flag = getattr(args, field.name, None)
        if flag is not None and field.name not in ("disable", "normalize"):
            values[field.name] = flag
    disable = list(values.get("disable", [])) + list(args.disable or [])
    if args.no_langid:
        disable.append(LANGUAGE_RULE)
    values["disable"] = sorted(set(disable))
    if args.no_normalize:
        values["normalize"] = False
    return CleanConfig(**values).validate()


def read_pairs(src: str, tgt: str) -> Iterator[Pair]:
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


class PairChecker:
    """Normalisation, surface rules and the language rule: stateless, so it runs in workers."""

    def __init__(self, config: CleanConfig):
        self.normalizers: Optional[Tuple[Callable[[str], str], Callable[[str], str]]] = None
        if config.normalize:
            try:
                from sacremoses import MosesPunctNormalizer
            except ImportError:
                raise ConfigError("cleaning needs the clean extra: "
                                  "pip install 'paragen[clean]'") from None
            self.normalizers = (MosesPunctNormalizer(lang=config.src_lang).normalize,
                                MosesPunctNormalizer(lang=config.tgt_lang).normalize)
        self.surface = SurfaceRules(config)
        self.language = None
        if config.enabled(LANGUAGE_RULE):
            try:
                from paragen.cleaning.language import LanguageRule
                self.language = LanguageRule(config)
            except ImportError:
                raise ConfigError("the language rule needs py3langid: pip install "
                                  "'paragen[clean]' (or --disable language)") from None

    def __call__(self, chunk: List[Pair]) -> List[Tuple[int, str, str, Optional[str]]]:
        checked = []
        for number, src, tgt in chunk:
            if self.normalizers is not None:
                src, tgt = self.normalizers[0](src), self.normalizers[1](tgt)
            rule = self.surface(src, tgt)
            if rule is None and self.language is not None and self.language(src, tgt):
                rule = LANGUAGE_RULE
            checked.append((number, src, tgt, rule))
        return checked


_worker_checker: Optional[PairChecker] = None


def _start_worker(config: CleanConfig) -> None:
    global _worker_checker
    _worker_checker = PairChecker(config)


def _check_in_worker(chunk: List[Pair]):
    return _worker_checker(chunk)


def _chunks(pairs: Iterator[Pair]) -> Iterator[List[Pair]]:
    while True:
        chunk = list(islice(pairs, CHUNK))
        if not chunk:
            return
        yield chunk


def checked_pairs(args: argparse.Namespace, config: CleanConfig):
    """Pass 1's per-pair verdicts, in input order, from this process or from --workers."""
    chunks = _chunks(read_pairs(args.src, args.tgt))
    if args.workers <= 1:
        checker = PairChecker(config)
        for chunk in chunks:
            yield from checker(chunk)
        return
    PairChecker(config)  # fail here, with the clear message, if an extra is missing
    with multiprocessing.get_context("spawn").Pool(args.workers, _start_worker,
                                                   (config,)) as pool:
        for checked in pool.imap(_check_in_worker, chunks, chunksize=1):
            yield from checked


def _progress(desc: str):
    from tqdm import tqdm

    return tqdm(unit=" pairs", desc=desc, mininterval=2.0, disable=None)


def run(args: argparse.Namespace) -> int:
    config = build_config(args)
    prefix = args.output_prefix
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    outputs = [f"{prefix}.{config.src_lang}", f"{prefix}.{config.tgt_lang}",
               f"{prefix}.removed.tsv"]
    temporary = [path + ".tmp" for path in outputs]
    align_on = config.enabled(ALIGNMENT_RULE)
    counts: Counter = Counter()
    try:
        deduplicate = Deduplicator(config)
        kept_numbers = array("q")
        with open(temporary[0], "w", encoding="utf-8") as out_src, \
                open(temporary[1], "w", encoding="utf-8") as out_tgt, \
                open(temporary[2], "w", encoding="utf-8") as removed, \
                _progress("clean") as progress:
            for number, src, tgt, rule in checked_pairs(args, config):
                progress.update()
                rule = rule or deduplicate(src, tgt)
                counts[rule or "kept"] += 1
                if rule is None:
                    out_src.write(src + "\n")
                    out_tgt.write(tgt + "\n")
                    if align_on:
                        kept_numbers.append(number)
                else:
                    removed.write(f"{rule}\t{number}\t{src}\t{tgt}\n")
        del deduplicate
        if align_on:
            _alignment_pass(temporary, kept_numbers, config, counts)
    except BaseException:
        for path in temporary + [path + ".pass1" for path in temporary[:2]]:
            if os.path.exists(path):
                os.remove(path)
        raise
    for path in outputs:
        os.replace(path + ".tmp", path)
    total = sum(counts.values())
    print(f"{total} pairs: kept {counts['kept']}, removed {total - counts['kept']} "
          f"({', '.join(f'{r} {counts[r]}' for r in RULES if config.enabled(r))}); "
          f"removed pairs in {outputs[2]}")
    return 0


def _alignment_pass(temporary: List[str], numbers: array, config: CleanConfig,
                    counts: Counter) -> None:
    """Learns the lexicon from pass 1's output, then rewrites it without misaligned pairs."""
    from paragen.cleaning.alignment import learn_lexicon, misaligned

    first = [path + ".pass1" for path in temporary[:2]]
    for path, moved in zip(temporary[:2], first):
        os.replace(path, moved)

    def kept_pairs() -> Iterator[Tuple[str, str]]:
        with open(first[0], encoding="utf-8") as fs, open(first[1], encoding="utf-8") as ft:
            for src, tgt in zip(fs, ft):
                yield src.rstrip("\n"), tgt.rstrip("\n")

    lexicon = learn_lexicon(kept_pairs(), config)
    with open(temporary[0], "w", encoding="utf-8") as out_src, \
            open(temporary[1], "w", encoding="utf-8") as out_tgt, \
            open(temporary[2], "a", encoding="utf-8") as removed, \
            _progress("align") as progress:
        for number, (src, tgt) in zip(numbers, kept_pairs()):
            progress.update()
            if misaligned(src, tgt, lexicon, config):
                counts["kept"] -= 1
                counts[ALIGNMENT_RULE] += 1
                removed.write(f"{ALIGNMENT_RULE}\t{number}\t{src}\t{tgt}\n")
            else:
                out_src.write(src + "\n")
                out_tgt.write(tgt + "\n")
    for path in first:
        os.remove(path)
