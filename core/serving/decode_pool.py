"""A pool of decode worker processes: entropy decoding that a hostile bitstream cannot turn against the server.

:class:`DecodePool` keeps ``workers`` processes (:mod:`neckkit.serving.decode_worker`), each holding the
neck's codec; :meth:`DecodePool.decode` hands one ``.nk`` to a free worker and waits for ``y_hat``. Any
number of threads may call it at once (each job has a worker to itself), and decoding runs outside the
server's GIL. A worker that dies while decoding (SIGSEGV, SIGKILL, an exit) costs only that request a
:class:`~neckkit.serving.errors.DecoderCrashed`; one that takes longer than ``timeout`` is killed, its
request gets a :class:`~neckkit.serving.errors.DecodeTimeout`. Either way a replacement starts in the
background. Workers start from a ``forkserver`` that has imported torch and the codec once (``spawn``
where there is none), never by forking the server, whose torch threads a fork would copy mid-flight.
:meth:`DecodePool.stats` counts crashes, timeouts and replacements for ``/metrics``.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from neckkit.errors import NeckkitError
from neckkit.serving.decode_worker import DecoderSpec, run_worker, unpack_reply
from neckkit.serving.errors import DecoderCrashed, DecoderUnavailable, DecodeTimeout

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

    from torch import Tensor

    from neckkit.bitstream.nk_format import NkFile

__all__ = ["DecodePool", "DecodeStats", "DecodeWorkers"]

log = logging.getLogger("neckkit.serving")

MAX_REPLY_BYTES = 1 << 30  # a float32 y_hat of 256 M values; a longer reply is a broken worker
STOP_SECONDS = 2.0  # how long a worker told to stop may take before it is killed
RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # between failed attempts to start a replacement


@dataclass(frozen=True)
class DecodeWorkers:
    """How the server isolates entropy decoding (``neckkit serve --decode-workers`` and its siblings)."""

    workers: int = 2
    timeout: float = 30.0  # seconds one decode may take before its worker is killed
    memory_mb: int | None = 2048  # address space a worker may add after start-up (Linux); None: no cap
    start_timeout: float = 300.0  # seconds a worker may take to import and build the codec
    wait_timeout: float = 60.0  # seconds a job may wait for a free worker


@dataclass(frozen=True)
class DecodeStats:
    """What ``/metrics`` reports about the pool; the counters only grow."""

    workers: int  # live workers now (free or busy)
    crashes: int  # workers that died while decoding
    timeouts: int  # workers killed for taking longer than the timeout
    restarts: int  # replacement workers started and ready
    start_failures: int  # replacements that failed to start (retried)


def _context(preload: Sequence[str]) -> BaseContext:
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["neckkit.serving.decode_worker", *preload])
        return context
    return multiprocessing.get_context("spawn")


def how_it_ended(exitcode: int | None) -> str:
    """``killed by SIGSEGV``, ``exit status 3`` or ``still running``."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


class _WorkerDied(Exception):
    pass


class _WorkerHung(Exception):
    pass


