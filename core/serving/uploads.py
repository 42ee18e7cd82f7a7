"""What one upload may cost the server: its size, the time its body takes to arrive, and how many arrive at once.

:class:`UploadLimits` is raw ASGI middleware around the app. For every request with a body (not
``GET``/``HEAD``/``OPTIONS``) it reads the whole body before the app sees it, refusing with one JSON
error line and ``Connection: close``:

- 413 ``too_large``: a ``Content-Length`` over ``max_bytes`` (before reading), or a chunked body that
  grows past it (while reading);
- 408 ``body_timeout``: a body that has not fully arrived ``read_timeout`` seconds after the request
  did (a slow or stalled client holds a connection and a buffer for at most that long);
- 503 ``busy`` with ``Retry-After``: ``max_uploads`` bodies are being read already (at once, unread).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["RETRY_AFTER_SECONDS", "UploadLimits", "error_body"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RETRY_AFTER_SECONDS = 1
NO_BODY_METHODS = ("GET", "HEAD", "OPTIONS")


def error_body(kind: str, message: str) -> dict[str, Any]:
    """``{"error": {"type": kind, "message": one line}}``: every error reply of the server."""
    return {"error": {"type": kind, "message": " ".join(message.split())}}


class UploadLimits:
    """Raw ASGI middleware bounding each upload's size and read time, and the number read at once.

    For metrics: ``on_refused(path, kind)`` is called for every refusal, ``on_uploads(count)`` whenever
    the number of bodies being read (:attr:`in_progress`) changes.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, read_timeout: float, max_uploads: int,
                 on_refused: Callable[[str, str], None] | None = None,
                 on_uploads: Callable[[int], None] | None = None) -> None:
        self.app, self.max_bytes, self.read_timeout, self.max_uploads = app, max_bytes, read_timeout, max_uploads
        self.on_refused, self.on_uploads = on_refused, on_uploads
        self.in_progress = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in NO_BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(scope, send, 400, "bad_request", "the Content-Length header is not a number")
                    return
        if declared is not None and declared > self.max_bytes:
            await self._too_large(scope, send, f"the body declares {declared} bytes")
            return
        if self.in_progress >= self.max_uploads:
            await self._refuse(scope, send, 503, "busy", f"{self.in_progress} uploads are in progress, the most this "
                               "server reads at once (neckkit serve --max-uploads); retry shortly",
                               [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())])
            return
        self._count(+1)
        try:
            body = await self._read(scope, receive, send)
        finally:
            self._count(-1)
        if body is None:
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _count(self, change: int) -> None:
        self.in_progress += change
        if self.on_uploads is not None:
            self.on_uploads(self.in_progress)

    async def _read(self, scope: Scope, receive: Receive, send: Send) -> bytes | None:
        """The whole body, or None when it was refused (or the client went away)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.read_timeout
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                await self._refuse(scope, send, 408, "body_timeout", f"the request body did not arrive within "
                                   f"{self.read_timeout:g} s (neckkit serve --body-timeout)")
                return None
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, send, f"the body is over {self.max_bytes} bytes")
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, scope: Scope, send: Send, what: str) -> None:
        await self._refuse(scope, send, 413, "too_large", f"{what}; this server takes at most {self.max_bytes} "
                                                          "bytes (neckkit serve --max-body-bytes)")

    async def _refuse(self, scope: Scope, send: Send, status: int, kind: str, message: str,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
        if self.on_refused is not None:
            self.on_refused(scope.get("path", ""), kind)
        payload = json.dumps(error_body(kind, message)).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close"), *(headers or [])]})
        await send({"type": "http.response.body", "body": payload, "more_body": False})
