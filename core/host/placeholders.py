"""Placeholder components: tiny or random-init builds whose outputs show the plumbing, not quality.

A ``--tiny`` or ``--random-init`` component has random weights: the decompressed photo is a dark
rectangle and a tiny LLM answers "PPPP...". That is right for tests and the quick start, and wrong to read
as a result. Every core build records such a component here (:func:`record`, called by
:func:`neckkit.host.options.build`); the CLI prints :data:`NOTICE` once per command, and ``eval`` writes the
same flag into ``eval.json`` and onto its plots (:func:`placeholder_flag`).

A tiny architecture given a weights file (``tiny_weights``) is not a placeholder: its weights were trained.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "NOTICE",
    "built_placeholders",
    "notice",
    "on_placeholder",
    "placeholder_flag",
    "placeholder_reason",
    "record",
    "reset",
]

NOTICE = (
    "Note: {components} {verb} random weights, so what this command outputs shows the plumbing, not quality "
    "(a decompressed image is a dark rectangle, a tiny LLM answers 'PPPP...'); use trained weights for results"
)

_lock = threading.Lock()
_built: list[str] = []
_listeners: list[Callable[[str], None]] = []


def placeholder_reason(options: Mapping[str, Any]) -> str | None:
    """``"tiny"`` or ``"random-init"`` when ``options`` build a component with random weights, else ``None``."""
    if options.get("weights"):
        return None
    if options.get("tiny"):
        return "tiny"
    if options.get("random_init"):
        return "random-init"
    return None


def record(kind: str, name: str, options: Mapping[str, Any]) -> str | None:
    """Note a component about to be built; its label (``codec 'tic' (tiny)``) when it is a placeholder.

    Listeners (:func:`on_placeholder`) hear each new label once per process.
    """
    reason = placeholder_reason(options)
    if reason is None:
        return None
    label = f"{kind} {name!r} ({reason})"
    with _lock:
        if label in _built:
            return label
        _built.append(label)
        listeners = list(_listeners)
    for listener in listeners:
        listener(label)
    return label


def built_placeholders() -> list[str]:
    """Labels of the placeholder components built in this process since the last :func:`reset`, in order."""
    with _lock:
        return list(_built)


def on_placeholder(listener: Callable[[str], None]) -> Callable[[], None]:
    """Call ``listener(label)`` for each placeholder built from now on; returns a function that removes it."""
    with _lock:
        _listeners.append(listener)

    def remove() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return remove


def reset() -> None:
    """Forget the placeholders built so far (a new command in the same process, tests)."""
    with _lock:
        _built.clear()


def notice(labels: list[str]) -> str:
    """:data:`NOTICE` for ``labels`` (one or more)."""
    components = ", ".join(labels)
    return NOTICE.format(components=components, verb="has" if len(labels) == 1 else "have")


def placeholder_flag(labels: list[str]) -> dict[str, Any]:
    """What results record about placeholders: ``{"plumbing_only": bool, "placeholders": [labels]}``."""
    return {"plumbing_only": bool(labels), "placeholders": list(labels)}
