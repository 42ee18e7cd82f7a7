"""Dynamic batching for the server: concurrent requests share one :meth:`Answerer.answer_batch` call.

A request waits in a queue; one worker takes the first waiting request and collects more until it
holds ``max_batch`` of them or ``max_wait_ms`` have passed since the first one arrived, then runs
``answer_batch(..., return_errors=True)`` in a thread (entropy decoding runs in parallel there; the
neck and the MLLM see the batch at once). Requests that arrive while a batch runs wait for the next
one. ``max_batch=1`` turns batching off.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from neckkit.errors import NeckkitError
from neckkit.serving.requests import AskRequest, AskResult

__all__ = ["Batcher", "BatcherClosed"]

AnswerBatch = Callable[[Sequence[AskRequest]], Sequence["AskResult | NeckkitError"]]


class BatcherClosed(NeckkitError):
    """The server is shutting down and takes no new requests."""


@dataclass
class _Waiting:
    request: AskRequest
    future: asyncio.Future[Any]
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """Collects requests into batches for ``answer_batch`` (a callable taking a list of requests).

    ``answer_batch`` must return one :class:`AskResult` or :class:`NeckkitError` per request, in order
    (``Answerer.answer_batch`` with ``return_errors=True``). ``on_batch(size)`` and
    ``on_queue(length)`` report to metrics. Create, use and close it in one event loop.
    """

    def __init__(
        self,
        answer_batch: AnswerBatch,
        *,
        max_batch: int = 8,
        max_wait_ms: float = 10.0,
        on_batch: Callable[[int], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1:
            raise NeckkitError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait_ms < 0:
            raise NeckkitError(f"max_wait_ms must be at least 0, got {max_wait_ms}")
        self._answer_batch = answer_batch
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000.0
        self._on_batch, self._on_queue = on_batch, on_queue
        self._pending: deque[_Waiting] = deque()
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
        waiting = _Waiting(request, asyncio.get_running_loop().create_future())
        self._pending.append(waiting)
        self._queued()
        self._wakeup.set()
        return await waiting.future

    async def close(self) -> None:
        """Answer what is queued, then stop the worker."""
        self._closing = True
        self._wakeup.set()
        if self._worker is not None:
            await self._worker

    # -- the worker ---------------------------------------------------------------------------------------

    def _queued(self) -> None:
        if self._on_queue is not None:
            self._on_queue(len(self._pending))

    async def _run(self) -> None:
        while True:
            while not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._collect()
            batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
            self._queued()
            batch = [item for item in batch if not item.future.done()]  # a client that went away
            if batch:
                await self._answer(batch)

    async def _collect(self) -> None:
        """Wait until ``max_batch`` requests wait or ``max_wait`` has passed since the first arrived."""
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
            results = await asyncio.to_thread(self._answer_batch, [item.request for item in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"answer_batch gave {len(results)} results for {len(batch)} requests")
        except Exception as error:  # noqa: BLE001  (every waiting request gets the failure)
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)
