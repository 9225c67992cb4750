"""Token-budgeted batch samplers.

A batch's cost is what it occupies once padded: `max(length) * len(batch)`. Budgeting padded
tokens rather than sentences keeps GPU memory flat across batches of short and long sentences.
A sample longer than the budget on its own is put alone in its batch rather than dropped: a
silently shrinking data set is worse than one oversized batch.

`lengths` must be the padded length the collate function will produce for each sample (e.g.
`max(len(src), len(tgt)) + 2` for bos/eos); lengths below 1 are counted as 1.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import numpy as np

from paragen.registry import register_sampler

Lengths = Union[Sequence[int], np.ndarray]


def _as_lengths(lengths: Lengths) -> np.ndarray:
    return np.maximum(np.asarray(lengths, dtype=np.int64).reshape(-1), 1)


def _capacity(lengths: np.ndarray, max_tokens: int, max_sentences: Optional[int]) -> np.ndarray:
    """How many samples a batch may hold when its longest sample has each given length."""
    capacity = max_tokens // lengths
    if max_sentences is not None:
        capacity = np.minimum(capacity, max_sentences)
    return capacity


def _split(order: np.ndarray, ends: List[int]) -> List[List[int]]:
    """Cut `order` at the batch ends (slicing one Python list beats `np.split` + `tolist`)."""
    flat = order.tolist()
    return [flat[start:end] for start, end in zip([0] + ends[:-1], ends)]


def pack_sorted(order: np.ndarray, sorted_lengths: np.ndarray, max_tokens: int,
                max_sentences: Optional[int] = None) -> List[List[int]]:
    """Greedily pack `order` (indices whose lengths are non-decreasing) into batches.

    With ascending lengths the last sample of a batch is its longest, so a batch i..j is valid
    iff `j - i + 1 <= capacity[j]`, i.e. `j + 1 - capacity[j] <= i`. The left side is strictly
    increasing in j, so one `searchsorted` gives every start's furthest end at once; the greedy
    walk then only hops from batch to batch (one step per batch, not per sample).
    """
    n = len(order)
    if n == 0:
        return []
    threshold = np.arange(1, n + 1) - _capacity(sorted_lengths, max_tokens, max_sentences)
    furthest = np.searchsorted(threshold, np.arange(n), side="right") - 1
    furthest = np.maximum(furthest, np.arange(n)).tolist()  # an oversized sample stands alone
    ends, start = [], 0
    while start < n:
        start = furthest[start] + 1
        ends.append(start)
    return _split(order, ends)


@register_sampler
class BucketSampler:
    """Batches of similar-length samples, so little of each batch is padding.

    With `shuffle`, ties between equal lengths are broken randomly (and `length_noise` can
    blur lengths by up to that fraction), so batch contents vary between epochs, not only
    their order. With `shuffle=False` batches come out sorted by length, which is what fast
    evaluation wants; the caller restores input order from the indices.
    """

    def __init__(self, max_tokens: int = 4096, max_sentences: Optional[int] = None,
                 shuffle: bool = True, seed: int = 1, length_noise: float = 0.0) -> None:
        if max_tokens < 1 or (max_sentences is not None and max_sentences < 1):
            raise ValueError("max_tokens and max_sentences must be positive")
        self.max_tokens = max_tokens
        self.max_sentences = max_sentences
        self.shuffle = shuffle
        self.seed = seed
        self.length_noise = length_noise

    def batches(self, lengths: Lengths, epoch: int = 0) -> List[List[int]]:
        """Index batches for `epoch`; the same seed and epoch always give the same batches."""
        lengths = _as_lengths(lengths)
        if not self.shuffle:
            order = np.argsort(lengths, kind="stable")
            return pack_sorted(order, lengths[order], self.max_tokens, self.max_sentences)
        rng = np.random.default_rng(self.seed + epoch)
        permutation = rng.permutation(len(lengths))
        keys = lengths[permutation].astype(np.float64)
        if self.length_noise > 0:
            keys *= 1.0 + rng.uniform(-self.length_noise, self.length_noise, len(keys))
        order = permutation[np.argsort(keys, kind="stable")]
        # Noise may leave lengths slightly out of order: a running maximum keeps the budget
        # check exact (it can only overestimate a batch's cost, never underestimate it).
        sorted_lengths = np.maximum.accumulate(lengths[order])
        batches = pack_sorted(order, sorted_lengths, self.max_tokens, self.max_sentences)
        return [batches[i] for i in rng.permutation(len(batches))]


@register_sampler
class SequentialSampler:
    """Batches in file order, for streaming-style evaluation where order matters."""

    def __init__(self, max_tokens: int = 4096, max_sentences: Optional[int] = None) -> None:
        if max_tokens < 1 or (max_sentences is not None and max_sentences < 1):
            raise ValueError("max_tokens and max_sentences must be positive")
        self.max_tokens = max_tokens
        self.max_sentences = max_sentences

    def batches(self, lengths: Lengths, epoch: int = 0) -> List[List[int]]:
        """Greedy file-order batches; `epoch` is accepted for interface parity and ignored.

        A batch's running maximum makes each cut depend on the previous one, so this is one scan
        over plain ints: faster than a vectorized window per batch, whose numpy per-call
        overhead is paid thousands of times.
        """
        lengths = _as_lengths(lengths)
        limit = self.max_sentences or len(lengths)
        ends: List[int] = []
        longest = size = 0
        for index, length in enumerate(lengths.tolist()):
            grown = length if length > longest else longest
            if size and (grown * (size + 1) > self.max_tokens or size >= limit):
                ends.append(index)
                longest, size = length, 1
            else:
                longest, size = grown, size + 1
        if size:
            ends.append(len(lengths))
        return _split(np.arange(len(lengths)), ends)


@register_sampler
class TemperatureSampler:
    """Batches that mix groups of rows (a multilingual task's directions) by temperature.

    Each epoch draws `epoch_size` rows (default: all of them): group d gets a share
    p_d ∝ n_d^(1/T) of the draws, n_d being its size. T=1 keeps the natural proportions, a
    larger T moves towards a uniform mix, so directions with little data are seen more often
    (upsampled) and large ones less (downsampled), as multilingual NMT trains. A group's rows
    are drawn as whole shuffled passes, so no row repeats before every row of its group has
    been seen. The draws are then length-bucketed by `BucketSampler`; one (seed, epoch) always
    gives the same batches, so a resumed run sees the data it would have seen.

    `groups` (the group of each row) is given by the task, not the config.
    """

    uses_groups = True

    def __init__(self, temperature: float = 1.0, max_tokens: int = 4096,
                 max_sentences: Optional[int] = None, seed: int = 1, length_noise: float = 0.0,
                 epoch_size: Optional[int] = None, *, groups: Sequence[int]) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if epoch_size is not None and epoch_size < 1:
            raise ValueError(f"epoch_size must be positive, got {epoch_size}")
        self.temperature, self.seed, self.epoch_size = temperature, seed, epoch_size
        self.buckets = BucketSampler(max_tokens, max_sentences, True, seed, length_noise)
        groups = np.asarray(groups, dtype=np.int64).reshape(-1)
        self.num_rows = len(groups)
        self.members = np.argsort(groups, kind="stable")  # rows, grouped
        _, self.sizes = np.unique(groups, return_counts=True)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])

    @property
    def probabilities(self) -> np.ndarray:
        """p_d ∝ n_d^(1/T), over the groups in ascending id order."""
        weights = self.sizes.astype(np.float64) ** (1.0 / self.temperature)
        return weights / weights.sum()

    def draw(self, epoch: int) -> np.ndarray:
        """The rows of `epoch`, grouped (group 0's draws first), before bucketing."""
        rng = np.random.default_rng((self.seed, epoch))
        counts = rng.multinomial(self.epoch_size or self.num_rows, self.probabilities)
        picked = []
        for start, size, count in zip(self.starts.tolist(), self.sizes.tolist(), counts.tolist()):
            passes = -(-count // size)  # whole shuffled passes over the group, cut to count
            offsets = rng.permuted(np.tile(np.arange(size), (passes, 1)), axis=1).ravel()[:count]
            picked.append(self.members[start + offsets])
        return np.concatenate(picked)

    def batches(self, lengths: Lengths, epoch: int = 0) -> List[List[int]]:
        """Index batches for `epoch`: the temperature draw, bucketed by length."""
        lengths = _as_lengths(lengths)
        if len(lengths) != self.num_rows:
            raise ValueError(f"{len(lengths)} lengths but {self.num_rows} grouped rows")
        picked = self.draw(epoch)
        return [picked[batch].tolist() for batch in self.buckets.batches(lengths[picked], epoch)]
