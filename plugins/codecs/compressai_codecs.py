"""CompressAI codecs behind neckkit's :class:`~neckkit.Codec` interface: ELIC and three zoo models.

Every adapter keeps the CompressAI model as ``.model`` and guarantees what the neck relies on:
``analyze(x).y_hat`` is *bitwise* the tensor ``decompress_latent(compress(x))`` returns (on the same
device, for the same batch), yet differentiable by straight-through rounding. CompressAI's own
``forward()`` does not always give the decoder's ``y_hat`` (the autoregressive models round ``y``
without the means there, and ``forward`` computes the context models on other tensor shapes than the
coder does), so each family re-runs the coder's own arithmetic without entropy coding:

* :class:`ScaleHyperpriorCodec` (``bmshj2018-hyperprior``): ``y_hat = round(y)``; zero-mean Gaussian.
* :class:`MeanScaleHyperpriorCodec` (``mbt2018-mean``): ``y_hat = round(y - mu) + mu`` with ``mu`` from
  ``h_s(z_hat)``.
* :class:`AutoregressiveCodec` (``cheng2020-anchor``, ``mbt2018``): the raster-scan loop of CompressAI's
  ``_compress_ar``, position by position (exact but sequential, so slow on large images).
* :class:`LatentCodecCodec` (ELIC ``Elic2022Chandelier`` / ``Elic2022Official``, any
  ``SimpleVAECompressionModel`` built from hyperprior / channel-group / checkerboard / Gaussian latent
  codecs): mirrors ``latent_codec.compress`` step by step on the same half-width checkerboard tensors.

In all families ``z_hat = round(z - median) + median``. Values come from the exact tensors; gradients
pass straight through (``y_hat = exact + (y - y.detach())``, identity for ``y`` and zero for the means,
like ``quantize_ste(y - mu) + mu``). Likelihoods (``{"y", "z"}``) use the coder's own scales and means; in
``eval()`` mode they are evaluated at the quantised values (the rate the coder approximately spends), in
``train()`` mode at ``y + uniform noise`` as CompressAI's training forward does.

Entropy-coder tables are rebuilt automatically: after construction and loading, and lazily before coding
whenever the entropy bottleneck's parameters changed (their in-place version counters moved, e.g. after an
optimiser step or ``load_state_dict``). Images must be multiples of :attr:`pad_multiple` = 64 pixels (the
hyperprior's total stride; callers pad with :func:`neckkit.bitstream.padding.pad_to_multiple`).

Factories: :func:`build_elic` (the paper's codec; CompressAI ships no ELIC weights) and
:func:`build_zoo` (CompressAI's pretrained models by quality). :func:`bridging_to_chandelier` renames the
paper's released ``ELIC_LLM`` state dict to ``Elic2022Chandelier`` keys.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.latent_codecs import (
    ChannelGroupsLatentCodec,
    CheckerboardLatentCodec,
    GaussianConditionalLatentCodec,
    HyperLatentCodec,
    HyperpriorLatentCodec,
)
from compressai.models import (
    Cheng2020Anchor,
    Elic2022Chandelier,
    Elic2022Official,
    JointAutoregressiveHierarchicalPriors,
    MeanScaleHyperprior,
    ScaleHyperprior,
)
from compressai.models.base import SimpleVAECompressionModel
from torch import Tensor, nn

from neckkit.config.paper import ElicConfig
from neckkit.errors import NeckkitError
from neckkit.interfaces.codec import Analysis, Codec, LatentPayload
from neckkit.loading.codec_weights import CODER_TABLES, extract_state_dict, load_codec_state, read_checkpoint
from neckkit.loading.weights import seeded_init

__all__ = [
    "ELIC_VARIANTS",
    "TINY_ELIC",
    "ZOO_MODELS",
    "AutoregressiveCodec",
    "CompressAICodec",
    "LatentCodecCodec",
    "MeanScaleHyperpriorCodec",
    "ScaleHyperpriorCodec",
    "bridging_to_chandelier",
    "build_elic",
    "build_zoo",
    "is_bridging_layout",
    "wrap_compressai_model",
    "zoo_checkpoint",
]

PAD_MULTIPLE = 64  # g_a (x16) then h_a (x4): y must be a multiple of 4 so h_s(z_hat) matches it
HYPER_STRIDE = 4  # latent cells per hyper-latent cell

ELIC_VARIANTS = {"chandelier": Elic2022Chandelier, "official": Elic2022Official}
# ELIC's structure (five uneven groups, the last one the rest) at tiny widths, for tests and quick starts.
TINY_ELIC = ElicConfig(N=16, M=32, groups=(2, 2, 4, 8, 16))

ZOO_MODELS = {
    "bmshj2018-hyperprior": ScaleHyperprior,
    "mbt2018-mean": MeanScaleHyperprior,
    "cheng2020-anchor": Cheng2020Anchor,
}
TINY_ZOO = {"bmshj2018-hyperprior": (16, 32), "mbt2018-mean": (16, 32), "cheng2020-anchor": (16,)}
ZOO_METRIC = "mse"
DOWNLOAD_TIMEOUT_S = 20.0


# --------------------------------------------------------------------------------------------------
# Straight-through helpers shared by all families
# --------------------------------------------------------------------------------------------------


def _straight_through(exact: Tensor, x: Tensor) -> Tensor:
    """``exact``'s values bit for bit, with the gradient of the identity w.r.t. ``x``."""
    return exact.detach() + (x - x.detach())


