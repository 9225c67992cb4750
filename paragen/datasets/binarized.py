"""Token ids on disk, memory-mapped: a corpus costs RAM in proportion to its index, not its text.

`paragen binarize` writes, per language file, three siblings of one prefix:
    PREFIX.bin   all token ids back to back (uint16 when the vocabulary fits, else int32)
    PREFIX.idx   int64 offsets, one more than the number of sentences (sentence i is
                 bin[idx[i]:idx[i+1]])
    PREFIX.json  dtype, sentence and token counts, and the tokenizer it was made with
Opening one reads the small index and maps the token file; pages are read on demand.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List

import numpy as np
import torch

from paragen.errors import DataError
from paragen.interfaces import FingerprintedTokenizer
from paragen.registry import register_dataset


class TokenArray:
    """Sentence i as a numpy view into the mapped token file; `lengths` without reading it."""

    def __init__(self, prefix: str):
        for suffix in (".bin", ".idx", ".json"):
            if not os.path.isfile(prefix + suffix):
                raise DataError(f"{prefix}{suffix}: file not found (run `paragen binarize`)")
        self.prefix = prefix
        try:
            with open(prefix + ".json", encoding="utf-8") as f:
                self.meta = json.load(f)
            self.meta["sentences"], self.meta["dtype"]
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(f"{prefix}.json: not the metadata `paragen binarize` writes "
                            f"({type(err).__name__}: {err})") from None
        self.offsets = np.fromfile(prefix + ".idx", dtype=np.int64)
        if len(self.offsets) != self.meta["sentences"] + 1:
            raise DataError(f"{prefix}.idx: {len(self.offsets) - 1} sentences, but "
                            f"{prefix}.json says {self.meta['sentences']}")
        size = int(self.offsets[-1])
        self.tokens = np.memmap(prefix + ".bin", dtype=self.meta["dtype"], mode="r", shape=(size,)) \
            if size else np.zeros(0, dtype=self.meta["dtype"])
        self.lengths = np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.tokens[self.offsets[index]:self.offsets[index + 1]]

    def check_tokenizer(self, tokenizer, where: str) -> None:
        """Ids made by another tokenizer would train silently on the wrong words: refuse."""
        made_with = str(self.meta.get("tokenizer", ""))
        digest = made_with.rsplit("#", 1)[-1] if "#" in made_with else None
        if isinstance(tokenizer, FingerprintedTokenizer) and digest \
                and digest != tokenizer.fingerprint:
            raise DataError(f"{self.prefix}.json: binarized with tokenizer {made_with}, but "
                            f"{where} is {tokenizer.fingerprint_source}#"
                            f"{tokenizer.fingerprint}; run `paragen binarize` again with it")
        vocab = self.meta.get("vocab_size")
        if vocab is not None and vocab != tokenizer.vocab_size:
            raise DataError(f"{self.prefix}.json: made for a vocabulary of {vocab} ids, but "
                            f"{where} has {tokenizer.vocab_size}")


class WrappedIds:
    """Sentence i as a torch tensor `prefix + ids + suffix`, built on access (for collate)."""

    def __init__(self, array: TokenArray, prefix: List[int], suffix: List[int]):
        self.array, self.prefix, self.suffix = array, prefix, suffix

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int) -> torch.Tensor:
        ids = self.array[index].astype(np.int64)
        return torch.from_numpy(np.concatenate([self.prefix, ids, self.suffix]).astype(np.int64))


@register_dataset
class BinarizedParallelDataset:
    """Line-aligned binarized files, e.g. `path: {de: data-bin/train.de, en: data-bin/train.en}`
    (prefixes written by `paragen binarize`)."""

    def __init__(self, path: Dict[str, str]):
        self.arrays = {key: TokenArray(prefix) for key, prefix in path.items()}
        counts = {path[k]: len(a) for k, a in self.arrays.items()}
        if len(set(counts.values())) > 1:
            raise DataError(f"binarized files are not aligned: {counts}")

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def token_array(self, key: str) -> TokenArray:
        return self.arrays[key]


def write_binarized(encoded_chunks: Iterable[List[List[int]]], prefix: str, vocab_size: int,
                    tokenizer: str) -> Dict[str, int]:
    """Stream id lists to PREFIX.bin/.idx/.json; temp names until complete, then renamed."""
    dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.int32
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    offsets, total = [0], 0
    try:
        with open(prefix + ".bin.tmp", "wb") as bin_file:
            for chunk in encoded_chunks:
                lengths = np.fromiter((len(ids) for ids in chunk), dtype=np.int64,
                                      count=len(chunk))
                flat = np.fromiter((t for ids in chunk for t in ids), dtype=dtype,
                                   count=int(lengths.sum()))
                flat.tofile(bin_file)
                offsets.extend((total + np.cumsum(lengths)).tolist())
                total += int(lengths.sum())
        np.asarray(offsets, dtype=np.int64).tofile(prefix + ".idx.tmp")
        meta = {"dtype": np.dtype(dtype).name, "sentences": len(offsets) - 1, "tokens": total,
                "vocab_size": vocab_size, "tokenizer": tokenizer}
        with open(prefix + ".json.tmp", "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
    except BaseException:  # bad input half way: leave nothing behind
        for suffix in (".bin.tmp", ".idx.tmp", ".json.tmp"):
            if os.path.exists(prefix + suffix):
                os.remove(prefix + suffix)
        raise
    for suffix in (".bin", ".idx", ".json"):
        os.replace(prefix + suffix + ".tmp", prefix + suffix)
    return meta
