"""Epoch-aware batch loader over already-processed samples.

Tokenization happens once, in the task, before training; this loader only groups samples into
batches (via the sampler) and collates them, optionally in worker processes. Batches are a pure
function of (sampler seed, epoch), so a run resumed mid-epoch can skip exactly the batches it has
already trained on and continue with the same data it would have seen.
"""
from __future__ import annotations

from typing import Any, Callable, Iterator, List, Sequence, Tuple

import numpy as np
import torch.utils.data

from paragen.registry import register_dataloader


@register_dataloader
class DataLoader:
    """Yields collated batches for an epoch, optionally starting after `start` batches."""

    rank_local = False  # every DDP rank sees the same batches and trains on its slice

    def __init__(self, num_workers: int = 0, *, samples: Sequence, lengths: Sequence[int],
                 sampler: Any, collate_fn: Callable[[List[Any]], Any]) -> None:
        if len(samples) != len(lengths):
            raise ValueError(f"{len(samples)} samples but {len(lengths)} lengths")
        self.num_workers = num_workers
        self.samples = samples
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.sampler = sampler
        self.collate_fn = collate_fn
        self._cached: Tuple[int, List[List[int]]] | None = None

    def _batches(self, epoch: int) -> List[List[int]]:
        """The sampler's batches for `epoch`, cached: the trainer asks for the count first."""
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, self.sampler.batches(self.lengths, epoch))
        return self._cached[1]

    def num_batches(self, epoch: int) -> int:
        return len(self._batches(epoch))

    def epoch_batches(self, epoch: int, start: int = 0) -> Iterator[Any]:
        """Collated batches of `epoch`, skipping the first `start` (already consumed) ones."""
        batches = self._batches(epoch)[start:]
        if not batches:
            return iter(())
        # A private generator: torch's DataLoader draws a base seed from the generator it is
        # given, by default the global one, which would shift the dropout random stream by
        # one draw whenever a run resumes mid-epoch (found by the kill -9 resume test).
        loader = torch.utils.data.DataLoader(
            self.samples, batch_sampler=batches, collate_fn=self.collate_fn,
            num_workers=self.num_workers, persistent_workers=False,
            generator=torch.Generator().manual_seed(epoch))
        return iter(loader)