def _round_around(x: Tensor, means: Tensor | None) -> Tensor:
    """``round(x - means) + means`` as the entropy coder's quantise/dequantise computes it."""
    x = x.detach()
    if means is None:
        return torch.round(x)
    means = means.detach()
    return torch.round(x - means) + means


def _gaussian_likelihood(
    gc: GaussianConditional, y: Tensor, y_hat: Tensor, scales: Tensor, means: Tensor | None
) -> Tensor:
    values = y + torch.empty_like(y).uniform_(-0.5, 0.5) if gc.training else y_hat
    likelihood = gc._likelihood(values, scales, means)
    if gc.use_likelihood_bound:
        likelihood = gc.likelihood_lower_bound(likelihood)
    return likelihood


def _bottleneck_likelihood(eb: EntropyBottleneck, values: Tensor) -> Tensor:
    """The factorised likelihood of [B, C, H, W] ``values`` (with gradients to them and to ``eb``)."""
    per_channel = values.transpose(0, 1).contiguous()
    shape = per_channel.shape
    likelihood, _, _ = eb._likelihood(per_channel.reshape(shape[0], 1, -1))
    if eb.use_likelihood_bound:
        likelihood = eb.likelihood_lower_bound(likelihood)
    return likelihood.reshape(shape).transpose(0, 1).contiguous()


def _quantize_hyper(eb: EntropyBottleneck, z: Tensor) -> tuple[Tensor, Tensor]:
    """``z_hat`` exactly as ``eb.decompress(eb.compress(z))``, straight-through, and its likelihood."""
    medians = eb._get_medians().detach().reshape(1, -1, 1, 1)
    z_hat = _straight_through(_round_around(z, medians), z)
    values = z + torch.empty_like(z).uniform_(-0.5, 0.5) if eb.training else z_hat
    return z_hat, _bottleneck_likelihood(eb, values)


# --------------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------------