class _Worker:
    """One worker process and the server's end of its pipe."""

    def __init__(self, context: BaseContext, spec: DecoderSpec) -> None:
        self.conn, child = context.Pipe(duplex=True)
        self._told_to_stop = False
        self.process = context.Process(target=run_worker, args=(spec, child), name="neckkit-decode", daemon=True)
        try:
            self.process.start()
        finally:
            child.close()  # the worker holds the only other end: its death is EOF here

    def wait_ready(self, timeout: float) -> tuple[str, str]:
        """(codec name, stream fingerprint) once the worker has built its codec."""
        if not self.conn.poll(timeout):
            self.stop()
            raise NeckkitError(f"a decode worker did not start within {timeout:g} s")
        try:
            header, _ = unpack_reply(self.conn.recv_bytes(MAX_REPLY_BYTES))
        except (EOFError, OSError):
            self.stop()
            ended = how_it_ended(self.process.exitcode)
            raise NeckkitError(f"a decode worker ended while starting ({ended})") from None
        if header["kind"] != "ready":
            self.stop()
            raise NeckkitError(f"a decode worker could not build the codec: {header.get('message', header['kind'])}")
        return str(header.get("codec")), str(header.get("fingerprint"))

    def healthy(self) -> bool:
        """Alive, and nothing unread on the pipe (an idle worker's pipe is readable only at its end)."""
        return self.process.exitcode is None and not self.conn.poll(0)

    def run(self, job: tuple[Any, ...], timeout: float) -> bytes:
        """The worker's reply to ``job``; :class:`_WorkerDied` or :class:`_WorkerHung` when there is none."""
        try:
            self.conn.send(job)
            if not self.conn.poll(timeout):
                raise _WorkerHung
            return self.conn.recv_bytes(MAX_REPLY_BYTES)
        except (EOFError, OSError):
            raise _WorkerDied from None

    def tell_to_stop(self) -> None:
        """Ask the worker to stop, without waiting (it ends once its job, if any, is done)."""
        if not self._told_to_stop and self.process.exitcode is None:
            self._told_to_stop = True
            try:
                self.conn.send(None)
            except OSError:
                pass

    def stop(self, *, kill: bool = False) -> None:
        """Ask the worker to stop (or kill it), wait for it, close the pipe."""
        if not kill and self.process.exitcode is None:
            self.tell_to_stop()
            self.process.join(STOP_SECONDS)
        if self.process.exitcode is None:
            self.process.kill()
        self.process.join(STOP_SECONDS)
        self.conn.close()


