"""The hooks a neckkit plugin can implement (pluggy project ``neckkit``).

Every component hook receives a ``register`` callback, so the core, not the plugin,
validates names and metadata: ``register(name, factory, **info)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import typer

    from neckkit.host.registry import RegisterCallback

PROJECT = "neckkit"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_codecs(register: RegisterCallback) -> None:
    """Register neural image codecs: ``register("elic", factory, description=..., tiny=True)``."""


@hookspec
def register_encoders(register: RegisterCallback) -> None:
    """Register visual encoders whose intermediate tokens a neck can produce."""


@hookspec
def register_mllms(register: RegisterCallback) -> None:
    """Register multimodal LLMs that read a registered visual encoder's tokens."""


@hookspec
def register_commands(app: typer.Typer) -> None:
    """Add commands to the ``neckkit`` CLI, e.g. with ``@app.command()``."""
