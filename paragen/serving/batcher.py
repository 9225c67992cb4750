"""Dynamic batching: requests from many clients are merged into one model call.

Each request's inputs wait in a queue; a single worker takes everything that arrived within
`max_wait_ms` of the first waiting request (up to `max_batch_tokens` input tokens), runs it
through the task's `predict` as one batch, and hands every request its own slice of the
answers. One worker thread owns the model, so torch's intra-op threads are never
oversubscribed.

Because one batch mixes clients, one client's input must not be able to fail the others: a
failed batch of several requests is retried one request at a time, so only the request that
really fails gets the error. Requests whose client went away (their future is cancelled) are
dropped before they reach the model, and nothing that goes wrong inside a round ends the
worker: a dead worker would leave every later request waiting forever.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence

logger = logging.getLogger("paragen")


class Unavailable(RuntimeError):
    """The batcher is not running (shutting down, or its worker died): a 503, not a 500."""


@dataclass
class _Request:
    lines: List[str]
    tokens: int
    future: asyncio.Future
    arrived: float = field(default_factory=time.perf_counter)


class DynamicBatcher:
    def __init__(self, predict: Callable[[List[str]], List[Any]],
                 count_tokens: Callable[[str], int], max_batch_tokens: int = 4096,
                 max_wait_ms: float = 5.0):
        self.predict, self.count_tokens = predict, count_tokens
        self.max_batch_tokens, self.max_wait = max_batch_tokens, max_wait_ms / 1000.0
        self.queue: asyncio.Queue = asyncio.Queue()
        self.batches = self.requests = self.failures = self.dropped = 0
        self._worker: asyncio.Task | None = None
        self._held: _Request | None = None  # did not fit the last batch: opens the next one
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="paragen-model")

    @property
    def alive(self) -> bool:
        """True while the worker runs: what `/health` reports."""
        return self._worker is not None and not self._worker.done()

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        # whoever still waits gets an answer (503) instead of hanging until the server dies
        waiting = [self._held] if self._held else []
        self._held = None
        while not self.queue.empty():
            waiting.append(self.queue.get_nowait())
        self._fail(waiting, Unavailable("the server is shutting down"))

    async def submit(self, lines: List[str], tokens: Optional[Sequence[int]] = None) -> List[Any]:
        """Answers for `lines`, in order. `tokens`: their lengths if the caller already
        tokenized them (so the server does not tokenize every input twice)."""
        if not self.alive:
            raise Unavailable("the model worker is not running")
        future = asyncio.get_running_loop().create_future()
        total = sum(tokens) if tokens is not None else \
            sum(self.count_tokens(line) for line in lines)
        await self.queue.put(_Request(lines, total, future))
        return await future

    async def _collect(self) -> List[_Request]:
        first, self._held = self._held, None
        while first is None or first.future.done():
            if first is not None:
                self.dropped += 1
            first = await self.queue.get()
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
            if request.future.done():
                self.dropped += 1
                continue
            if tokens + request.tokens > self.max_batch_tokens:
                self._held = request
                break
            batch.append(request)
            tokens += request.tokens
        return batch

    def _predict_checked(self, lines: List[str]) -> List[Any]:
        outputs = self.predict(lines)
        if len(outputs) != len(lines):  # a silent misalignment would answer the wrong client
            raise RuntimeError(f"the model returned {len(outputs)} outputs for {len(lines)} "
                               f"inputs")
        return outputs

    async def _serve(self, batch: List[_Request]) -> None:
        """Run `batch` through the model and answer its requests; on failure retry them one
        by one."""
        loop = asyncio.get_running_loop()
        waiting = [request for request in batch if not request.future.done()]
        self.dropped += len(batch) - len(waiting)  # their clients left while the batch formed
        batch = waiting
        if not batch:
            return
        lines = [line for request in batch for line in request.lines]
        try:
            outputs = await loop.run_in_executor(self._executor, self._predict_checked, lines)
        except Exception as err:
            if len(batch) > 1:  # find the request that fails; the others still get answers
                logger.warning("a batch of %d requests failed (%s: %s); retrying each alone",
                               len(batch), type(err).__name__, err)
                for request in batch:
                    if not request.future.done():
                        await self._serve([request])
                return
            logger.exception("the model failed on a request of %d inputs", len(lines))
            self.failures += 1
            if not batch[0].future.done():
                batch[0].future.set_exception(err)
            return
        self.batches += 1
        self.requests += len(batch)
        start = 0
        for request in batch:
            if not request.future.done():  # the client may have gone away
                request.future.set_result(outputs[start:start + len(request.lines)])
            start += len(request.lines)

    async def _run(self) -> None:
        while True:
            batch: List[_Request] = []
            try:
                batch = await self._collect()
                await self._serve(batch)
            except asyncio.CancelledError:  # stop(): the batch in flight is answered too
                self._fail(batch, Unavailable("the server is shutting down"))
                raise
            except Exception as err:  # a bug in a round must not end the worker
                logger.exception("dynamic batcher: a round failed")
                self._fail(batch, err)

    @staticmethod
    def _fail(batch: List[_Request], err: BaseException) -> None:
        for request in batch:
            if not request.future.done():
                request.future.set_exception(err)
