"""Whether weights may be downloaded now, and building components that a file names.

A ``.nk`` header or a neck's ``meta.json`` names its codec and encoder with their options. Such a file may
come from anyone, so it never chooses what neckkit downloads or opens: inside :func:`building_from_record`
every loader reads only the local cache (:func:`downloads_allowed` is false), and :func:`record_options`
refuses a file that names a weights path. Weights then come from the command line, the neck checkpoint's
own ``codec.safetensors`` or the local cache.

``HF_HUB_OFFLINE=1`` or ``NECKKIT_OFFLINE=1`` turn every download off, for CompressAI's zoo URLs as well as
the Hugging Face Hub.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from neckkit.errors import NeckkitError

__all__ = [
    "OFFLINE_VARIABLES",
    "building_from_record",
    "downloads_allowed",
    "offline_reason",
    "record_options",
]

OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "NECKKIT_OFFLINE")
_RECORD: ContextVar[str | None] = ContextVar("neckkit_building_from_record", default=None)


def _set(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() not in ("", "0", "false", "no")


def offline_reason() -> str | None:
    """Why nothing may be downloaded now (``"HF_HUB_OFFLINE is set"``, ``"... named by photo.nk"``), or ``None``."""
    for name in OFFLINE_VARIABLES:
        if _set(name):
            return f"{name} is set"
    source = _RECORD.get()
    if source is not None:
        return f"a component named by {source} is loaded from local files only"
    return None


def downloads_allowed() -> bool:
    """False when offline (:data:`OFFLINE_VARIABLES`) or while building a component a file names."""
    return offline_reason() is None


@contextmanager
def building_from_record(source: str) -> Iterator[None]:
    """Inside: no loader downloads (``source``, e.g. ``photo.nk's header``, is named in the errors)."""
    token = _RECORD.set(source)
    try:
        yield
    finally:
        _RECORD.reset(token)


def record_options(options: Mapping[str, Any], source: str, kind: str = "codec") -> dict[str, Any]:
    """A file's recorded factory options for a ``kind`` component, refused when they name a weights path
    (neckkit writes none)."""
    if "weights" in options:
        raise NeckkitError(
            f"{source} names weights {str(options['weights'])[:80]!r}; a file never chooses what neckkit opens "
            f"(neckkit records no paths): pass the weights with --{kind}-weights"
        )
    return dict(options)
