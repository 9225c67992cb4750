"""Dynamic batching: requests from many clients are merged into one model call.

Each request's sentences wait in a queue; a single worker takes everything that arrived
within `max_wait_ms` of the first waiting request (up to `max_batch_tokens` source tokens),
translates it as one batch, and hands every request its own slice of the outputs. One
worker thread owns the model, so torch's intra-op threads are never oversubscribed.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, List

logger = logging.getLogger("paragen")


@dataclass
class _Request:
    lines: List[str]
    tokens: int
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    def __init__(self, translate: Callable[[List[str]], List[str]],
                 count_tokens: Callable[[str], int], max_batch_tokens: int = 4096,
                 max_wait_ms: float = 5.0):
        self.translate, self.count_tokens = translate, count_tokens
        self.max_batch_tokens, self.max_wait = max_batch_tokens, max_wait_ms / 1000.0
        self.queue: asyncio.Queue = asyncio.Queue()
        self.batches = self.requests = 0
        self._worker: asyncio.Task | None = None
        self._held: _Request | None = None  # did not fit the last batch: opens the next one
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paragen-model")

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    async def submit(self, lines: List[str]) -> List[str]:
        future = asyncio.get_running_loop().create_future()
        tokens = sum(self.count_tokens(line) for line in lines)
        await self.queue.put(_Request(lines, tokens, future))
        return await future

    async def _collect(self) -> List[_Request]:
        first, self._held = self._held or await self.queue.get(), None
        batch, tokens = [first], first.tokens
        deadline = first.arrived + self.max_wait
        while tokens < self.max_batch_tokens:
            timeout = deadline - time.perf_counter()
            if timeout <= 0 and self.queue.empty():
                break
            try:
                request = self.queue.get_nowait() if timeout <= 0 else \
                    await asyncio.wait_for(self.queue.get(), timeout)
            except (asyncio.TimeoutError, asyncio.QueueEmpty):
                break
            if tokens + request.tokens > self.max_batch_tokens:
                self._held = request
                break
            batch.append(request)
            tokens += request.tokens
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            lines = [line for request in batch for line in request.lines]
            try:
                outputs = await loop.run_in_executor(self._executor, self.translate, lines)
            except Exception as err:  # a failed batch fails its requests, never the server
                logger.exception("generation failed for a batch of %d sentences", len(lines))
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(err)
                continue
            self.batches += 1
            self.requests += len(batch)
            start = 0
            for request in batch:
                if not request.future.done():  # the client may have gone away
                    request.future.set_result(outputs[start:start + len(request.lines)])
                start += len(request.lines)
