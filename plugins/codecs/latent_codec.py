"""Models built from CompressAI latent codecs (ELIC ``Elic2022Chandelier`` / ``Elic2022Official``, any
``SimpleVAECompressionModel`` of hyperprior / channel-group / checkerboard / Gaussian latent codecs):
``analyze`` mirrors ``latent_codec.compress`` step by step on the same half-width checkerboard tensors."""

from __future__ import annotations

from typing import Any

import torch
from compressai.latent_codecs import (
    ChannelGroupsLatentCodec,
    CheckerboardLatentCodec,
    GaussianConditionalLatentCodec,
    HyperLatentCodec,
    HyperpriorLatentCodec,
)
from torch import Tensor, nn

from neckkit.plugin_api import NeckkitError
from neckkit.plugins.codecs.compressai_base import (
    HYPER_STRIDE,
    CompressAICodec,
    gaussian_likelihood,
    quantize_hyper,
    round_around,
    straight_through,
)

__all__ = ["LatentCodecCodec"]


class LatentCodecCodec(CompressAICodec):
    """Models built from CompressAI latent codecs (ELIC Chandelier/Official, checkerboard Cheng2020).

    ``analyze`` mirrors ``latent_codec.compress`` on the same tensors (checkerboard halves of half
    width, channel groups in order, channel context from the decoded groups) without entropy coding;
    ``decompress_latent`` calls ``latent_codec.decompress`` (no ``g_s``).
    """

    def _latent_channels(self) -> int:
        groups = getattr(self.model, "groups", None)
        if groups:
            return int(sum(groups))
        return int(getattr(self.model, "M", 0) or self.model.g_s[0].conv1.in_channels)

    def _analyze_latent(self, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        likelihoods: dict[str, Tensor] = {}
        y_hat = _mirror(self.model.latent_codec, y, None, likelihoods)
        return y_hat, likelihoods

    def _stream_count(self) -> int:
        return _stream_count(self.model.latent_codec)

    def _compress_y(self, y: Tensor) -> dict[str, Any]:
        return self.model.latent_codec.compress(y)  # SimpleVAECompressionModel.compress after g_a

    def _decompress_latent(self, strings: list[list[bytes]], shape: tuple[int, ...]) -> Tensor:
        lc = self.model.latent_codec
        y_shape = (shape[0] * HYPER_STRIDE, shape[1] * HYPER_STRIDE)
        shapes = {"y": _y_shape(lc.y, self.latent_channels, *y_shape), "hyper": shape}
        return lc.decompress(strings, shapes)["y_hat"]


def _stream_count(lc: nn.Module) -> int:
    """How many byte streams a latent codec's ``compress`` returns."""
    if isinstance(lc, HyperpriorLatentCodec):
        return _stream_count(lc.y) + 1
    if isinstance(lc, ChannelGroupsLatentCodec):
        return sum(_stream_count(lc.latent_codec[f"y{k}"]) for k in range(len(lc.groups)))
    if isinstance(lc, CheckerboardLatentCodec):
        return 2
    if isinstance(lc, GaussianConditionalLatentCodec):
        return 1
    raise NeckkitError(f"unsupported CompressAI latent codec {type(lc).__name__}")


def _y_shape(lc: nn.Module, channels: int, height: int, width: int) -> Any:
    """The ``shape`` entry a latent codec's ``compress`` returns, rebuilt from the latent size."""
    if isinstance(lc, ChannelGroupsLatentCodec):
        return [_y_shape(lc.latent_codec[f"y{k}"], g, height, width) for k, g in enumerate(lc.groups)]
    if isinstance(lc, CheckerboardLatentCodec):
        return (channels, height, width)
    if isinstance(lc, GaussianConditionalLatentCodec):
        return (height, width)
    raise NeckkitError(f"unsupported CompressAI latent codec {type(lc).__name__}")


def _mirror(lc: nn.Module, y: Tensor, side: Tensor | None, likelihoods: dict[str, Tensor]) -> Tensor:
    """``lc.compress(y, side)["y_hat"]`` computed differentiably; fills ``likelihoods``."""
    if isinstance(lc, HyperpriorLatentCodec):
        hyper = lc.hyper
        if not isinstance(hyper, HyperLatentCodec):
            raise NeckkitError(f"unsupported hyper latent codec {type(hyper).__name__}")
        z_hat, likelihoods["z"] = quantize_hyper(hyper.entropy_bottleneck, hyper.h_a(y))
        return _mirror(lc.y, y, hyper.h_s(z_hat), likelihoods)
    if isinstance(lc, ChannelGroupsLatentCodec):
        pieces = torch.split(y, lc.groups, dim=1)
        y_hat_: list[Tensor] = []
        likelihood_: list[Tensor] = []
        for k in range(len(lc.groups)):
            params = lc._get_ctx_params(k, side, y_hat_)
            group: dict[str, Tensor] = {}
            y_hat_.append(_mirror(lc.latent_codec[f"y{k}"], pieces[k], params, group))
            likelihood_.append(group["y"])
        likelihoods["y"] = torch.cat(likelihood_, dim=1)
        return torch.cat(y_hat_, dim=1)
    if isinstance(lc, CheckerboardLatentCodec):
        return _mirror_checkerboard(lc, y, side, likelihoods)
    if isinstance(lc, GaussianConditionalLatentCodec):
        scales, means = lc._chunk(lc.entropy_parameters(side))
        y_hat = straight_through(round_around(y, means), y)
        likelihoods["y"] = gaussian_likelihood(lc.gaussian_conditional, y, y_hat, scales, means)
        return y_hat
    raise NeckkitError(f"unsupported CompressAI latent codec {type(lc).__name__}")


def _mirror_checkerboard(
    lc: CheckerboardLatentCodec, y: Tensor, side: Tensor, likelihoods: dict[str, Tensor]
) -> Tensor:
    """``CheckerboardLatentCodec.compress``: anchors with zero context, then non-anchors."""
    n, _, height, width = y.shape
    if width % 2:
        raise NeckkitError(f"checkerboard context needs an even latent width, got {width}")
    side_ = lc.unembed(side)
    y_ = lc.unembed(y)
    halves = [y_[0].new_zeros(y_[0].shape), y_[1].new_zeros(y_[1].shape)]
    half_likelihoods: list[Tensor] = []
    for i in range(2):
        if i == 0:
            ctx = side.new_zeros((n, lc.context_prediction.out_channels, height, width // 2))
        else:
            ctx = lc.unembed(lc.context_prediction(lc.embed(torch.stack(halves))))[i]
        params = lc.entropy_parameters(lc.merge(ctx, side_[i]))
        out: dict[str, Tensor] = {}
        halves[i] = _mirror(lc.latent_codec["y"], y_[i], params, out)
        half_likelihoods.append(out["y"])
    likelihoods["y"] = lc.embed(torch.stack(half_likelihoods))
    return lc.embed(torch.stack(halves))
