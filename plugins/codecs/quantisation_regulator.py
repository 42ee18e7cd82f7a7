"""QVRF's quantisation regulator (Tong et al., ICIP 2023, arXiv 2303.05744) around any fixed-rate adapter.

:class:`GainedCodec` turns one of neckkit's fixed-rate CompressAI-based codecs (ELIC's
:class:`~neckkit.plugins.codecs.latent_codec.LatentCodecCodec`, TIC's
:class:`~neckkit.plugins.codecs.tic.TicCodec`, any :class:`~neckkit.plugins.codecs.compressai_base.CompressAICodec`)
into a variable-rate one: level ``s`` has one positive gain ``a_s``; the fixed-rate latent codec (hyperprior
and context model included) codes ``a_s * y`` and the decoder's latent is ``decoded / a_s``. A larger
gain is a finer quantisation step, hence more bits. A level between two (``continuous_levels``) uses
the geometric interpolation of their gains. With gain 1 the codec codes exactly as the fixed-rate one.

The gains are the parameter ``log_gains`` [num_levels] (log-gains: always positive, and geometric
interpolation is linear in them), registered on the library model itself, so the codec's state dict is
the fixed-rate one plus ``model.log_gains`` and every loader of ``model.``-prefixed codec files reads it.
``analyze(x).y_hat`` is bitwise ``decompress_latent(compress(x))``: both divide the fixed-rate codec's
exact latent of ``a_s * y`` by the same ``a_s``; gradients reach ``y`` straight through and ``log_gains``
through the division (QVRF's quantisation-error-aware gradient) and the likelihoods.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from neckkit.plugin_api import Analysis, Codec, LatentPayload, NeckkitError, VariableRateCodec
from neckkit.plugins.codecs.compressai_base import CompressAICodec
from neckkit.plugins.codecs.level_gains import gain_at_level

__all__ = ["GAINS_KEY", "GainedCodec"]

GAINS_KEY = "log_gains"  # the parameter on the library model (``model.log_gains`` in the codec's state dict)


def _is_tic(codec: Codec) -> bool:
    if isinstance(codec, CompressAICodec):  # checked first: TIC's module imports timm
        return False
    from neckkit.plugins.codecs.tic import TicCodec

    return isinstance(codec, TicCodec)


def _analyze_latent(codec: Codec, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """The fixed-rate codec's ``analyze`` from its latent ``y`` on: exact ``y_hat`` (straight-through), likelihoods."""
    if isinstance(codec, CompressAICodec):
        return codec._analyze_latent(y)
    from compressai.ops import quantize_ste

    model = codec.model  # TicCodec.analyze after g_a, step for step
    z = model.h_a(y)  # [B, N, H/64, W/64]
    _, z_likelihoods = model.entropy_bottleneck(z)
    medians = model.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
    z_hat = quantize_ste(z - medians) + medians
    scales, means = model.gaussian_params(z_hat)
    _, y_likelihoods = model.gaussian_conditional(y, scales, means)
    y_hat = quantize_ste(y - means) + means
    return y_hat, {"y": y_likelihoods, "z": z_likelihoods}


class GainedCodec(VariableRateCodec):
    """A fixed-rate codec with one gain per rate level on its latent (QVRF); see the module docstring.

    Args:
        codec: the fixed-rate adapter (its library model, ``codec.model``, becomes this codec's ``model``).
        log_gains: initial log-gains, level 0 (fewest bits) first.
        name: the codec's name (e.g. ``elic-vbr``).
        level_names: optional names of the levels (the lambdas they are meant for).
    """

    continuous_levels = True
    fixed_rate: Codec

    def __init__(self, codec: Codec, log_gains: Sequence[float] | Tensor, name: str,
                 level_names: Sequence[str] = ()) -> None:
        super().__init__()
        model = getattr(codec, "model", None)
        if not (isinstance(codec, CompressAICodec) or _is_tic(codec)) or not isinstance(model, nn.Module):
            raise NeckkitError(
                f"{name}: the quantisation regulator wraps neckkit's CompressAI adapters and TIC, not {type(codec).__name__}"
            )
        if GAINS_KEY in model._parameters:
            raise NeckkitError(f"{name}: {type(model).__name__} already has gains; wrap a fixed-rate codec")
        values = torch.as_tensor(log_gains, dtype=torch.float32).detach().clone().reshape(-1)  # [num_levels]
        if values.numel() < 1 or not torch.isfinite(values).all():
            raise NeckkitError(f"{name}: log-gains must be finite numbers, one per level")
        model.register_parameter(GAINS_KEY, nn.Parameter(values.to(next(model.parameters()).device)))
        self.model = model  # registered once: the state dict is the fixed-rate one plus model.log_gains
        self.__dict__["fixed_rate"] = codec  # the same model's coding arithmetic, not a second submodule
        self.name = name
        self.num_levels = int(values.numel())
        self.level_names = tuple(level_names) if len(level_names) == self.num_levels else ()
        self.latent_channels = codec.latent_channels
        self.stride = codec.stride
        self.pad_multiple = codec.pad_multiple
        self.codes_every_latent_value = codec.codes_every_latent_value

    @property
    def gains(self) -> Tensor:
        """The gain of every level, [num_levels] (detached)."""
        return self.model.log_gains.detach().exp()

    def gain(self, level: float | None = None) -> Tensor:
        """The gain at ``level`` (default: the current one), 0-dim, with gradients to ``log_gains``."""
        level = self.level if level is None else self.check_level(level)
        return gain_at_level(self.model.log_gains, level)

    # --- the Codec interface ----------------------------------------------------------------------------

    def analyze(self, x: Tensor) -> Analysis:
        self.check_input(x)
        y = self.model.g_a(x)  # [B, M, H / 16, W / 16]
        gain = self.gain()
        scaled_hat, likelihoods = _analyze_latent(self.fixed_rate, y * gain)
        return Analysis(y_hat=scaled_hat / gain, likelihoods=likelihoods, latents={"y": y})

    @torch.no_grad()
    def compress(self, x: Tensor, analysis: Analysis | None = None) -> LatentPayload:
        """The fixed-rate codec's streams of ``gain * y``; with ``analysis`` (of this ``x``), its ``y`` is used."""
        self.check_input(x)
        y = analysis.latent_for("y", x) if analysis is not None else None
        if y is None:
            y = self.model.g_a(x)
        scaled = y * self.gain()
        return self.fixed_rate.compress(x, analysis=Analysis(scaled, {}, latents={"y": scaled}))

    @torch.no_grad()
    def decompress_latent(self, payload: LatentPayload) -> Tensor:
        return self.fixed_rate.decompress_latent(payload) / self.gain()

    def synthesize(self, y_hat: Tensor) -> Tensor:
        return self.fixed_rate.synthesize(y_hat)

    def synthesis_modules(self) -> list[nn.Module]:
        return self.fixed_rate.synthesis_modules()

    def payload_shape(self, height: int, width: int) -> tuple[int, ...] | None:
        return self.fixed_rate.payload_shape(height, width)

    # --- entropy tables: the fixed-rate codec's (the gains change no table) ---------------------------------

    def update_entropy_tables(self) -> None:
        self.fixed_rate.update_entropy_tables()

    def _ensure_tables(self) -> None:
        ensure = getattr(self.fixed_rate, "_ensure_tables", None)
        if callable(ensure):
            ensure()

    def train(self, mode: bool = True) -> GainedCodec:
        super().train(mode)
        self.fixed_rate.train(mode)  # TIC marks its tables stale in train()
        return self
