"""The scale and mean-scale hyperprior families (``bmshj2018-hyperprior``, ``mbt2018-mean``).

* :class:`ScaleHyperpriorCodec`: ``y_hat = round(y)``; zero-mean Gaussian.
* :class:`MeanScaleHyperpriorCodec`: ``y_hat = round(y - mu) + mu`` with ``mu`` from ``h_s(z_hat)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from neckkit.plugins.codecs.compressai_base import (
    CompressAICodec,
    gaussian_likelihood,
    quantize_hyper,
    round_around,
    straight_through,
)

__all__ = ["MeanScaleHyperpriorCodec", "ScaleHyperpriorCodec"]


class ScaleHyperpriorCodec(CompressAICodec):
    """``bmshj2018-hyperprior``: ``y_hat = round(y)``, scales from ``h_s(z_hat)``, ``z = h_a(|y|)``."""

    def _analyze_latent(self, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        m = self.model
        z_hat, z_likelihoods = quantize_hyper(m.entropy_bottleneck, m.h_a(torch.abs(y)))
        scales = m.h_s(z_hat)
        y_hat = straight_through(round_around(y, None), y)
        y_likelihoods = gaussian_likelihood(m.gaussian_conditional, y, y_hat, scales, None)
        return y_hat, {"y": y_likelihoods, "z": z_likelihoods}

    def _compress_y(self, y: Tensor) -> dict[str, Any]:
        m = self.model
        z = m.h_a(torch.abs(y))
        z_strings = m.entropy_bottleneck.compress(z)
        z_hat = m.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        indexes = m.gaussian_conditional.build_indexes(m.h_s(z_hat))
        return {"strings": [m.gaussian_conditional.compress(y, indexes), z_strings], "shape": z.size()[-2:]}

    def _decompress_latent(self, strings: list[list[bytes]], shape: tuple[int, ...]) -> Tensor:
        m = self.model
        z_hat = m.entropy_bottleneck.decompress(strings[1], shape)
        indexes = m.gaussian_conditional.build_indexes(m.h_s(z_hat))
        return m.gaussian_conditional.decompress(strings[0], indexes, z_hat.dtype)


class MeanScaleHyperpriorCodec(CompressAICodec):
    """``mbt2018-mean``: ``y_hat = round(y - mu) + mu``, (scales, means) from ``h_s(z_hat)``."""

    def _analyze_latent(self, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        m = self.model
        z_hat, z_likelihoods = quantize_hyper(m.entropy_bottleneck, m.h_a(y))
        scales, means = m.h_s(z_hat).chunk(2, 1)
        y_hat = straight_through(round_around(y, means), y)
        y_likelihoods = gaussian_likelihood(m.gaussian_conditional, y, y_hat, scales, means)
        return y_hat, {"y": y_likelihoods, "z": z_likelihoods}

    def _compress_y(self, y: Tensor) -> dict[str, Any]:
        m = self.model
        z = m.h_a(y)
        z_strings = m.entropy_bottleneck.compress(z)
        z_hat = m.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        scales, means = m.h_s(z_hat).chunk(2, 1)
        indexes = m.gaussian_conditional.build_indexes(scales)
        y_strings = m.gaussian_conditional.compress(y, indexes, means=means)
        return {"strings": [y_strings, z_strings], "shape": z.size()[-2:]}

    def _decompress_latent(self, strings: list[list[bytes]], shape: tuple[int, ...]) -> Tensor:
        m = self.model
        z_hat = m.entropy_bottleneck.decompress(strings[1], shape)
        scales, means = m.h_s(z_hat).chunk(2, 1)
        indexes = m.gaussian_conditional.build_indexes(scales)
        return m.gaussian_conditional.decompress(strings[0], indexes, means=means)
