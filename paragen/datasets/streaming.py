"""A parallel corpus read lazily from line-aligned shard files, for corpora larger than RAM.

    path: {de: "corpus/train.*.de", en: "corpus/train.*.en"}   (globs, sorted; or lists)

Shards are paired in sorted order (`train.00.de` with `train.00.en`, ...) and read one line at
a time: nothing is loaded up front, so training starts at once whatever the corpus size.
Sharding across readers (ranks × data-loader workers) is by global line number: reader r of R
keeps lines r, r+R, r+2R, ... So every line goes to exactly one reader, readers differ by at
most one line, and the split needs no index or line count. (Each reader scans all shards but
decodes, tokenizes and batches only its own lines; tokenization is the cost that matters.)
"""
from __future__ import annotations

import glob
import os
from itertools import zip_longest
from typing import Dict, Iterator, List, Tuple, Union

from paragen.datasets.text import decode_line
from paragen.errors import ConfigError, DataError
from paragen.registry import register_dataset


@register_dataset
class StreamingParallelDataset:
    streaming = True  # tells the task to build a streaming loader instead of tokenizing it all

    def __init__(self, path: Dict[str, Union[str, List[str]]]) -> None:
        if len(path) != 2:
            raise ConfigError(f"path: expected two languages, got {sorted(path)}")
        self.langs = list(path)
        shards = {lang: self._expand(lang, spec) for lang, spec in path.items()}
        counts = {lang: len(files) for lang, files in shards.items()}
        if len(set(counts.values())) != 1:
            raise DataError(f"shard counts differ between languages: {counts}")
        self.shards: List[Dict[str, str]] = [dict(zip(self.langs, files))
                                             for files in zip(*shards.values())]

    @staticmethod
    def _expand(lang: str, spec: Union[str, List[str]]) -> List[str]:
        files = sorted(glob.glob(spec)) if isinstance(spec, str) else list(spec)
        if not files:
            raise DataError(f"path.{lang}: no file matches {spec!r}")
        missing = [f for f in files if not os.path.isfile(f)]
        if missing:
            raise DataError(f"path.{lang}: file not found: {missing[0]}")
        return files

    def iter_pairs(self, reader: int = 0, readers: int = 1
                   ) -> Iterator[Tuple[int, Dict[str, str]]]:
        """(global line number, {lang: text}) for the lines reader `reader` of `readers` owns."""
        index = 0
        for shard in self.shards:
            a, b = self.langs
            with open(shard[a], "rb") as first, open(shard[b], "rb") as second:
                for number, (x, y) in enumerate(zip_longest(first, second), start=1):
                    if x is None or y is None:
                        short = shard[a] if x is None else shard[b]
                        raise DataError(f"{short}: ends at line {number - 1} but "
                                        f"{shard[b] if x is None else shard[a]} goes on "
                                        f"(shards must be line-aligned)")
                    if index % readers == reader:
                        yield index, {a: decode_line(x, shard[a], number),
                                      b: decode_line(y, shard[b], number)}
                    index += 1
