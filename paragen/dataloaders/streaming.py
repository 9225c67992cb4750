"""Batches from a streaming dataset: tokenized in worker processes, bucketed in a shuffle buffer.

Each reader (one per data-loader worker on each rank, see `StreamingParallelDataset`) fills a
buffer of `buffer_size` of its own pairs, tokenizes them in one call, sorts them by length into
token-budget batches, shuffles those batches and yields them collated. Batches are a pure
function of (seed, epoch, rank, worker), so a resumed run can skip the ones it already used.

Under DDP each rank yields only its own batches (`rank_local`), and ranks may run out at
different times; the trainer then lets a finished rank join the remaining updates with
zero-weight passes, so no line is dropped and no rank waits forever.
"""
from __future__ import annotations

from itertools import count, islice
from typing import Any, Callable, Dict, Iterator, Optional

import torch.utils.data

from paragen.registry import register_dataloader
from paragen.samplers import BucketSampler


class _ReaderStream(torch.utils.data.IterableDataset):
    def __init__(self, loader: "StreamingDataLoader", epoch: int):
        super().__init__()
        self.loader, self.epoch = loader, epoch

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        yield from self.loader.reader_batches(self.loader.rank * workers + worker,
                                              self.loader.world_size * workers, self.epoch)


@register_dataloader
class StreamingDataLoader:
    rank_local = True  # each rank yields its own share of the data

    def __init__(self, max_tokens: int = 4096, buffer_size: int = 10_000, num_workers: int = 0,
                 seed: int = 1, *, dataset: Any, encode: Callable, collate_fn: Callable,
                 src: str, tgt: str, rank: int = 0, world_size: int = 1):
        if buffer_size < 1 or max_tokens < 1:
            raise ValueError("buffer_size and max_tokens must be positive")
        self.max_tokens, self.buffer_size, self.num_workers = max_tokens, buffer_size, num_workers
        self.seed, self.dataset, self.encode, self.collate_fn = seed, dataset, encode, collate_fn
        self.src, self.tgt, self.rank, self.world_size = src, tgt, rank, world_size

    def num_batches(self, epoch: int) -> Optional[int]:
        """Unknown without reading the corpus: set max_steps (or max_minutes) to bound training."""
        return None

    def reader_batches(self, reader: int, readers: int, epoch: int) -> Iterator[Dict[str, Any]]:
        pairs = self.dataset.iter_pairs(reader, readers)
        for buffer_index in count():
            buffer = list(islice(pairs, self.buffer_size))
            if not buffer:
                return
            split = self.encode([p[self.src] for _, p in buffer], [p[self.tgt] for _, p in buffer])
            numbers = [number for number, _ in buffer]
            sampler = BucketSampler(self.max_tokens, shuffle=True,
                                    seed=hash((self.seed, reader, buffer_index)) % (1 << 31))
            for indices in sampler.batches(split["lengths"], epoch):
                batch = self.collate_fn(indices, split)
                batch["line_numbers"] = torch.tensor([numbers[i] for i in indices])
                yield batch

    def epoch_batches(self, epoch: int, start: int = 0) -> Iterator[Dict[str, Any]]:
        """This rank's collated batches of `epoch`, skipping the first `start`."""
        loader = torch.utils.data.DataLoader(  # private generator: see DataLoader.epoch_batches
            _ReaderStream(self, epoch), batch_size=None, num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(epoch))
        return islice(iter(loader), start, None)

