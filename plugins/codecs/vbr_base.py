"""CompressAI's variable-rate models (``compressai.models.vbr``; Kamisli, Racapé and Choi, DCC 2024): the shared base.

The models code level ``s`` with the gain ``|Gain[s]|`` (CompressAI's "stage 2" path): the coder codes
``round(gain * (y - mu))`` with the Gaussian scaled by the gain, and the decoder reconstructs
``(sign(q) * (|q| + offset)) / gain + mu``, the quantisation-reconstruction offset predicted by the small
MLP ``QuantABCD`` from ``(scale * gain, gain)`` (zero where ``q == 0``). With a variable-rate hyperprior
(``vr_entbttlnck``, as the zoo weights of the two hyperprior models have) ``z`` is quantised with the step
``gayn2zqstep(1 / gain)``, so the hyper-latent's CDF tables belong to the level and are rebuilt on a level
change. Levels between two trained ones (``continuous_levels``) use the geometric interpolation of the
two gains (:func:`~neckkit.plugins.codecs.level_gains.gain_at_level`) as CompressAI's ``inputscale``:
``QuantABCD``, ``gayn2zqstep`` and ``scale_to_context`` are small MLPs of the gain, trained at the eight
gains only and evaluated at the interpolated one, exactly as CompressAI's own ``compress``/``decompress``
with ``inputscale`` do (their streams stay decodable by CompressAI).

``analyze`` re-runs the decoder's arithmetic, offsets included, so ``y_hat`` is bitwise the decoded one;
gradients pass straight through to ``y`` (the gains and ``QuantABCD`` get none through ``y_hat``; as in
CompressAI's training the gain is detached, and ``gayn2zqstep`` and the entropy models train through
the likelihoods).
"""

from __future__ import annotations

from typing import Any

import torch
from compressai.entropy_models import EntropyBottleneckVbr
from torch import Tensor, nn

from neckkit.plugin_api import Analysis, LatentPayload, NeckkitError, VariableRateCodec
from neckkit.plugins.codecs.compressai_base import CompressAICodec, quantize_hyper, straight_through
from neckkit.plugins.codecs.level_gains import gain_at_level

__all__ = ["CompressAIVbrCodec", "vbr_bottleneck_likelihood"]


def vbr_bottleneck_likelihood(eb: EntropyBottleneckVbr, values: Tensor, step: Tensor) -> Tensor:
    """The likelihood of [B, C, H, W] ``values`` under a variable-rate bottleneck quantised with ``step``."""
    per_channel = values.transpose(0, 1).contiguous()
    shape = per_channel.shape
    likelihood, _, _ = eb._likelihood_variable(per_channel.reshape(shape[0], 1, -1), qs=step)
    if eb.use_likelihood_bound:
        likelihood = eb.likelihood_lower_bound(likelihood)
    return likelihood.reshape(shape).transpose(0, 1).contiguous()


