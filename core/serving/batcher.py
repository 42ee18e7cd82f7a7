"""Dynamic batching for the server: concurrent requests share one model call, and decoding overlaps it.

Two stages. ``prepare(request)`` (reading and entropy decoding: :meth:`Answerer.prepare
<neckkit.serving.answerer.Answerer.prepare>`) runs for each request as soon as it arrives, in a thread
pool of its own, so the next requests decode while the model answers the current batch; a request
whose preparation fails gets its error there and never joins a batch. Prepared requests wait in a
queue; one worker takes the first and collects more until it holds ``max_batch`` of them or
``max_wait_ms`` have passed since the first was queued, then runs ``answer_batch`` (the neck and the
MLLM: :meth:`Answerer.answer_prepared <neckkit.serving.answerer.Answerer.answer_prepared>`) in its one
model thread (always the same thread: on the CPU, each thread that calls torch keeps its own OpenMP
team spinning, and alternating threads made the model stage slower).
``max_batch=1`` turns batching off. If ``answer_batch`` raises for a whole batch, each of its requests
is answered again on its own, so one request cannot fail the others.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from neckkit.errors import NeckkitError
from neckkit.serving.requests import AskRequest, AskResult

__all__ = ["Batcher", "BatcherClosed"]

AnswerBatch = Callable[[Sequence[Any]], Sequence["AskResult | NeckkitError"]]
Prepare = Callable[[AskRequest], Any]


class BatcherClosed(NeckkitError):
    """The server is shutting down and takes no new requests."""


@dataclass
class _Waiting:
    item: Any  # the prepared request (or the request itself, without a prepare stage)
    future: asyncio.Future[Any]
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """Prepares requests one by one and answers them in batches.

    ``prepare(request)`` returns what ``answer_batch`` takes for that request, or the request's
    :class:`NeckkitError` (default: the request itself, unchanged). ``answer_batch(items)`` must
    return one :class:`AskResult` or :class:`NeckkitError` per item, in order
    (``Answerer.answer_prepared`` with ``return_errors=True``). ``prepare_threads`` requests are
    prepared at once. ``on_batch(size)`` and ``on_queue(length)`` report to metrics. Create, use and
    close it in one event loop.
    """

    def __init__(
        self,
        answer_batch: AnswerBatch,
        *,
        prepare: Prepare | None = None,
        prepare_threads: int = 4,
        max_batch: int = 8,
        max_wait_ms: float = 10.0,
        on_batch: Callable[[int], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise NeckkitError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise NeckkitError(f"max_wait_ms must be at least 0, got {max_wait_ms}")
        self._answer_batch, self._prepare = answer_batch, prepare
        self._preparing = ThreadPoolExecutor(max(1, prepare_threads), thread_name_prefix="neckkit-prepare")
        self._answering = ThreadPoolExecutor(1, thread_name_prefix="neckkit-model")
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000.0
        self._on_batch, self._on_queue = on_batch, on_queue
        self._pending: deque[_Waiting] = deque()
        self._in_preparation = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._worker: asyncio.Task[None] | None = None

    @property
    def queue_length(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        """Start the worker (in the running event loop)."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._run(), name="neckkit-batcher")

    async def submit(self, request: AskRequest) -> AskResult | NeckkitError:
        """The request's result or its :class:`NeckkitError` (other exceptions are raised)."""
        if self._closing:
            raise BatcherClosed("the server is shutting down")
        self.start()
        loop = asyncio.get_running_loop()
        item: Any = request
        if self._prepare is not None:
            self._in_preparation += 1
            try:
                item = await loop.run_in_executor(self._preparing, self._prepare, request)
            finally:
                self._in_preparation -= 1
                self._wakeup.set()  # a closing worker waits for the last preparation
            if isinstance(item, NeckkitError):
                return item
        waiting = _Waiting(item, loop.create_future())
        self._pending.append(waiting)
        self._queued()
        self._wakeup.set()
        return await waiting.future

    async def close(self) -> None:
        """Answer what is queued or being prepared, then stop the worker."""
        self._closing = True
        self._wakeup.set()
        if self._worker is not None:
            await self._worker
        self._preparing.shutdown(wait=False)
        self._answering.shutdown(wait=False)

    # -- the worker ---------------------------------------------------------------------------------------

    def _queued(self) -> None:
        if self._on_queue is not None:
            self._on_queue(len(self._pending))

    async def _run(self) -> None:
        while True:
            while not self._pending:
                if self._closing and not self._in_preparation:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._collect()
            batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
            self._queued()
            batch = [waiting for waiting in batch if not waiting.future.done()]  # a client that went away
            if batch:
                await self._answer(batch)

    async def _collect(self) -> None:
        """Wait until ``max_batch`` requests wait or ``max_wait`` has passed since the first was queued."""
        loop_deadline = self._pending[0].arrived + self.max_wait
        while len(self._pending) < self.max_batch and not self._closing:
            remaining = loop_deadline - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    async def _answer(self, batch: list[_Waiting]) -> None:
        if self._on_batch is not None:
            self._on_batch(len(batch))
        try:
            items = [waiting.item for waiting in batch]
            results = await asyncio.get_running_loop().run_in_executor(self._answering, self._answer_batch, items)
            if len(results) != len(batch):
                raise RuntimeError(f"answer_batch gave {len(results)} results for {len(batch)} requests")
        except Exception as error:  # noqa: BLE001  (alone, each request gets its own result or failure)
            if len(batch) > 1:
                for waiting in batch:
                    await self._answer([waiting])
                return
            if not batch[0].future.done():
                batch[0].future.set_exception(error)
            return
        for waiting, result in zip(batch, results, strict=True):
            if not waiting.future.done():
                waiting.future.set_result(result)
