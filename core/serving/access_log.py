"""One access-log line per HTTP request, so an operator can see what the server answered, to whom, how fast.

:class:`AccessLog` is raw ASGI middleware, the outermost layer of the app, so it also sees the
replies :class:`~neckkit.serving.uploads.UploadLimits` sends before the app reads a body. When a
request's reply has been sent (or the client went away), it logs one line on the
``neckkit.serving.access`` logger at INFO::

    neckkit serve: access method=POST path=/v1/ask status=200 ms=41.7 bytes_in=5321 bytes_out=812 id=9c1f0b2e4d6a8f10 client=127.0.0.1:50412

``bytes_in`` counts the body bytes received, ``bytes_out`` the body bytes sent; ``status`` is 0 when the
client left before a reply started. The path is logged without its query string (prompts travel there)
and with anything unprintable percent-encoded, so a client cannot forge log lines. Every reply carries
its ``X-Request-ID``: the client's own (when it is 1 to 64 letters, digits, ``.``, ``_`` or ``-``) or
a new one, as in the line. uvicorn's own access log is off (``neckkit serve`` starts it with
``access_log=False``), so each request is logged exactly once.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

__all__ = ["ACCESS_LOGGER", "AccessLog", "access_line", "log_access_to_stderr"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ACCESS_LOGGER = "neckkit.serving.access"
REQUEST_ID_HEADER = b"x-request-id"
_CLIENT_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_PATH_SAFE = "/-._~!$&'()*+,;=:@"  # printable path characters kept as they are; the rest is %XX
MAX_PATH_CHARS = 200

log = logging.getLogger(ACCESS_LOGGER)


def access_line(*, method: str, path: str, status: int, seconds: float, bytes_in: int, bytes_out: int,
                request_id: str, client: str) -> str:
    """The one line logged for a request (``key=value`` fields, always in this order)."""
    shown = quote(path, safe=_PATH_SAFE)[:MAX_PATH_CHARS] or "/"
    method = quote(method, safe="")[:16]
    return (f"neckkit serve: access method={method} path={shown} status={status} ms={1000 * seconds:.1f} "
            f"bytes_in={bytes_in} bytes_out={bytes_out} id={request_id} client={client}")


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER and _CLIENT_ID.fullmatch(value):
            return value.decode("ascii")
    return uuid.uuid4().hex[:16]


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


class AccessLog:
    """Raw ASGI middleware: an ``X-Request-ID`` on every reply and, when ``enabled``, one access line per request."""

    def __init__(self, app: ASGIApp, *, enabled: bool = True) -> None:
        self.app, self.enabled = app, enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        counts = {"status": 0, "in": 0, "out": 0}

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                counts["in"] += len(message.get("body", b""))
            return message

        async def counted_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                counts["status"] = int(message["status"])
                message = {**message, "headers": [*message.get("headers", []),
                                                  (REQUEST_ID_HEADER, request_id.encode("ascii"))]}
            elif message["type"] == "http.response.body":
                counts["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counted_receive, counted_send)
        except BaseException:
            if not counts["status"]:
                counts["status"] = 500  # what the server sends for an exception that escaped the app
            raise
        finally:
            if self.enabled:
                log.info(access_line(method=scope.get("method", ""), path=scope.get("path", ""),
                                     status=counts["status"], seconds=time.perf_counter() - start,
                                     bytes_in=counts["in"], bytes_out=counts["out"], request_id=request_id,
                                     client=_client(scope)))


def log_access_to_stderr() -> None:
    """Print the access lines on stderr, as they are (``neckkit serve`` does this unless ``--no-access-log``)."""
    if any(getattr(handler, "neckkit_access", False) for handler in log.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.neckkit_access = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False  # a root handler configured elsewhere would print each line twice
