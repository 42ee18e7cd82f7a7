"""Variable-rate codecs: the rate-distortion lambdas their levels are trained for.

QVRF (Tong et al., "QVRF: A Quantization-error-aware Variable Rate Framework for Learned Image
Compression", ICIP 2023) trains one model for eight rate points with CompressAI's MSE lambdas; CompressAI's
own variable-rate models (``compressai.models.vbr``) use the same set. Level ``i`` is trained for
``lambdas[i]``: level 0 gives the fewest bits.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from neckkit.config.base import NeckkitConfig

__all__ = ["QVRF_LAMBDAS", "VariableRateConfig", "check_lambdas"]

QVRF_LAMBDAS: tuple[float, ...] = (0.0018, 0.0035, 0.0067, 0.013, 0.025, 0.0483, 0.0932, 0.18)


def check_lambdas(lambdas: tuple[float, ...]) -> tuple[float, ...]:
    """``lambdas`` if positive and increasing with the level, else ValueError (a pydantic validator's)."""
    if any(value <= 0 for value in lambdas):
        raise ValueError("every lambda must be positive")
    if any(b <= a for a, b in zip(lambdas, lambdas[1:], strict=False)):
        raise ValueError("lambdas must increase with the level (level 0: fewest bits)")
    return lambdas


class VariableRateConfig(NeckkitConfig):
    """The lambda of each rate level, level 0 (fewest bits) first."""

    lambdas: tuple[float, ...] = Field(
        QVRF_LAMBDAS, min_length=1, description="rate-distortion lambda of each level, increasing (QVRF)"
    )

    @field_validator("lambdas")
    @classmethod
    def _increasing(cls, lambdas: tuple[float, ...]) -> tuple[float, ...]:
        return check_lambdas(lambdas)
