"""``bmshj2018-hyperprior-vbr`` and ``mbt2018-mean-vbr``: CompressAI's variable-rate hyperprior models.

* :class:`ScaleHyperpriorVbrCodec`: ``q = round(gain * y)``, zero-mean Gaussian of scale ``gain * sigma``.
* :class:`MeanScaleHyperpriorVbrCodec`: ``q = round(gain * y - gain * mu)``, ``(sigma, mu)`` from ``h_s(z_hat)``.

Both reconstruct ``y_hat`` with the quantisation offsets (:class:`~neckkit.plugins.codecs.vbr_base.CompressAIVbrCodec`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from neckkit.plugins.codecs.compressai_base import gaussian_likelihood, straight_through
from neckkit.plugins.codecs.vbr_base import CompressAIVbrCodec

__all__ = ["MeanScaleHyperpriorVbrCodec", "ScaleHyperpriorVbrCodec"]


class ScaleHyperpriorVbrCodec(CompressAIVbrCodec):
    """``bmshj2018-hyperprior-vbr`` (``ScaleHyperpriorVbr``): ``z = h_a(|y|)``, scales from ``h_s(z_hat)``."""

    def _analyze_at(self, y: Tensor, gain: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        m = self.model
        gc = m.gaussian_conditional
        z_hat, z_likelihoods = self._quantize_z(m.h_a(torch.abs(y)), gain)
        scaled_scales = m.h_s(z_hat) * gain
        scaled = y * gain
        with torch.no_grad():
            q_val = gc.dequantize(gc.quantize(scaled, "symbols"))  # the decoded symbols, as floats
            exact = self._reconstruct(q_val, scaled_scales, gain, None)
        y_likelihoods = gaussian_likelihood(gc, scaled, straight_through(q_val, scaled), scaled_scales, None)
        return straight_through(exact, y), {"y": y_likelihoods, "z": z_likelihoods}

    def _compress_at(self, y: Tensor, gain: Tensor) -> tuple[list[list[bytes]], tuple[int, ...]]:
        m = self.model
        z = m.h_a(torch.abs(y))
        z_strings, z_hat = self._code_z(z, gain)
        indexes = m.gaussian_conditional.build_indexes(m.h_s(z_hat) * gain)
        y_strings = m.gaussian_conditional.compress(y * gain, indexes)
        return [y_strings, z_strings], tuple(z.size()[-2:])

    def _decompress_at(self, strings: list[list[bytes]], shape: tuple[int, ...], gain: Tensor) -> Tensor:
        m = self.model
        z_hat = self._decode_z(strings[1], shape, gain)
        scaled_scales = m.h_s(z_hat) * gain
        q_val = m.gaussian_conditional.decompress(strings[0], m.gaussian_conditional.build_indexes(scaled_scales))
        return self._reconstruct(q_val, scaled_scales, gain, None)


class MeanScaleHyperpriorVbrCodec(CompressAIVbrCodec):
    """``mbt2018-mean-vbr`` (``MeanScaleHyperpriorVbr``): ``z = h_a(y)``, (scales, means) from ``h_s(z_hat)``."""

    def _analyze_at(self, y: Tensor, gain: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        m = self.model
        gc = m.gaussian_conditional
        z_hat, z_likelihoods = self._quantize_z(m.h_a(y), gain)
        scales, means = m.h_s(z_hat).chunk(2, 1)
        scaled, scaled_scales, scaled_means = y * gain, scales * gain, means * gain
        with torch.no_grad():
            q_val = gc.dequantize(gc.quantize(scaled, "symbols", scaled_means))  # round(gain y - gain mu)
            exact = self._reconstruct(q_val, scaled_scales, gain, means)
        values = straight_through(q_val + scaled_means, scaled)
        y_likelihoods = gaussian_likelihood(gc, scaled, values, scaled_scales, scaled_means)
        return straight_through(exact, y), {"y": y_likelihoods, "z": z_likelihoods}

    def _compress_at(self, y: Tensor, gain: Tensor) -> tuple[list[list[bytes]], tuple[int, ...]]:
        m = self.model
        z = m.h_a(y)
        z_strings, z_hat = self._code_z(z, gain)
        scales, means = m.h_s(z_hat).chunk(2, 1)
        indexes = m.gaussian_conditional.build_indexes(scales * gain)
        y_strings = m.gaussian_conditional.compress(y * gain, indexes, means=means * gain)
        return [y_strings, z_strings], tuple(z.size()[-2:])

    def _decompress_at(self, strings: list[list[bytes]], shape: tuple[int, ...], gain: Tensor) -> Tensor:
        m = self.model
        z_hat = self._decode_z(strings[1], shape, gain)
        scales, means = m.h_s(z_hat).chunk(2, 1)
        scaled_scales = scales * gain
        q_val = m.gaussian_conditional.decompress(strings[0], m.gaussian_conditional.build_indexes(scaled_scales))
        return self._reconstruct(q_val, scaled_scales, gain, means)
