"""``elic-vbr`` and ``tic-vbr``: ELIC and TIC made variable-rate by QVRF's quantisation regulator.

Levels are QVRF's lambdas (:class:`~neckkit.config.variable_rate.VariableRateConfig`, eight by default),
level 0 the fewest bits. From a fixed-rate checkpoint the gains start at
``a_s = sqrt(lambda_s / lambda_anchor)`` (:func:`~neckkit.plugins.codecs.level_gains.initial_log_gains`):
gain 1 at the anchor level, where the codec codes exactly as the fixed-rate one, coarser below it, finer
above. The anchor is the top level unless ``anchor_level`` says otherwise (for ``tic-vbr`` with
``quality=q``: the level of TransTIC's base-codec lambda ``q``). The gains are only a starting point:
``neckkit train-codec`` fine-tunes them with the codec. A file saved from a gained codec (its state dict
holds ``log_gains``) restores its own gains.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from neckkit.config.paper import TicConfig
from neckkit.config.variable_rate import VariableRateConfig
from neckkit.plugin_api import Codec, NeckkitError, load_codec_state, read_state_dict
from neckkit.plugins.codecs import ELIC_VBR_NEEDS, TIC_VBR_NEEDS
from neckkit.plugins.codecs.level_gains import initial_log_gains
from neckkit.plugins.codecs.quantisation_regulator import GAINS_KEY, GainedCodec

__all__ = ["build_elic_vbr", "build_tic_vbr"]


def _level_names(count: int) -> tuple[str, ...]:
    lambdas = VariableRateConfig().lambdas
    return tuple(f"lambda={value:g}" for value in lambdas) if len(lambdas) == count else ()


def _gained(
    name: str,
    weights: str | os.PathLike[str] | None,
    architecture: Callable[[], Codec],
    fixed_rate_file: Callable[[str | os.PathLike[str], dict[str, Any]], Codec],
    anchor_level: int | None,
    recomputed: tuple[str, ...] = (),
) -> GainedCodec:
    """A gained codec from nothing (``architecture()``, random), a gained file, or a fixed-rate file."""
    lambdas = VariableRateConfig().lambdas
    if weights is None:
        fixed = architecture()
    else:
        source = str(weights)
        state = read_state_dict(weights, source=source)
        if GAINS_KEY in state:
            if anchor_level is not None:
                raise NeckkitError(f"{source} already holds its gains ({GAINS_KEY}); anchor_level is for a fixed-rate "
                                   "checkpoint")
            count = int(state[GAINS_KEY].numel())
            codec = GainedCodec(architecture(), [0.0] * count, name, _level_names(count))
            load_codec_state(codec.model, state, source, recomputed=recomputed)
            return codec.eval()
        fixed = fixed_rate_file(weights, state)
    anchor = len(lambdas) - 1 if anchor_level is None else anchor_level
    return GainedCodec(fixed, initial_log_gains(lambdas, anchor), name, _level_names(len(lambdas))).eval()


def _check_sources(label: str, weights: object, tiny: bool, random_init: bool, needs: str) -> None:
    if weights is not None and random_init:
        raise NeckkitError(f"{label}: weights=<file> and random_init=True exclude each other")
    if tiny and random_init:
        raise NeckkitError(f"{label}: tiny=True and random_init=True exclude each other")
    if weights is None and not (tiny or random_init):
        raise NeckkitError(f"{label} {needs}")


def build_elic_vbr(
    weights: str | os.PathLike[str] | None = None,
    variant: str = "chandelier",
    tiny: bool = False,
    random_init: bool = False,
    anchor_level: int | None = None,
) -> GainedCodec:
    """ELIC with QVRF gains: ``weights`` is a fixed-rate ELIC file (as ``elic`` reads it) or an ``elic-vbr`` file.

    ``tiny``: tiny widths (random, or the ``weights`` file loaded into them); ``random_init``: the paper's
    sizes, random weights; ``anchor_level``: the level a fixed-rate checkpoint codes at with gain 1 (top).
    """
    from neckkit.plugins.codecs.elic import build_elic

    _check_sources("elic-vbr", weights, tiny, random_init, ELIC_VBR_NEEDS)
    name = "elic-vbr" + ("" if variant == "chandelier" else f"-{variant}") + ("-tiny" if tiny else "")
    return _gained(
        name,
        weights,
        lambda: build_elic(variant=variant, tiny=tiny, random_init=not tiny),
        lambda file, _: build_elic(weights=file, variant=variant, tiny=tiny),
        anchor_level,
    )


def build_tic_vbr(
    weights: str | os.PathLike[str] | None = None,
    quality: int | None = None,
    tiny: bool = False,
    random_init: bool = False,
    anchor_level: int | None = None,
) -> GainedCodec:
    """TIC with QVRF gains: ``weights`` is a TransTIC base codec (``quality`` says which) or a ``tic-vbr`` file.

    ``anchor_level`` defaults to the top level, or with ``quality=q`` to the level of TransTIC's lambda for
    ``q`` (``TicConfig.lambdas``), so the levels keep their lambdas' names.
    """
    from neckkit.plugins.codecs.tic import RECOMPUTED_BUFFERS, build_tic

    _check_sources("tic-vbr", weights, tiny, random_init, TIC_VBR_NEEDS)
    if quality is not None and anchor_level is None:
        anchor_level = _quality_level(quality)

    def fixed_rate_file(file: str | os.PathLike[str], state: dict[str, Any]) -> Codec:
        if not tiny:
            return build_tic(weights=file, quality=quality)
        codec = build_tic(tiny=True)  # a tiny TIC trained elsewhere
        load_codec_state(codec.model, state, str(file), recomputed=RECOMPUTED_BUFFERS)
        return codec

    return _gained(
        "tic-vbr" + ("-tiny" if tiny else ""),
        weights,
        lambda: build_tic(tiny=tiny, random_init=not tiny),
        fixed_rate_file,
        anchor_level,
        recomputed=RECOMPUTED_BUFFERS,
    )


def _quality_level(quality: int) -> int:
    """The level whose lambda is TransTIC's base-codec lambda of ``quality`` (1-4)."""
    tic_lambdas, lambdas = TicConfig().lambdas, VariableRateConfig().lambdas
    if not 1 <= quality <= len(tic_lambdas):
        raise NeckkitError(f"TIC quality must be one of 1..{len(tic_lambdas)}, got {quality}")
    if tic_lambdas[quality - 1] not in lambdas:
        raise NeckkitError(f"TIC quality {quality}'s lambda {tic_lambdas[quality - 1]:g} is not a level's lambda; "
                           "pass anchor_level")
    return lambdas.index(tic_lambdas[quality - 1])
