"""Gains of variable-rate codecs: one positive scalar per rate level, geometric between levels.

A level's gain multiplies the latent before quantisation (the quantisation step is ``1 / gain``), so a
larger gain spends more bits. Between two trained levels ``s`` and ``s + 1`` the gain at ``s + t`` is
their geometric interpolation ``gain_s ** (1 - t) * gain_{s+1} ** t`` (linear in the log-gain), as QVRF
and CompressAI's variable-rate models (their ``inputscale``) allow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from neckkit.plugin_api import NeckkitError

__all__ = ["gain_at_level", "initial_log_gains"]


def gain_at_level(log_gains: Tensor, level: float) -> Tensor:
    """``exp(log_gains)`` at ``level`` (0-dim): a trained level's own gain, or the geometric interpolation."""
    low = math.floor(level)
    fraction = level - low
    if fraction == 0:
        return log_gains[low].exp()
    return torch.lerp(log_gains[low], log_gains[low + 1], fraction).exp()


def initial_log_gains(lambdas: Sequence[float], anchor_level: int) -> list[float]:
    """Log-gains ``0.5 * ln(lambda_s / lambda_anchor)``: gain 1 at the anchor, ``sqrt`` of the lambda ratio elsewhere.

    At high rate an MSE-trained codec's quantisation step scales as ``1 / sqrt(lambda)``, so the gains follow
    the square root of the lambdas (for QVRF's lambda set these are CompressAI's variable-rate ``Gain``
    values, 0.1 .. 1 anchored at the top); the lambdas being nearly geometric, so are the gains.
    """
    if not 0 <= anchor_level < len(lambdas):
        raise NeckkitError(f"anchor_level must be one of the levels 0..{len(lambdas) - 1}, got {anchor_level}")
    anchor = lambdas[anchor_level]
    return [0.5 * math.log(value / anchor) for value in lambdas]
