"""``mbt2018-vbr``: CompressAI's variable-rate joint autoregressive model (``JointAutoregressiveHierarchicalPriorsVbr``).

Coded position by position like :class:`~neckkit.plugins.codecs.autoregressive.AutoregressiveCodec`: the
masked 5x5 context (plus ``scale_to_context(gain)``, CompressAI's ``scl2ctx``) and the hyperprior give
``(sigma, mu)``; the symbol is ``sign(v) * round(|v|)`` with ``v = gain * (y - mu)``, and the position is
reconstructed with the quantisation offset before the next one reads it (CompressAI's ``ste_recursive``).
Encoder, ``analyze`` and decoder run one loop body on a zero-initialised buffer with the masked weights,
so all three see bitwise the same context; the symbols and CDF indexes are CompressAI's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from neckkit.plugin_api import BoundedRansDecoder, NeckkitError
from neckkit.plugins.codecs.compressai_base import HYPER_STRIDE, gaussian_likelihood, straight_through
from neckkit.plugins.codecs.vbr_base import CompressAIVbrCodec

__all__ = ["AutoregressiveVbrCodec"]

KERNEL_SIZE = 5  # CompressAI's context_prediction
PAD = (KERNEL_SIZE - 1) // 2


class AutoregressiveVbrCodec(CompressAIVbrCodec):
    """``mbt2018-vbr``: serial masked context conditioned on the gain, offsets applied position by position."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        if not getattr(self.model, "ste_recursive", True):
            raise NeckkitError(f"{self.name}: CompressAI supports ste_recursive=True only, and so does neckkit")

    # --- one position, shared by the encoder, analyze and the decoder --------------------------------

    def _context_shift(self, gain: Tensor) -> Tensor | None:
        m = self.model
        return m.scale_to_context(gain.view(1, 1)).view(1, -1, 1, 1) if m.scl2ctx else None

    def _parameters_at(
        self, buffer: Tensor, params: Tensor, h: int, w: int, shift: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """(scales, means) [1, M, 1, 1] of position (h, w) from the decoded neighbours in ``buffer``."""
        m = self.model
        weight = m.context_prediction.weight * m.context_prediction.mask
        crop = buffer[:, :, h : h + KERNEL_SIZE, w : w + KERNEL_SIZE]  # decoded so far, zeros ahead
        ctx_p = F.conv2d(crop, weight, bias=m.context_prediction.bias)
        if shift is not None:
            ctx_p = ctx_p + shift
        gaussian_params = m.entropy_parameters(torch.cat((params[:, :, h : h + 1, w : w + 1], ctx_p), dim=1))
        scales, means = gaussian_params.chunk(2, 1)
        return scales, means

    @torch.no_grad()
    def _serial_code(self, y: Tensor, params: Tensor, gain: Tensor) -> tuple[Tensor, Tensor, list[int], list[int]]:
        """Raster-scan one image [1, M, h, w]: y_hat, the symbols as floats, and the symbols and indexes to code."""
        gc = self.model.gaussian_conditional
        height, width = y.shape[-2:]
        buffer = y.new_zeros((1, y.size(1), height + 2 * PAD, width + 2 * PAD))
        q_map = torch.zeros_like(y)
        shift = self._context_shift(gain)
        symbols: list[int] = []
        indexes: list[int] = []
        for h in range(height):
            for w in range(width):
                scales, means = self._parameters_at(buffer, params, h, w, shift)
                centred = (y[:, :, h : h + 1, w : w + 1] - means) * gain
                q_val = (torch.sign(centred) * torch.round(torch.abs(centred))).int().float()  # CompressAI's symbol
                buffer[:, :, h + PAD, w + PAD] = self._reconstruct(q_val, scales * gain, gain, means)[:, :, 0, 0]
                q_map[:, :, h, w] = q_val[:, :, 0, 0]
                symbols.extend(q_val.int().reshape(-1).tolist())
                indexes.extend(gc.build_indexes(scales * gain).reshape(-1).tolist())
        return buffer[:, :, PAD:-PAD, PAD:-PAD], q_map, symbols, indexes

    # --- the Codec interface ----------------------------------------------------------------------------

    def _analyze_at(self, y: Tensor, gain: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        m = self.model
        z_hat, z_likelihoods = self._quantize_z(m.h_a(y), gain)
        params = m.h_s(z_hat)
        coded = [self._serial_code(y[i : i + 1].detach(), params[i : i + 1].detach(), gain) for i in range(y.size(0))]
        y_hat = straight_through(torch.cat([item[0] for item in coded]), y)
        q_map = torch.cat([item[1] for item in coded])
        # Likelihoods from one parallel context pass over the exact y_hat.
        weight = m.context_prediction.weight * m.context_prediction.mask
        ctx_params = F.conv2d(y_hat, weight, bias=m.context_prediction.bias, padding=PAD)
        shift = self._context_shift(gain)
        if shift is not None:
            ctx_params = ctx_params + shift
        scales, means = m.entropy_parameters(torch.cat((params, ctx_params), dim=1)).chunk(2, 1)
        centred = (y - means) * gain
        y_likelihoods = gaussian_likelihood(
            m.gaussian_conditional, centred, straight_through(q_map, centred), scales * gain, None
        )
        return y_hat, {"y": y_likelihoods, "z": z_likelihoods}

    def _compress_at(self, y: Tensor, gain: Tensor) -> tuple[list[list[bytes]], tuple[int, ...]]:
        from compressai.ans import BufferedRansEncoder

        m = self.model
        gc = m.gaussian_conditional
        z = m.h_a(y)
        z_strings, z_hat = self._code_z(z, gain)
        params = m.h_s(z_hat)
        y_strings = []
        for i in range(y.size(0)):
            _, _, symbols, indexes = self._serial_code(y[i : i + 1], params[i : i + 1], gain)
            encoder = BufferedRansEncoder()
            encoder.encode_with_indexes(
                symbols, indexes, gc.quantized_cdf.tolist(), gc.cdf_length.tolist(), gc.offset.tolist()
            )
            y_strings.append(encoder.flush())
        return [y_strings, z_strings], tuple(z.size()[-2:])

    def _decompress_at(self, strings: list[list[bytes]], shape: tuple[int, ...], gain: Tensor) -> Tensor:
        m = self.model
        gc = m.gaussian_conditional
        z_hat = self._decode_z(strings[1], shape, gain)
        params = m.h_s(z_hat)
        height, width = z_hat.size(2) * HYPER_STRIDE, z_hat.size(3) * HYPER_STRIDE
        tables = (gc.quantized_cdf.tolist(), gc.cdf_length.tolist(), gc.offset.tolist())
        shift = self._context_shift(gain)
        y_hat = []
        for i, y_string in enumerate(strings[0]):
            decoder = BoundedRansDecoder()
            decoder.set_stream(y_string)
            buffer = z_hat.new_zeros((1, m.M, height + 2 * PAD, width + 2 * PAD))
            for h in range(height):
                for w in range(width):
                    scales, means = self._parameters_at(buffer, params[i : i + 1], h, w, shift)
                    indexes = gc.build_indexes(scales * gain).reshape(-1).tolist()
                    q_val = torch.tensor(decoder.decode_stream(indexes, *tables), dtype=torch.int32)
                    q_val = q_val.float().reshape(1, -1, 1, 1).to(scales.device)
                    buffer[:, :, h + PAD, w + PAD] = self._reconstruct(q_val, scales * gain, gain, means)[:, :, 0, 0]
            y_hat.append(buffer[:, :, PAD:-PAD, PAD:-PAD])
        return torch.cat(y_hat)
