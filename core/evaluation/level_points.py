"""Which rate levels an evaluation codes a variable-rate codec at, and which curve a neck's points form.

One neck trained over a codec's levels answers every level, so ``neckkit eval`` turns it into one rate
point per level. The curves (:func:`neckkit.evaluation.bd_rate.series_key`) keep the ways of serving many
rates apart, so they can be compared in one run (docs/evaluation.md, "Variable-rate codecs"):

- ``adaln`` / ``film``: one rate-conditioned neck, told each file's level;
- ``shared``: one unconditioned neck trained over several levels (it is not told the level);
- ``per-level``: one neck per level, each trained on that level only (the paper's way; the anchor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from neckkit.errors import NeckkitError

if TYPE_CHECKING:
    from neckkit.interfaces import Codec
    from neckkit.neck.transform import TransformNeck

__all__ = ["PER_LEVEL", "SHARED", "codec_levels", "neck_levels", "neck_variant"]

SHARED = "shared"
PER_LEVEL = "per-level"


def neck_variant(neck: TransformNeck) -> str | None:
    """``adaln``, ``film``, ``shared`` or ``per-level`` for a variable-rate codec's neck; None for a fixed-rate one."""
    levels = getattr(neck, "levels", None)
    if not levels:
        return None
    conditioning = getattr(neck, "conditioning", "none")
    if conditioning != "none":
        return conditioning
    return PER_LEVEL if len(levels) == 1 else SHARED


def codec_levels(codec: Codec, requested: Sequence[float] | None, label: str) -> list[float | None]:
    """The levels to code ``codec`` at: ``requested`` (each checked), else every trained level; ``[None]`` for a
    fixed-rate codec, whatever was requested (an evaluation may mix fixed-rate anchors and variable-rate necks)."""
    from neckkit.interfaces.codec import is_variable_rate

    if not is_variable_rate(codec):
        return [None]
    if not requested:
        return list(range(codec.num_levels))  # type: ignore[attr-defined]
    levels = []
    for level in requested:
        try:
            levels.append(codec.check_level(level))  # type: ignore[attr-defined]
        except NeckkitError as error:
            raise NeckkitError(f"--level {level:g} for {label}: {error}") from None
    return levels


def neck_levels(neck: TransformNeck, codec: Codec, requested: Sequence[float] | None, label: str) -> list[float | None]:
    """The levels a neck is evaluated at: ``[None]`` for a fixed-rate codec; a per-level neck's own level; else
    ``requested`` (checked against the codec and a conditioned neck's range), or the levels it was trained on."""
    variant = neck_variant(neck)
    if variant is None:  # a fixed-rate codec's neck (or one that records no levels: every level of its codec)
        return codec_levels(codec, requested, label)
    trained = list(neck.levels or ())
    if variant == PER_LEVEL or not requested:
        return codec_levels(codec, trained, label)
    levels = codec_levels(codec, requested, label)
    for level in levels:
        try:
            neck.check_level(float(level))  # type: ignore[arg-type]
        except NeckkitError as error:
            raise NeckkitError(f"--level {level:g} for {label}: {error}") from None
    return levels
