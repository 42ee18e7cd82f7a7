"""The served path: a ``.nk`` bitstream -> latent -> neck -> the MLLM's encoder -> answer.

- :mod:`neckkit.serving.answerer`: :class:`Answerer`, loaded once, answering many requests (alone or batched);
- :mod:`neckkit.serving.requests`: :class:`AskRequest` and :class:`AskResult` (the fields of ``ask --json``);
- :mod:`neckkit.serving.machine_path`: rebuilding the neck's codec and encoder, fingerprint and pairing
  checks, counting synthesis calls;
- :mod:`neckkit.serving.stopwatch`: :class:`Stopwatch`, per-stage seconds;
- :mod:`neckkit.serving.decode_pool` and :mod:`neckkit.serving.decode_worker`: entropy decoding in worker
  processes (:class:`DecodeWorkers` configures it), so a hostile bitstream costs only its own request;
- :mod:`neckkit.serving.errors`: the per-request failures (:class:`DamagedBitstream`, ...);
- the HTTP server: :mod:`~neckkit.serving.http_app` (routes, warm-up), :mod:`~neckkit.serving.batcher`
  (dynamic batching), :mod:`~neckkit.serving.uploads` (upload size, time and count limits),
  :mod:`~neckkit.serving.access_log` (one line per request), :mod:`~neckkit.serving.metrics` (Prometheus).

``from neckkit.serving import Answerer, AskRequest`` imports torch only when a name is first used.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "Answerer": "neckkit.serving.answerer",
    "AskRequest": "neckkit.serving.requests",
    "AskResult": "neckkit.serving.requests",
    "DamagedBitstream": "neckkit.serving.errors",
    "DecodeWorkers": "neckkit.serving.decode_pool",
    "Stopwatch": "neckkit.serving.stopwatch",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'neckkit.serving' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
