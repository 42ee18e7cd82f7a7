"""Command-line flags -> factory options, the one mapping every command uses.

``train``, ``eval``, ``bench``, ``compress``, ``decompress`` and ``ask`` turn their flags into the
standard option names of :mod:`neckkit.host.options` here, so they cannot disagree; the core then
checks the combination before any factory runs.
"""

from __future__ import annotations

import re
from typing import Any

from neckkit.config.base import parse_override
from neckkit.errors import UsageError
from neckkit.host.options import STANDARD_OPTIONS, WEIGHT_CHOICES, build_component, check_component_options

__all__ = [
    "build_component",
    "check_component_options",
    "codec_options",
    "component_options",
    "in_flag_words",
    "parse_component_options",
    "stored_options",
]



def parse_component_options(items: list[str] | None) -> dict[str, Any]:
    """``["variant=official", "N=64"]`` -> ``{"variant": "official", "N": 64}`` (YAML scalars)."""
    options: dict[str, Any] = {}
    for item in items or []:
        name, sep, _ = item.partition("=")
        path, value = parse_override(item) if sep and name.strip() else ([], None)
        if len(path) != 1:
            raise UsageError(f"component option {item!r} must look like name=value")
        options[path[0]] = value
    return options


def component_options(extra: list[str] | None, *, random_by_default: bool = False, **flags: Any) -> dict[str, Any]:
    """Factory options: the ``--*-opt name=value`` items, then the command's flags (``tiny``, ``random_init``,
    ``weights``, ``quality``...; unset ones, ``None`` or ``False``, are left out).

    A flag that repeats an ``--*-opt`` item with another value is refused. ``random_by_default``
    (``bench``): when nothing chooses the weights (no tiny, random_init, weights, quality or
    pretrained), ask for ``random_init``. Legality of the combination is the core's check, not this.
    """
    options = parse_component_options(extra)
    for key, value in flags.items():
        if value is None or value is False:
            continue
        if key in options and options[key] != value:
            raise UsageError(f"option {key!r} is given twice, as {options[key]!r} and as {value!r}; pass it once")
        options[key] = value
    if random_by_default and not any(options.get(key) not in (None, False) for key in WEIGHT_CHOICES):
        options["random_init"] = True
    return options


def codec_options(
    quality: int | None, weights: str | None, tiny: bool, random_init: bool, extra: list[str] | None
) -> dict[str, Any]:
    """Factory options from the common codec flags (:func:`component_options` with those flags)."""
    return component_options(extra, quality=quality, weights=weights, tiny=tiny, random_init=random_init)


def stored_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options recorded in checkpoints and .nk headers: no local paths (the fingerprint identifies the weights)."""
    return {key: value for key, value in options.items() if key != "weights"}


def in_flag_words(message: str, kind: str) -> str:
    """A factory's message in the words of the command line: each standard option as the flag that sets it.

    ``weights=<file>`` -> ``--codec-weights FILE``, ``tiny=True`` -> ``--tiny``, ``random_init=True`` ->
    ``--random-init``, ``quality=3`` -> ``--quality 3`` (for ``kind`` codec). Factories speak in their
    options because Python callers pass them; the CLI user passes flags. Only ``name=value`` is rewritten:
    a bare ``tiny`` may be plain English.
    """
    for option in STANDARD_OPTIONS:
        if option.handled_by != "factory":
            continue
        flag, name = option.flag.format(kind=kind), re.escape(option.name)
        if option.type is bool:
            message = re.sub(rf"\b{name}=True\b", flag, message)
        else:
            message = re.sub(rf"\b{name}=<(\w+)>", lambda match, flag=flag: f"{flag} {match.group(1).upper()}", message)
            message = re.sub(rf"\b{name}=(\d+)\b", rf"{flag} \1", message)
    return message