class CompressAICodec(Codec):
    """A CompressAI model as a neckkit codec (base class; use :func:`wrap_compressai_model`).

    ``stride`` 16 and ``pad_multiple`` 64 hold for every supported family; ``latent_channels`` is the
    model's ``M``. ``analyze`` is exact w.r.t. the coder only for images coded in the same batch on the
    same device (convolutions may round differently for other batch sizes or devices).
    """

    stride = 16
    pad_multiple = PAD_MULTIPLE

    def __init__(self, model: nn.Module, name: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.name = name or type(model).__name__
        self.latent_channels = self._latent_channels()
        self._tables_stamp: tuple[Any, ...] | None = None
        self.register_load_state_dict_pre_hook(_resize_coder_tables)
        self.register_load_state_dict_post_hook(_forget_tables)
        model.eval()
        self.update_entropy_tables()

    # --- entropy tables -------------------------------------------------------------------------

    def _entropy_modules(self) -> list[nn.Module]:
        return [m for m in self.model.modules() if isinstance(m, EntropyBottleneck | GaussianConditional)]

    def _stamp(self) -> tuple[Any, ...]:
        bottlenecks = [m for m in self.model.modules() if isinstance(m, EntropyBottleneck)]
        return tuple((id(p), p._version, p.device) for eb in bottlenecks for p in eb.parameters())

    def update_entropy_tables(self) -> None:
        """Rebuild every CDF table from the current weights (CompressAI's ``update(force=True)``)."""
        self.model.update(force=True)
        self._tables_stamp = self._stamp()

    def _ensure_tables(self) -> None:
        missing = any(m._offset.numel() == 0 for m in self._entropy_modules())
        if missing or self._stamp() != self._tables_stamp:
            self.update_entropy_tables()

    # --- shapes ---------------------------------------------------------------------------------

    def _latent_channels(self) -> int:
        return int(self.model.M)

    # --- the Codec interface ----------------------------------------------------------------------

    def analyze(self, x: Tensor) -> Analysis:
        self.check_input(x)
        y = self.model.g_a(x)
        y_hat, likelihoods = self._analyze_latent(y)
        return Analysis(y_hat=y_hat, likelihoods=likelihoods)

    def _analyze_latent(self, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def synthesize(self, y_hat: Tensor) -> Tensor:
        return self.model.g_s(y_hat).clamp(0, 1)

    def synthesis_modules(self) -> list[nn.Module]:
        return [self.model.g_s]

    @torch.no_grad()
    def compress(self, x: Tensor) -> LatentPayload:
        self.check_input(x)
        self._ensure_tables()
        out = self.model.compress(x)
        shape = out["shape"]["hyper"] if isinstance(out["shape"], Mapping) else out["shape"]
        strings = [list(stream) for stream in out["strings"]]
        return LatentPayload(strings=strings, shape=tuple(int(v) for v in shape))

    @torch.no_grad()
    def decompress_latent(self, payload: LatentPayload) -> Tensor:
        strings, shape = list(payload.strings), tuple(payload.shape)
        expected = self._stream_count()
        if len(strings) != expected or len(shape) != 2 or len({len(stream) for stream in strings}) != 1:
            raise NeckkitError(
                f"{self.name}: payload has {len(strings)} streams and shape {shape}, expected {expected} "
                "streams of equal batch size and a (height, width) hyper-latent shape"
            )
        self._ensure_tables()
        return self._decompress_latent(strings, shape)

    def _stream_count(self) -> int:
        return 2  # y, then z

    def _decompress_latent(self, strings: list[list[bytes]], shape: tuple[int, ...]) -> Tensor:
        raise NotImplementedError


def _resize_coder_tables(module: CompressAICodec, state_dict: Mapping[str, Tensor], prefix: str, *args: Any) -> None:
    """Let ``load_state_dict`` accept coder tables of any size (they depend on the weights)."""
    for key, value in state_dict.items():
        if not key.startswith(prefix) or key.rsplit(".", 1)[-1] not in CODER_TABLES:
            continue
        owner, _, name = key[len(prefix) :].rpartition(".")
        try:
            target = module.get_submodule(owner)
        except AttributeError:
            continue
        buffer = target._buffers.get(name)
        if isinstance(buffer, Tensor) and isinstance(value, Tensor) and buffer.shape != value.shape:
            target._buffers[name] = torch.empty(value.shape, dtype=buffer.dtype, device=buffer.device)


def _forget_tables(module: CompressAICodec, incompatible: Any) -> None:
    module._tables_stamp = None  # loaded tables are checked and rebuilt before the next coding


class ScaleHyperpriorCodec(CompressAICodec):
    """``bmshj2018-hyperprior``: ``y_hat = round(y)``, scales from ``h_s(z_hat)``, ``z = h_a(|y|)``."""

    def _analyze_latent(self, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        m = self.model
        z_hat, z_likelihoods = _quantize_hyper(m.entropy_bottleneck, m.h_a(torch.abs(y)))
        scales = m.h_s(z_hat)
        y_hat = _straight_through(_round_around(y, None), y)
        y_likelihoods = _gaussian_likelihood(m.gaussian_conditional, y, y_hat, scales, None)
        return y_hat, {"y": y_likelihoods, "z": z_likelihoods}

    def _decompress_latent(self, strings: list[list[bytes]], shape: tuple[int, ...]) -> Tensor:
        m = self.model
        z_hat = m.entropy_bottleneck.decompress(strings[1], shape)
        indexes = m.gaussian_conditional.build_indexes(m.h_s(z_hat))
        return m.gaussian_conditional.decompress(strings[0], indexes, z_hat.dtype)


class MeanScaleHyperpriorCodec(CompressAICodec):
    """``mbt2018-mean``: ``y_hat = round(y - mu) + mu``, (scales, means) from ``h_s(z_hat)``."""

    def _analyze_latent(self, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        m = self.model
        z_hat, z_likelihoods = _quantize_hyper(m.entropy_bottleneck, m.h_a(y))
        scales, means = m.h_s(z_hat).chunk(2, 1)
        y_hat = _straight_through(_round_around(y, means), y)
        y_likelihoods = _gaussian_likelihood(m.gaussian_conditional, y, y_hat, scales, means)
        return y_hat, {"y": y_likelihoods, "z": z_likelihoods}

    def _decompress_latent(self, strings: list[list[bytes]], shape: tuple[int, ...]) -> Tensor:
        m = self.model
        z_hat = m.entropy_bottleneck.decompress(strings[1], shape)
        scales, means = m.h_s(z_hat).chunk(2, 1)
        indexes = m.gaussian_conditional.build_indexes(scales)
        return m.gaussian_conditional.decompress(strings[0], indexes, means=means)


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
        z_hat, z_likelihoods = _quantize_hyper(m.entropy_bottleneck, m.h_a(y))
        params = m.h_s(z_hat)
        exact = torch.cat(
            [self._serial_code(y[i : i + 1].detach(), params[i : i + 1].detach())[0] for i in range(y.size(0))]
        )
        y_hat = _straight_through(exact, y)
        ctx_params = m.context_prediction(y_hat)
        scales, means = m.entropy_parameters(torch.cat((params, ctx_params), dim=1)).chunk(2, 1)
        y_likelihoods = _gaussian_likelihood(m.gaussian_conditional, y, y_hat, scales, means)
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
    def compress(self, x: Tensor) -> LatentPayload:
        from compressai.ans import BufferedRansEncoder

        self.check_input(x)
        self._ensure_tables()
        m = self.model
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
        z_hat, likelihoods["z"] = _quantize_hyper(hyper.entropy_bottleneck, hyper.h_a(y))
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
        y_hat = _straight_through(_round_around(y, means), y)
        likelihoods["y"] = _gaussian_likelihood(lc.gaussian_conditional, y, y_hat, scales, means)
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


def wrap_compressai_model(model: nn.Module, name: str | None = None) -> CompressAICodec:
    """The neckkit adapter for a CompressAI model (picks the family; tables are built here)."""
    if isinstance(model, JointAutoregressiveHierarchicalPriors):
        return AutoregressiveCodec(model, name)
    if isinstance(model, MeanScaleHyperprior):
        return MeanScaleHyperpriorCodec(model, name)
    if isinstance(model, ScaleHyperprior):
        return ScaleHyperpriorCodec(model, name)
    if isinstance(model, SimpleVAECompressionModel):
        return LatentCodecCodec(model, name)
    raise NeckkitError(f"no neckkit adapter for CompressAI model {type(model).__name__}")


# --------------------------------------------------------------------------------------------------
# ELIC and the paper's released layout
# --------------------------------------------------------------------------------------------------

_BRIDGING_MARKERS = (
    "cc_transforms.",
    "ParamAggregation.",
    "h_a.",
    "h_s.",
    "context_prediction.",
    "gaussian_conditional.",
)
_LEGACY_BOTTLENECK = re.compile(r"^_(matrix|bias|factor)(\d+)$")
_LEGACY_LISTS = {"matrix": "matrices", "bias": "biases", "factor": "factors"}
_STRIPPED = ("module.", "base_coder.")


def _strip(key: str) -> str:
    for substring in _STRIPPED:
        key = key.replace(substring, "")
    return key


def is_bridging_layout(state: Mapping[str, Any]) -> bool:
    """Whether ``state`` uses the paper's ``ELIC_LLM`` names (top-level ``h_a.``, ``cc_transforms.``...)."""
    return any(_strip(key).startswith(_BRIDGING_MARKERS) for key in state)


def bridging_to_chandelier(state: Mapping[str, Tensor], num_groups: int | None = None) -> dict[str, Tensor]:
    """Rename the paper's ``ELIC_LLM`` codec state dict to CompressAI ``Elic2022Chandelier`` keys.

    Rules (``reference/elic_key_mapping.md``, verified bitwise): strip ``module.``/``base_coder.``;
    ``g_a.``/``g_s.`` unchanged; ``h_a.``/``h_s.``/``entropy_bottleneck.`` go under
    ``latent_codec.hyper.`` (legacy ``_matrix{i}``/``_bias{i}``/``_factor{i}`` become
    ``matrices.{i}``/``biases.{i}``/``factors.{i}``); ``cc_transforms.{j}`` becomes
    ``latent_codec.y.channel_context.y{j+1}``; ``context_prediction.{k}`` and ``ParamAggregation.{k}``
    become ``latent_codec.y.latent_codec.y{k}.context_prediction`` / ``.entropy_parameters``; the one
    shared ``gaussian_conditional`` is copied into every group's ``...y{k}.y.gaussian_conditional``.
    ``num_groups`` defaults to the number of ``context_prediction.{k}`` groups found. Unknown keys are
    kept as they are (a strict load then names them).
    """
    stripped = {_strip(key): value for key, value in state.items()}
    if num_groups is None:
        found = {
            int(m.group(1))
            for key in stripped
            if (m := re.match(r"(?:context_prediction|ParamAggregation)\.(\d+)\.", key))
        }
        num_groups = max(found) + 1 if found else len(ElicConfig().groups)
    out: dict[str, Tensor] = {}
    for key, value in stripped.items():
        head, _, rest = key.partition(".")
        if head in ("g_a", "g_s"):
            out[key] = value
        elif head in ("h_a", "h_s"):
            out[f"latent_codec.hyper.{key}"] = value
        elif head == "entropy_bottleneck":
            legacy = _LEGACY_BOTTLENECK.match(rest)
            if legacy:
                rest = f"{_LEGACY_LISTS[legacy.group(1)]}.{legacy.group(2)}"
            out[f"latent_codec.hyper.entropy_bottleneck.{rest}"] = value
        elif head == "cc_transforms":
            index, _, tail = rest.partition(".")
            out[f"latent_codec.y.channel_context.y{int(index) + 1}.{tail}"] = value
        elif head in ("context_prediction", "ParamAggregation"):
            index, _, tail = rest.partition(".")
            target = "context_prediction" if head == "context_prediction" else "entropy_parameters"
            out[f"latent_codec.y.latent_codec.y{int(index)}.{target}.{tail}"] = value
        elif head == "gaussian_conditional":
            for k in range(num_groups):
                out[f"latent_codec.y.latent_codec.y{k}.y.gaussian_conditional.{rest}"] = value.clone()
        else:
            out[key] = value
    return out


def _elic_model(variant: str, config: ElicConfig) -> nn.Module:
    if variant not in ELIC_VARIANTS:
        raise NeckkitError(f"unknown ELIC variant {variant!r}; choose one of {', '.join(ELIC_VARIANTS)}")
    return ELIC_VARIANTS[variant](N=config.N, M=config.M, groups=list(config.groups))


def build_elic(
    weights: str | os.PathLike[str] | None = None,
    variant: str = "chandelier",
    tiny: bool = False,
    random_init: bool = False,
    seed: int = 0,
) -> LatentCodecCodec:
    """ELIC (He et al., CVPR 2022) as CompressAI's ``Elic2022Chandelier`` (default) or ``Elic2022Official``.

    ``weights``: a state-dict file in CompressAI's own key names, or the paper's released layout
    (``ELIC_LLM`` names, codec under ``"state_dict"`` next to the neck's ``"adapter"``, which is
    ignored here), renamed by :func:`bridging_to_chandelier`. ``tiny``: :data:`TINY_ELIC` widths
    (random init seeded by ``seed`` unless ``weights`` are given). ``random_init``: the paper's sizes
    (:class:`~neckkit.config.paper.ElicConfig`) with seeded random weights. CompressAI publishes no ELIC
    weights, so one of the three is required.
    """
    if weights is not None and random_init:
        raise NeckkitError("pass either weights or random_init for ELIC, not both")
    if weights is None and not (tiny or random_init):
        raise NeckkitError(
            "ELIC needs weights: CompressAI publishes none; pass weights=<file> (e.g. the paper's released "
            "checkpoint, or --codec-weights), or tiny=True / random_init=True for random weights"
        )
    config = TINY_ELIC if tiny else ElicConfig()
    with seeded_init(seed):
        model = _elic_model(variant, config)
    if weights is not None:
        source = str(weights)
        state = extract_state_dict(read_checkpoint(weights), source=source)
        if is_bridging_layout(state):
            if variant != "chandelier":
                raise NeckkitError(
                    f"{source} uses the paper's ELIC_LLM layout, which maps onto variant 'chandelier' only "
                    f"(not {variant!r})"
                )
            state = bridging_to_chandelier(state, num_groups=len(config.groups))
        load_codec_state(model, state, source)
    name = f"elic-{variant}" + ("-tiny" if tiny else "")
    return LatentCodecCodec(model, name)


# --------------------------------------------------------------------------------------------------
# CompressAI zoo models
# --------------------------------------------------------------------------------------------------


def _zoo_tables() -> tuple[dict[str, Any], dict[str, Any]]:
    from compressai.zoo.image import cfgs, model_urls

    return cfgs, model_urls


def _zoo_qualities(model: str) -> list[int]:
    cfgs, _ = _zoo_tables()
    return sorted(cfgs[model])


def zoo_checkpoint(model: str, quality: int) -> tuple[str, Path]:
    """(URL, file in the torch hub cache) of CompressAI's pretrained ``model`` at ``quality``."""
    _, model_urls = _zoo_tables()
    url = model_urls[model][ZOO_METRIC][quality]
    return url, Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _download(url: str, destination: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Fetch ``url`` into ``destination`` atomically (a partial download never stays in the cache)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=destination.parent, suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
        os.replace(partial, destination)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


def _load_zoo_state(model: str, quality: int) -> tuple[dict[str, Tensor], str]:
    url, cached = zoo_checkpoint(model, quality)
    if not cached.is_file():
        try:
            _download(url, cached)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            raise NeckkitError(
                f"CompressAI weights for {model} quality {quality} are not cached and could not be downloaded "
                f"({reason}): fetch {url} into {cached.parent}/ or pass --codec-weights FILE"
            ) from None
    return extract_state_dict(read_checkpoint(cached), source=str(cached)), str(cached)


def _zoo_sizes(model: str, state: Mapping[str, Tensor], source: str) -> tuple[int, ...]:
    """(N, M) or (N,) of a zoo architecture, read from a state dict as CompressAI's from_state_dict does."""
    keys = ("g_a.0.conv1.weight",) if model == "cheng2020-anchor" else ("g_a.0.weight", "g_a.6.weight")
    missing = [key for key in keys if key not in state]
    if missing:
        raise NeckkitError(f"{source} does not look like a {model} checkpoint: missing {', '.join(missing)}")
    return tuple(int(state[key].size(0)) for key in keys)


def build_zoo(
    model: str,
    quality: int | None = None,
    weights: str | os.PathLike[str] | None = None,
    tiny: bool = False,
    random_init: bool = False,
    seed: int = 0,
) -> CompressAICodec:
    """A CompressAI zoo model: ``bmshj2018-hyperprior``, ``mbt2018-mean`` or ``cheng2020-anchor``.

    ``quality``: CompressAI's pretrained MSE weights (from the torch hub cache, downloaded there if
    missing and reachable). ``weights``: a state-dict file instead (sizes read from it; with
    ``quality`` too, it must fit that quality's sizes). ``tiny``: tiny widths, seeded random init.
    ``random_init``: the real architecture of ``quality`` (default: the highest quality, i.e. the
    largest N/M) with seeded random weights.
    """
    if model not in ZOO_MODELS:
        raise NeckkitError(f"unknown CompressAI model {model!r}; choose one of {', '.join(ZOO_MODELS)}")
    architecture = ZOO_MODELS[model]
    qualities = _zoo_qualities(model)
    if quality is not None and quality not in qualities:
        raise NeckkitError(f"{model} has no quality {quality!r}; valid qualities: {', '.join(map(str, qualities))}")
    if weights is not None and random_init:
        raise NeckkitError("pass either weights or random_init, not both")
    cfgs, _ = _zoo_tables()
    name = model + ("-tiny" if tiny else "")

    if tiny or random_init:
        sizes = TINY_ZOO[model] if tiny else cfgs[model][quality if quality is not None else qualities[-1]]
        with seeded_init(seed):
            network = architecture(*sizes)
        if weights is not None:  # tiny + weights: a tiny model trained elsewhere
            _load_zoo_file(network, weights)
        return wrap_compressai_model(network, name)

    if weights is not None:
        state, source = _read_zoo_file(weights)
        sizes = cfgs[model][quality] if quality is not None else _zoo_sizes(model, state, source)
    elif quality is not None:
        state, source = _load_zoo_state(model, quality)
        state = _rename_zoo_keys(state)
        sizes = cfgs[model][quality]
    else:
        raise NeckkitError(
            f"{model} needs quality (CompressAI's pretrained weights, {qualities[0]}-{qualities[-1]}), "
            "weights=<file>, tiny=True or random_init=True"
        )
    network = architecture(*sizes)
    load_codec_state(network, state, source)
    return wrap_compressai_model(network, f"{model}-q{quality}" if quality is not None else name)


def _rename_zoo_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    from compressai.zoo.pretrained import load_pretrained

    return load_pretrained(dict(state))  # older zoo names: 'downsample' -> 'skip', EB lists -> legacy


def _read_zoo_file(weights: str | os.PathLike[str]) -> tuple[dict[str, Tensor], str]:
    source = str(weights)
    return _rename_zoo_keys(extract_state_dict(read_checkpoint(weights), source=source)), source


def _load_zoo_file(network: nn.Module, weights: str | os.PathLike[str]) -> None:
    state, source = _read_zoo_file(weights)
    load_codec_state(network, state, source)