class CompressAIVbrCodec(CompressAICodec, VariableRateCodec):
    """A ``compressai.models.vbr`` model at the level :func:`~neckkit.plugin_api.at_level` sets (base class).

    ``num_levels`` is ``len(model.Gain)``; level names are the lambdas the levels were trained for.
    Subclasses code ``y`` given its gain: :meth:`_analyze_at`, :meth:`_compress_at`, :meth:`_decompress_at`.
    """

    continuous_levels = True
    _level_tables: tuple[Any, ...] | None = None  # (level, weights stamp) the bottleneck's tables are for

    def __init__(self, model: nn.Module, name: str | None = None) -> None:
        if getattr(model, "no_quantoffset", False):
            raise NeckkitError(f"{name or type(model).__name__}: neckkit codes CompressAI's variable-rate models "
                               "with their quantisation offsets only (no_quantoffset=False)")
        super().__init__(model, name)
        self.num_levels = len(model.Gain)
        lambdas = list(getattr(model, "lmbda", []))
        self.level_names = tuple(f"lambda={value:g}" for value in lambdas) if len(lambdas) == self.num_levels else ()

    # --- the level's gain and hyper-latent step ---------------------------------------------------

    def gain(self, level: float | None = None) -> Tensor:
        """The gain of ``level`` (default: the current one), 0-dim and detached as CompressAI codes it.

        A trained level's gain is ``|Gain[s]|`` exactly as CompressAI's ``compress(s=...)`` takes it;
        between two levels, their geometric interpolation (CompressAI's ``inputscale``).
        """
        level = self.level if level is None else self.check_level(level)
        gains = self.model.Gain.detach()
        if float(level).is_integer():
            return torch.abs(gains[int(level)])
        return gain_at_level(torch.log(torch.abs(gains)), level)

    def _z_step(self, gain: Tensor) -> Tensor | None:
        """The hyper-latent's quantisation step at ``gain`` (0-dim), or None for a fixed-rate bottleneck."""
        m = self.model
        if not isinstance(m.entropy_bottleneck, EntropyBottleneckVbr):
            return None
        return m.lower_bound_zqstep(m.gayn2zqstep(1.0 / gain.view(1)))[0]

    # --- entropy tables: the variable-rate bottleneck's belong to the level -------------------------
    # The base keeps the Gaussian's tables (a file's stored ones included); the variable-rate bottleneck's
    # are built here for the current level whenever the level or its weights change.

    def _level_stamp(self) -> tuple[Any, ...]:
        m = self.model
        parameters = [*m.entropy_bottleneck.parameters(), *getattr(m, "gayn2zqstep", nn.Sequential()).parameters(), m.Gain]
        return (float(self.level), *((id(p), p._version, p.device) for p in parameters))

    def update_entropy_tables(self) -> None:
        super().update_entropy_tables()
        self._level_tables = None  # CompressAI's update() built the bottleneck's step-1 tables: rebuild for the level

    def _ensure_tables(self) -> None:
        super()._ensure_tables()
        eb = self.model.entropy_bottleneck
        if not isinstance(eb, EntropyBottleneckVbr) or self._level_tables == self._level_stamp():
            return
        with torch.no_grad():  # CompressAI's update(scale=gain): the step as a [1] tensor
            m = self.model
            eb.update_variable(force=True, qs=m.lower_bound_zqstep(m.gayn2zqstep(1.0 / self.gain().view(1))))
        self._level_tables = self._level_stamp()

    # --- the hyper-latent at the level's step ---------------------------------------------------------

    def _quantize_z(self, z: Tensor, gain: Tensor) -> tuple[Tensor, Tensor]:
        """``z_hat`` exactly as the bottleneck decodes it at ``gain``, straight-through, and its likelihood."""
        eb = self.model.entropy_bottleneck
        step = self._z_step(gain)
        if step is None:
            return quantize_hyper(eb, z)
        medians = eb._get_medians().detach().reshape(1, -1, 1, 1)
        with torch.no_grad():
            symbols = eb.quantize_variable(z, "symbols", medians, step)  # round((z - median) / step)
            exact = eb.dequantize_variable(symbols, means=medians, qs=step)  # symbols * step + median
        z_hat = straight_through(exact, z)
        values = z + torch.empty_like(z).uniform_(-0.5, 0.5) * step if eb.training else z_hat
        return z_hat, vbr_bottleneck_likelihood(eb, values, step)

    def _code_z(self, z: Tensor, gain: Tensor) -> tuple[list[bytes], Tensor]:
        """z's byte strings and the ``z_hat`` the decoder will get from them."""
        eb = self.model.entropy_bottleneck
        step = self._z_step(gain)
        if step is None:
            strings = eb.compress(z)
            return strings, eb.decompress(strings, z.size()[-2:])
        strings = eb.compress(z, qs=step)
        return strings, eb.decompress(strings, z.size()[-2:], qs=step)

    def _decode_z(self, strings: list[bytes], shape: tuple[int, ...], gain: Tensor) -> Tensor:
        eb = self.model.entropy_bottleneck
        step = self._z_step(gain)
        return eb.decompress(strings, shape) if step is None else eb.decompress(strings, shape, qs=step)

    # --- the decoder's reconstruction with quantisation offsets ---------------------------------------

    def _reconstruct(self, q_val: Tensor, scaled_scales: Tensor, gain: Tensor, means: Tensor | None) -> Tensor:
        """CompressAI's decoder: ``sign(q) * (|q| + offset(scale * gain, gain)) / gain + means`` (offset 0 where q = 0)."""
        m = self.model
        rescale = torch.tensor(1.0) / gain
        q_abs, signs = q_val.abs(), torch.sign(q_val)
        q_stdev = m.gaussian_conditional.lower_bound_scale(scaled_scales).unsqueeze(dim=-1)  # [..., 1]
        stdev_and_gain = torch.cat((q_stdev, gain.detach().expand(q_stdev.shape)), dim=-1)  # [..., 2]
        q_offsets = (-1) * m.QuantABCD.forward(stdev_and_gain).squeeze(dim=-1)
        q_offsets[q_abs < 0.0001] = 0  # locations quantised to zero take no offset
        y_hat = signs * (q_abs + q_offsets)
        return y_hat * rescale + (0 if means is None else means)

    # --- the Codec interface ----------------------------------------------------------------------------

    def _analyze_latent(self, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return self._analyze_at(y, self.gain())

    @torch.no_grad()
    def compress(self, x: Tensor, analysis: Analysis | None = None) -> LatentPayload:
        """The level's streams (y, then z); with ``analysis`` (of this ``x``), its ``y`` is coded as it is."""
        self.check_input(x)
        self._ensure_tables()
        y = analysis.latent_for("y", x) if analysis is not None else None
        if y is None:
            y = self.model.g_a(x)  # [B, M, H / 16, W / 16]
        strings, shape = self._compress_at(y, self.gain())
        return LatentPayload(strings=[list(stream) for stream in strings], shape=tuple(int(v) for v in shape))

    def _decompress_latent(self, strings: list[list[bytes]], shape: tuple[int, ...]) -> Tensor:
        return self._decompress_at(strings, shape, self.gain())

    def _analyze_at(self, y: Tensor, gain: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def _compress_at(self, y: Tensor, gain: Tensor) -> tuple[list[list[bytes]], tuple[int, ...]]:
        raise NotImplementedError

    def _decompress_at(self, strings: list[list[bytes]], shape: tuple[int, ...], gain: Tensor) -> Tensor:
        raise NotImplementedError
