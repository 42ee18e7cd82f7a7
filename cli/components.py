"""Building codecs (and later encoders, MLLMs) from command-line options, shared by commands."""

from __future__ import annotations

from typing import Any

from neckkit.config.base import parse_override
from neckkit.errors import NeckkitError
from neckkit.host.manager import build_component

__all__ = ["build_component", "codec_options", "component_options", "parse_component_options", "stored_options"]


def parse_component_options(items: list[str] | None) -> dict[str, Any]:
    """``["variant=official", "N=64"]`` -> ``{"variant": "official", "N": 64}`` (YAML scalars)."""
    options: dict[str, Any] = {}
    for item in items or []:
        path, value = parse_override(item)
        if len(path) != 1:
            raise NeckkitError(f"component option {item!r} must look like name=value")
        options[path[0]] = value
    return options


def component_options(extra: list[str] | None, **flags: Any) -> dict[str, Any]:
    """Factory options: ``--*-opt name=value`` items, then the command's flags; unset flags (None, False) are left out."""
    options = parse_component_options(extra)
    options.update({key: value for key, value in flags.items() if value is not None and value is not False})
    return options


def codec_options(
    quality: int | None, weights: str | None, tiny: bool, random_init: bool, extra: list[str] | None
) -> dict[str, Any]:
    """Factory options from the common codec flags; unset flags are left out."""
    return component_options(extra, quality=quality, weights=weights, tiny=tiny, random_init=random_init)


def stored_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options recorded in checkpoints and .nk headers: no local paths (the fingerprint identifies the weights)."""
    return {key: value for key, value in options.items() if key != "weights"}