class DecodePool:
    """``settings.workers`` decode worker processes for the codec ``spec`` describes.

    The workers start at once, in the background; :meth:`wait_ready` waits for them (and checks
    that they built the codec the server holds). ``preload``: modules the forkserver imports once
    for every worker (torch and the codec's own module make a replacement start in well under a
    second instead of seconds).
    """

    def __init__(self, spec: DecoderSpec, settings: DecodeWorkers, *, preload: Sequence[str] = ()) -> None:
        if settings.workers < 1:
            raise NeckkitError(f"a decode pool needs at least one worker, got {settings.workers}")
        if not settings.timeout > 0:
            raise NeckkitError(f"the decode timeout must be positive, got {settings.timeout}")
        self.spec, self.settings = spec, settings
        self._context = _context(preload)
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._lock = threading.Lock()
        self._live: set[_Worker] = set()
        self._closed = False
        self._counts = {"crashes": 0, "timeouts": 0, "restarts": 0, "start_failures": 0}
        self._starting = [self._launch() for _ in range(settings.workers)]

    def _launch(self) -> _Worker:
        worker = _Worker(self._context, self.spec)
        with self._lock:
            self._live.add(worker)
        return worker

    def wait_ready(self, codec: str | None = None, fingerprint: str | None = None) -> None:
        """Wait until every first worker is ready; refuse workers whose codec is not ``codec``/``fingerprint``."""
        starting, self._starting = self._starting, []
        try:
            for worker in starting:
                built = worker.wait_ready(self.settings.start_timeout)
                if (codec, fingerprint) != (None, None) and built != (codec, fingerprint):
                    raise NeckkitError(f"the decode workers built codec {built[0]!r} with weights {built[1]}, but the "
                                       f"server holds {codec!r} with {fingerprint}")
                self._idle.put(worker)
        except BaseException:
            self.close()
            raise

    def decode(self, nk: NkFile, shown: str) -> tuple[Tensor, int]:
        """``y_hat`` [1, C, h, w] of ``nk`` and the synthesis calls its decoding made (0 on the machine path).

        A damaged stream is the worker's one-line :class:`NeckkitError`; a worker that died or hung on
        it is :class:`DecoderCrashed` or :class:`DecodeTimeout`; no free worker within
        ``wait_timeout`` is :class:`DecoderUnavailable`.
        """
        worker = self._checkout(shown)
        try:
            message = worker.run((nk, shown), self.settings.timeout)
        except _WorkerDied:
            worker.process.join(STOP_SECONDS)
            ended = how_it_ended(worker.process.exitcode)
            self._replace(worker, "crashes", f"decode worker {worker.process.pid} {ended} while decoding {shown}")
            raise DecoderCrashed(f"{shown}: the entropy decoder's process died decoding it ({ended}); the bitstream is "
                                 "damaged or hostile") from None
        except _WorkerHung:
            self._replace(worker, "timeouts", f"decode worker {worker.process.pid} took over "
                                              f"{self.settings.timeout:g} s decoding {shown}; killed")
            raise DecodeTimeout(f"{shown}: entropy decoding took longer than {self.settings.timeout:g} s and was "
                                "stopped; the bitstream is damaged or hostile") from None
        except BaseException:
            self._replace(worker, None, f"decode worker {worker.process.pid} dropped after an error")
            raise
        try:
            header, data = unpack_reply(message)
        except NeckkitError:
            self._replace(worker, None, f"decode worker {worker.process.pid} sent a malformed reply; replaced")
            raise
        self._idle.put(worker)
        return _latent(header, data, shown)

    def stats(self) -> DecodeStats:
        with self._lock:
            return DecodeStats(workers=len(self._live), **self._counts)

    def close(self) -> None:
        """Stop every worker (after the requests in flight are answered: nothing may be decoding).

        All are told first, then waited for, so they wind down together: shut-down takes one worker's
        exit, not the sum of them.
        """
        with self._lock:
            self._closed = True
            workers = list(self._live)
            self._live.clear()
        for worker in workers:
            worker.tell_to_stop()
        for worker in workers:
            worker.stop()

    # -- keeping the pool full ------------------------------------------------------------------------

    def _checkout(self, shown: str) -> _Worker:
        deadline = time.monotonic() + self.settings.wait_timeout
        while True:
            if self._closed:
                raise DecoderUnavailable("the decode workers are stopped (the server is shutting down)")
            try:
                worker = self._idle.get(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    raise DecoderUnavailable(f"{shown}: no decode worker became free within "
                                             f"{self.settings.wait_timeout:g} s") from None
                continue
            if worker.healthy():
                return worker
            ended = how_it_ended(worker.process.exitcode)
            self._replace(worker, None, f"decode worker {worker.process.pid} ended while idle ({ended}); replaced")

    def _replace(self, worker: _Worker, counter: str | None, message: str) -> None:
        """Kill ``worker``, count it, and start its replacement in the background."""
        log.warning("neckkit serve: %s", message)
        worker.stop(kill=True)
        with self._lock:
            self._live.discard(worker)
            if counter is not None:
                self._counts[counter] += 1
            if self._closed:
                return
        threading.Thread(target=self._start_replacement, name="neckkit-decode-restart", daemon=True).start()

    def _start_replacement(self) -> None:
        attempt = 0
        while not self._closed:
            worker = None
            try:
                worker = self._launch()
                worker.wait_ready(self.settings.start_timeout)
            except Exception as error:  # noqa: BLE001  (retried: the pool must not shrink for good)
                with self._lock:
                    self._counts["start_failures"] += 1
                    self._live.discard(worker)  # type: ignore[arg-type]
                log.warning("neckkit serve: a replacement decode worker failed to start: %s", error)
                time.sleep(RESTART_DELAYS[min(attempt, len(RESTART_DELAYS) - 1)])
                attempt += 1
                continue
            with self._lock:
                if not self._closed:
                    self._counts["restarts"] += 1
                    self._idle.put(worker)
                    return
                self._live.discard(worker)
            worker.stop()
            return


def _latent(header: dict[str, Any], data: memoryview, shown: str) -> tuple[Tensor, int]:
    """The ``y_hat`` of an ``ok`` reply, checked against its declared shape; an ``error`` reply raised."""
    import torch

    if header["kind"] == "error":
        raise NeckkitError(str(header.get("message") or f"{shown}: entropy decoding failed"))
    shape, calls = header.get("shape"), header.get("synthesis_calls", 0)
    valid = (header["kind"] == "ok" and isinstance(shape, list) and len(shape) == 4 and shape[0] == 1
             and all(isinstance(side, int) and side > 0 for side in shape) and isinstance(calls, int))
    if not valid or shape[1] * shape[2] * shape[3] * 4 != len(data):
        raise NeckkitError(f"{shown}: the decode worker's reply does not hold a [1, C, h, w] latent")
    return torch.frombuffer(bytearray(data), dtype=torch.float32).reshape(shape), calls
