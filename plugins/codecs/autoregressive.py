"""The autoregressive family (``cheng2020-anchor``, ``mbt2018``): the raster-scan loop of CompressAI's
``_compress_ar``, position by position (exact but sequential, so slow on large images)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from neckkit.plugin_api import Analysis, LatentPayload
from neckkit.plugins.codecs.compressai_base import (
    HYPER_STRIDE,
    CompressAICodec,
    gaussian_likelihood,
    quantize_hyper,
    straight_through,
)

__all__ = ["AutoregressiveCodec"]


class AutoregressiveCodec(CompressAICodec):
    """``cheng2020-anchor`` / ``mbt2018``: serial 5x5 masked context, coded position by position.

    CompressAI's ``_compress_ar`` runs the context model on a buffer whose not-yet-coded positions
    still hold the unquantised ``y``, while ``_decompress_ar`` has zeros there. The masked weights
    ignore those positions, but the convolution's arithmetic does not, so the encoder's means can
    differ from the decoder's in the last bit. neckkit therefore encodes (and ``analyze`` replays)
    on a zero-initialised buffer, exactly as the decoder sees it; the bitstream stays
    CompressAI-decodable. The likelihoods come from one parallel context pass over the exact
    ``y_hat``.
    """

    kernel_size = 5

    def _analyze_latent(self, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        m = self.model
        z_hat, z_likelihoods = quantize_hyper(m.entropy_bottleneck, m.h_a(y))
        params = m.h_s(z_hat)
        exact = torch.cat(
            [self._serial_code(y[i : i + 1].detach(), params[i : i + 1].detach())[0] for i in range(y.size(0))]
        )
        y_hat = straight_through(exact, y)
        ctx_params = m.context_prediction(y_hat)
        scales, means = m.entropy_parameters(torch.cat((params, ctx_params), dim=1)).chunk(2, 1)
        y_likelihoods = gaussian_likelihood(m.gaussian_conditional, y, y_hat, scales, means)
        return y_hat, {"y": y_likelihoods, "z": z_likelihoods}

    @torch.no_grad()
    def _serial_code(self, y: Tensor, params: Tensor) -> tuple[Tensor, list[int], list[int]]:
        """Raster-scan one image [1, M, h, w]: y_hat, and the symbols and scale indexes to code."""
        m = self.model
        k = self.kernel_size
        pad = (k - 1) // 2
        height, width = y.shape[-2:]
        buffer = torch.zeros((1, y.size(1), height + 2 * pad, width + 2 * pad), dtype=y.dtype, device=y.device)
        masked_weight = m.context_prediction.weight * m.context_prediction.mask
        symbols: list[int] = []
        indexes: list[int] = []
        for h in range(height):
            for w in range(width):
                crop = buffer[:, :, h : h + k, w : w + k]  # decoded so far, zeros ahead: as the decoder
                ctx_p = F.conv2d(crop, masked_weight, bias=m.context_prediction.bias)
                p = params[:, :, h : h + 1, w : w + 1]
                gaussian_params = m.entropy_parameters(torch.cat((p, ctx_p), dim=1)).squeeze(3).squeeze(2)
                scales, means = gaussian_params.chunk(2, 1)
                y_q = m.gaussian_conditional.quantize(y[:, :, h, w], "symbols", means)
                buffer[:, :, h + pad, w + pad] = y_q + means
                symbols.extend(y_q.squeeze(0).tolist())
                indexes.extend(m.gaussian_conditional.build_indexes(scales).squeeze(0).tolist())
        return F.pad(buffer, (-pad, -pad, -pad, -pad)), symbols, indexes

    @torch.no_grad()
    def compress(self, x: Tensor, analysis: Analysis | None = None) -> LatentPayload:
        from compressai.ans import BufferedRansEncoder

        self.check_input(x)
        self._ensure_tables()
        m = self.model
        y = analysis.latent_for("y", x) if analysis is not None else None
        if y is None:
            y = m.g_a(x)
        z = m.h_a(y)
        z_strings = m.entropy_bottleneck.compress(z)
        z_hat = m.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        params = m.h_s(z_hat)
        gc = m.gaussian_conditional
        y_strings = []
        for i in range(y.size(0)):
            _, symbols, indexes = self._serial_code(y[i : i + 1], params[i : i + 1])
            encoder = BufferedRansEncoder()
            encoder.encode_with_indexes(
                symbols, indexes, gc.quantized_cdf.tolist(), gc.cdf_length.tolist(), gc.offset.tolist()
            )
            y_strings.append(encoder.flush())
        return LatentPayload(strings=[y_strings, list(z_strings)], shape=tuple(int(v) for v in z.size()[-2:]))

    def _decompress_latent(self, strings: list[list[bytes]], shape: tuple[int, ...]) -> Tensor:
        m = self.model
        k = self.kernel_size
        pad = (k - 1) // 2
        z_hat = m.entropy_bottleneck.decompress(strings[1], shape)
        params = m.h_s(z_hat)
        height, width = z_hat.size(2) * HYPER_STRIDE, z_hat.size(3) * HYPER_STRIDE
        y_hat = torch.zeros((z_hat.size(0), m.M, height + 2 * pad, width + 2 * pad), device=z_hat.device)
        for i, y_string in enumerate(strings[0]):
            m._decompress_ar(y_string, y_hat[i : i + 1], params[i : i + 1], height, width, k, pad)
        return F.pad(y_hat, (-pad, -pad, -pad, -pad))
