"""Registering a CompressAI zoo model as a codec: its lazy factory and its options, without importing torch.

``register(name, compressai_factory("mbt2018", tiny_sizes=(16, 32)), options=COMPRESSAI_OPTIONS, ...)``
is a whole codec: the factory (:func:`neckkit.plugins.codecs.zoo.build_compressai`, imported when built)
wraps the model in neckkit's CompressAI adapter (exact ``y_hat``, likelihoods, entropy tables kept
current) and loads CompressAI's pretrained weights by ``quality``, one line when they are not cached
and cannot be downloaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from neckkit.host.factories import lazy_factory

__all__ = ["COMPRESSAI_OPTIONS", "compressai_factory"]

# The options every compressai_factory codec takes (register(..., options=COMPRESSAI_OPTIONS)).
COMPRESSAI_OPTIONS: dict[str, str] = {
    "quality": "CompressAI pretrained weights (downloaded into the torch hub cache); with random_init, "
    "that quality's architecture",
    "weights": "CompressAI-style state dict file (.pth/.pth.tar; wrapped or module.-prefixed is fine)",
    "tiny": "tiny widths, random init (tests, quick start); with weights, loads them into the tiny model",
    "random_init": "real-size architecture, random weights (the highest quality's sizes unless quality is given)",
}


def compressai_factory(model: str, tiny_sizes: Sequence[int]) -> Callable[..., Any]:
    """The factory of CompressAI zoo ``model`` (e.g. ``"mbt2018"``) on neckkit's adapter, imported when built.

    ``tiny_sizes``: the ``tiny=True`` widths, ``(N, M)`` (``(N,)`` for ``cheng2020-*``). The factory
    takes :data:`COMPRESSAI_OPTIONS`: ``quality``, ``weights``, ``tiny``, ``random_init``.
    """
    return lazy_factory("neckkit.plugins.codecs.zoo:build_compressai", model=model, tiny_sizes=tuple(tiny_sizes))
