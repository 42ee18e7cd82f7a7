"""TIC (Lu et al., DCC 2022) in TransTIC's hyperprior variant ``TIC_hp``, as a neckkit codec.

Written from the layout facts in the project's reference (module tree, key names, shapes,
hyperparameters); no TransTIC code is used. The model loads the four published TransTIC base
codecs (``base_codec_{1..4}.pth.tar``): every parameter has the name and shape of the released
state dict, and the buffers the files also hold are either CompressAI's entropy-coder tables
(rebuilt with ``update()``) or the Swin blocks' ``attn_mask`` / ``relative_position_index``,
which are derived from the sizes and never read from files.

Architecture (stride 16; N=128, M=192 by default, from :class:`neckkit.config.TicConfig`)::

    g_a: conv5x5/2  RSTB  conv3x3/2  RSTB  conv3x3/2  RSTB  conv3x3/2 (-> M)  RSTB         -> y
    h_a: conv3x3/2 (-> N)  RSTB  conv3x3/2  RSTB                                             -> z
    h_s: RSTB  deconv3x3/2  RSTB  deconv3x3/2 (-> 2M: scales first, then means)
    g_s: RSTB  deconv3x3/2  RSTB  deconv3x3/2  RSTB  deconv3x3/2  RSTB  deconv5x5/2 (-> 3)

An RSTB is a stack of Swin blocks plus a residual around the stack (no convolution, no final
norm). The Swin blocks are timm's ``SwinTransformerBlock`` (pre-norm; odd blocks shift by
window // 2 with -100 masks between the shifted regions; relative-position bias; qkv bias; GELU
MLP), whose parameter names are those of the released files. Like the original, each block
fixes its window at *construction* for a 256x256 input: a stage whose map would then be no larger
than its window uses the whole map as window and does not shift (h_a3 and h_s0: window 4, never
shifted); that choice is kept for any input size, so the weights see the computation they were
trained with. Masks are recomputed for the actual input size (timm's ``dynamic_mask``).

Input sizes: every stage's map must be divisible by its window, so height and width must be
multiples of :attr:`TICModel.pad_multiple` (256 for the real model: h_a3 runs at 1/64 with
window 4), exactly the original's constraint; callers pad with
:func:`neckkit.bitstream.padding.pad_to_multiple`. timm's blocks could pad inside each window instead, but
they leave the padded tokens unmasked in unshifted windows and shift before padding, which the
published weights never saw; padding the image keeps the original's computation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.models import CompressionModel
from compressai.ops import quantize_ste
from timm.layers import trunc_normal_
from timm.models.swin_transformer import SwinTransformerBlock
from torch import Tensor, nn

from neckkit.config import TicConfig
from neckkit.loading.codec_weights import REBUILT, mark_entropy_tables, stored_tables_current
from neckkit.plugin_api import (
    CODER_TABLES,
    Analysis,
    Codec,
    LatentPayload,
    NeckkitError,
    load_codec_state,
    read_state_dict,
)
from neckkit.plugins.codecs.cached_tables import cache_decoding_tables

__all__ = [
    "CONSTRUCTION_RESOLUTION",
    "QUALITIES",
    "RECOMPUTED_BUFFERS",
    "RSTB",
    "TINY_CONFIG",
    "TINY_RESOLUTION",
    "TICModel",
    "TicCodec",
    "build_tic",
]

# TransTIC builds TIC_hp for 256x256 inputs (its ``input_resolution`` default); the windows and
# shifts it chose at that size are part of what the published weights were trained with.
CONSTRUCTION_RESOLUTION = 256
# Buffers of the published files that this implementation derives itself.
RECOMPUTED_BUFFERS = ("attn_mask", "relative_position_index")
# Qualities of TransTIC's released base codecs (release v1.0 of NYCU-MAPL/TransTIC).
QUALITIES = (1, 2, 3, 4)
TRANSTIC_RELEASE = "https://github.com/NYCU-MAPL/TransTIC/releases/tag/v1.0"

# Same classes, tiny widths and windows: fast tests and quick starts. Two blocks per stage so
# every stage but the smallest hyper one still has a shifted block, as in the real model.
TINY_CONFIG = TicConfig(
    N=16, M=24, depths=(2, 2, 2, 2, 2, 2), num_heads=(2, 2, 2, 2, 2, 2), window_size=4, hyper_window_size=2
)
TINY_RESOLUTION = 128  # keeps the real model's rule: the last hyper stage (2x2) is one unshifted window


def conv(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.Conv2d:
    """Strided convolution that divides the size exactly by ``stride`` (padding k // 2)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)


def deconv(in_channels: int, out_channels: int, kernel_size: int, stride: int) -> nn.ConvTranspose2d:
    """Transposed convolution that multiplies the size exactly by ``stride``."""
    return nn.ConvTranspose2d(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=kernel_size // 2,
        output_padding=stride - 1,
    )


class SwinStage(nn.Module):
    """The blocks of one RSTB (TransTIC calls it ``residual_group``); tokens are [B, H, W, C]."""

    def __init__(self, blocks: Sequence[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x


class RSTB(nn.Module):
    """Residual Swin-transformer block: ``x + blocks(x)`` on a [B, C, H, W] map.

    ``resolution`` is the map size at construction (TransTIC: 256 / stride); it fixes each
    block's window and shift once, as in the original, and the block then runs at any size whose
    sides are multiples of :attr:`window_size`.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        resolution: int,
        mlp_ratio: float,
        drop_path: Sequence[float] = (),
    ) -> None:
        super().__init__()
        drop_path = tuple(drop_path) or (0.0,) * depth
        blocks = [
            SwinTransformerBlock(
                dim=dim,
                input_resolution=(resolution, resolution),
                num_heads=num_heads,
                window_size=window_size,
                shift_size=0 if index % 2 == 0 else window_size // 2,
                dynamic_mask=True,  # masks for the actual size, never stored
                mlp_ratio=mlp_ratio,
                qkv_bias=True,
                drop_path=drop_path[index],
                act_layer=nn.GELU,
                norm_layer=nn.LayerNorm,
            )
            for index in range(depth)
        ]
        for block in blocks:
            # timm's explicit attention path: SDPA picks its CPU kernel by grad mode, so a fused
            # analysis with gradients would differ in the last bit from the no-grad coding path,
            # and y_hat must equal the decoded latent exactly.
            block.attn.fused_attn = False
        self.residual_group = SwinStage(blocks)
        # timm's construction rule: a window no larger than the map, no shift if the map fits one window.
        self.window_size = int(blocks[0].window_size[0])
        self.shifted = tuple(bool(any(block.shift_size)) for block in blocks)

    def forward(self, x: Tensor) -> Tensor:
        tokens = x.permute(0, 2, 3, 1)  # [B, H, W, C]: row-major tokens, TransTIC's patch_embed
        # Contiguous output: a channels-last view would make the next convolution pick another
        # kernel than it does on the entropy decoder's (contiguous) tensors, off in the last bit.
        return (self.residual_group(tokens).permute(0, 3, 1, 2) + x).contiguous()


@dataclass(frozen=True)
class _Stage:
    name: str
    dim: int
    depth: int
    heads: int
    window: int
    stride: int  # pixels per cell of the map the stage runs on


def _stages(config: TicConfig) -> tuple[list[_Stage], list[_Stage]]:
    """The RSTBs of the analysis side (g_a, h_a) and the synthesis side (h_s, g_s)."""
    N, M = config.N, config.M
    depths, heads = config.depths, config.num_heads
    window, hyper = config.window_size, config.hyper_window_size
    analysis = [
        _Stage("g_a1", N, depths[0], heads[0], window, 2),
        _Stage("g_a3", N, depths[1], heads[1], window, 4),
        _Stage("g_a5", N, depths[2], heads[2], window, 8),
        _Stage("g_a7", M, depths[3], heads[3], window, 16),
        _Stage("h_a1", N, depths[4], heads[4], hyper, 32),
        _Stage("h_a3", N, depths[5], heads[5], hyper, 64),
    ]
    rdepths, rheads = depths[::-1], heads[::-1]  # the synthesis side mirrors the analysis
    synthesis = [
        _Stage("h_s0", N, rdepths[0], rheads[0], hyper, 64),
        _Stage("h_s2", N, rdepths[1], rheads[1], hyper, 32),
        _Stage("g_s0", M, rdepths[2], rheads[2], window, 16),
        _Stage("g_s2", N, rdepths[3], rheads[3], window, 8),
        _Stage("g_s4", N, rdepths[4], rheads[4], window, 4),
        _Stage("g_s6", N, rdepths[5], rheads[5], window, 2),
    ]
    return analysis, synthesis


def _init_weights(module: nn.Module) -> None:
    """Swin's usual init: truncated-normal linear layers, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class TICModel(CompressionModel):
    """TransTIC's ``TIC_hp``: Swin-transformer transforms and a mean-scale hyperprior.

    Args:
        config: widths, depths, heads, windows and MLP ratio (default: the paper's, N=128, M=192).
        resolution: input size the windows and shifts are fixed for (TransTIC: 256).
        drop_path_rate: stochastic depth for training, rising linearly over the analysis-side
            blocks (the original trained with 0.1; 0 keeps train-mode outputs deterministic).
    """

    stride = 16

    def __init__(
        self,
        config: TicConfig | None = None,
        resolution: int = CONSTRUCTION_RESOLUTION,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        config = config or TicConfig()
        if len(config.depths) != 6 or len(config.num_heads) != 6:
            raise NeckkitError(
                f"TIC needs 6 stage depths and heads (g_a 4, h_a 2), got {config.depths} and {config.num_heads}"
            )
        self.config = config
        self.N, self.M = N, M = config.N, config.M
        self.resolution = resolution
        analysis, synthesis = _stages(config)
        rates = torch.linspace(0, drop_path_rate, sum(config.depths)).tolist()

        def rstb(stage: _Stage, offset: int) -> RSTB:
            return RSTB(
                stage.dim,
                stage.depth,
                stage.heads,
                stage.window,
                max(resolution // stage.stride, 1),
                config.mlp_ratio,
                drop_path=rates[offset : offset + stage.depth],
            )

        offsets = [sum(stage.depth for stage in analysis[:k]) for k in range(6)]
        back = [sum(stage.depth for stage in synthesis[:k]) for k in range(6)]
        a, s = (
            [rstb(stage, offsets[k]) for k, stage in enumerate(analysis)],
            [rstb(stage, back[k]) for k, stage in enumerate(synthesis)],
        )
        # Attribute order = the published state_dict order.
        self.g_a0, self.g_a1, self.g_a2, self.g_a3 = conv(3, N, 5, 2), a[0], conv(N, N, 3, 2), a[1]
        self.g_a4, self.g_a5, self.g_a6, self.g_a7 = conv(N, N, 3, 2), a[2], conv(N, M, 3, 2), a[3]
        self.h_a0, self.h_a1, self.h_a2, self.h_a3 = conv(M, N, 3, 2), a[4], conv(N, N, 3, 2), a[5]
        self.h_s0, self.h_s1, self.h_s2, self.h_s3 = s[0], deconv(N, N, 3, 2), s[1], deconv(N, 2 * M, 3, 2)
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)
        self.g_s0, self.g_s1, self.g_s2, self.g_s3 = s[2], deconv(M, N, 3, 2), s[3], deconv(N, N, 3, 2)
        self.g_s4, self.g_s5, self.g_s6, self.g_s7 = s[4], deconv(N, N, 3, 2), s[5], deconv(N, 3, 5, 2)
        self.apply(_init_weights)
        # Each stage's map (H / stride) must be a multiple of its window.
        self.pad_multiple = math.lcm(
            *(stage.stride * getattr(self, stage.name).window_size for stage in analysis + synthesis)
        )

    # -- transforms ---------------------------------------------------------------------------
    def g_a(self, x: Tensor) -> Tensor:
        for index in range(8):
            x = getattr(self, f"g_a{index}")(x)
        return x

    def h_a(self, y: Tensor) -> Tensor:
        for index in range(4):
            y = getattr(self, f"h_a{index}")(y)
        return y

    def h_s(self, z_hat: Tensor) -> Tensor:
        for index in range(4):
            z_hat = getattr(self, f"h_s{index}")(z_hat)
        return z_hat

    def g_s(self, y_hat: Tensor) -> Tensor:
        for index in range(8):
            y_hat = getattr(self, f"g_s{index}")(y_hat)
        return y_hat

    def gaussian_params(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """(scales, means) of y from the decoded hyper-latent: TIC splits scales first."""
        scales, means = self.h_s(z_hat).chunk(2, 1)
        return scales, means

    # -- CompressAI-style API -------------------------------------------------------------------
    def forward(self, x: Tensor) -> dict[str, Any]:
        """TransTIC's forward: noisy (training) or rounded (eval) latents and their likelihoods."""
        y = self.g_a(x)
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z)
        scales, means = self.gaussian_params(z_hat)
        y_hat, y_likelihoods = self.gaussian_conditional(y, scales, means)
        return {"x_hat": self.g_s(y_hat), "y_hat": y_hat, "likelihoods": {"y": y_likelihoods, "z": z_likelihoods}}

    @torch.no_grad()
    def compress(self, x: Tensor, y: Tensor | None = None, z: Tensor | None = None) -> dict[str, Any]:
        """Byte strings of y (coded with the means) and z; tables must be up to date.

        ``y`` and ``z``: this ``x``'s ``g_a(x)`` and ``h_a(y)`` when already computed.
        """
        y = self.g_a(x) if y is None else y
        z = self.h_a(y) if z is None else z
        z_strings = self.entropy_bottleneck.compress(z)
        # Rebuild z_hat exactly as the decoder does, so y is coded with the decoder's means.
        z_hat = self.entropy_bottleneck.decompress(z_strings, z.size()[-2:])
        scales, means = self.gaussian_params(z_hat)
        indexes = self.gaussian_conditional.build_indexes(scales)
        y_strings = self.gaussian_conditional.compress(y, indexes, means=means)
        return {"strings": [y_strings, z_strings], "shape": z.size()[-2:]}

    @torch.no_grad()
    def decompress_latent(self, strings: Sequence[Sequence[bytes]], shape: Sequence[int]) -> Tensor:
        """y_hat from :meth:`compress`'s strings, without the synthesis transform."""
        y_strings, z_strings = strings
        z_hat = self.entropy_bottleneck.decompress(list(z_strings), tuple(shape))
        scales, means = self.gaussian_params(z_hat)
        indexes = self.gaussian_conditional.build_indexes(scales)
        return self.gaussian_conditional.decompress(list(y_strings), indexes, dtype=z_hat.dtype, means=means)

    @torch.no_grad()
    def decompress(self, strings: Sequence[Sequence[bytes]], shape: Sequence[int]) -> dict[str, Tensor]:
        return {"x_hat": self.g_s(self.decompress_latent(strings, shape)).clamp(0, 1)}

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> Any:
        """Also accepts the published files as they are: their masks and position indices are
        dropped (derived here), missing entropy-coder tables are rebuilt, legacy
        EntropyBottleneck names are renamed (CompressAI)."""
        state = {key: value for key, value in state_dict.items() if not key.endswith(RECOMPUTED_BUFFERS)}
        for key, value in self.state_dict().items():
            if key.rsplit(".", 1)[-1] in CODER_TABLES and key not in state:
                state[key] = value
        result = super().load_state_dict(state, strict=strict)
        self.update(force=True)
        return result


class TicCodec(Codec):
    """:class:`TICModel` behind neckkit's codec interface.

    ``y_hat`` is the dequantised latent ``round(y - means) + means`` (straight-through, so it is
    differentiable), with the means predicted from the rounded hyper-latent exactly as the decoder
    gets them: :meth:`analyze` and ``decompress_latent(compress(x))`` give the same tensor.
    Entropy-coder tables are rebuilt on load and lazily before coding (after any training).
    """

    stride = TICModel.stride

    def __init__(self, model: TICModel, quality: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.latent_channels = model.M
        self.pad_multiple = model.pad_multiple
        self.quality = quality
        self._tables_stale = True
        cache_decoding_tables(model)  # decode without converting the CDF table on every call

    # -- entropy-coder tables -----------------------------------------------------------------
    def update_entropy_tables(self) -> None:
        """Rebuild the CDF tables from the current weights (CompressAI's ``update(force=True)``).

        The same name as the CompressAI adapters' method, so the trainer rebuilds any codec one way.
        """
        self.model.update(force=True)
        mark_entropy_tables(self.model, REBUILT)
        self._tables_stale = False

    update_tables = update_entropy_tables  # the earlier name

    def _ensure_tables(self) -> None:
        empty = (
            self.model.entropy_bottleneck._offset.numel() == 0 or self.model.gaussian_conditional._offset.numel() == 0
        )
        if not empty and stored_tables_current(self.model):  # a file's own tables, for these very weights
            self._tables_stale = False
        elif self._tables_stale or empty:
            self.update_entropy_tables()

    def train(self, mode: bool = True) -> TicCodec:
        if mode:  # weights may change: rebuild the tables before the next coding
            self._tables_stale = True
        return super().train(mode)

    def load_state_dict(self, state_dict: Any, strict: bool = True) -> Any:
        """A codec state dict (``model.``-prefixed keys), loaded through :meth:`TICModel.load_state_dict`."""
        prefix = "model."
        inner = {key[len(prefix) :]: value for key, value in state_dict.items() if key.startswith(prefix)}
        if strict and len(inner) != len(state_dict):
            strays = sorted(key for key in state_dict if not key.startswith(prefix))
            raise NeckkitError(f"TicCodec state dict has keys outside model.: {', '.join(strays[:3])}")
        result = self.model.load_state_dict(inner, strict=strict)
        self._tables_stale = True
        return result

    # -- the Codec interface ------------------------------------------------------------------
    def analyze(self, x: Tensor) -> Analysis:
        self.check_input(x)
        model = self.model
        y = model.g_a(x)  # [B, M, H/16, W/16]
        z = model.h_a(y)  # [B, N, H/64, W/64]
        _, z_likelihoods = model.entropy_bottleneck(z)
        medians = model.entropy_bottleneck._get_medians().detach().reshape(1, -1, 1, 1)
        z_hat = quantize_ste(z - medians) + medians  # the values entropy_bottleneck.decompress gives
        scales, means = model.gaussian_params(z_hat)
        _, y_likelihoods = model.gaussian_conditional(y, scales, means)
        y_hat = quantize_ste(y - means) + means  # round(y - means) + means, as decompress_latent
        return Analysis(y_hat=y_hat, likelihoods={"y": y_likelihoods, "z": z_likelihoods}, latents={"y": y, "z": z})

    def synthesize(self, y_hat: Tensor) -> Tensor:
        return self.model.g_s(y_hat).clamp(0, 1)

    def synthesis_modules(self) -> list[nn.Module]:
        return [getattr(self.model, f"g_s{index}") for index in range(8)]

    @torch.no_grad()
    def compress(self, x: Tensor, analysis: Analysis | None = None) -> LatentPayload:
        """TIC's bitstream; with ``analysis`` (of this ``x``), its ``y`` and ``z`` are coded as they are."""
        self.check_input(x)
        self._ensure_tables()
        y, z = (analysis.latent_for("y", x), analysis.latent_for("z", x)) if analysis is not None else (None, None)
        out = self.model.compress(x, y, z)
        return LatentPayload(strings=[list(stream) for stream in out["strings"]], shape=tuple(out["shape"]))

    def payload_shape(self, height: int, width: int) -> tuple[int, ...]:
        """The hyper-latent's (h, w): the padded image divided by 64 (four times the latent's stride)."""
        return (height // (4 * self.stride), width // (4 * self.stride))

    @torch.no_grad()
    def decompress_latent(self, payload: LatentPayload) -> Tensor:
        if len(payload.strings) != 2 or len(payload.shape) != 2:
            raise NeckkitError("a TIC payload holds two streams (y, z) and the (h, w) of z")
        self._ensure_tables()
        return self.model.decompress_latent(payload.strings, payload.shape)


def build_tic(
    weights: str | Path | None = None,
    quality: int | None = None,
    tiny: bool = False,
    random_init: bool = False,
) -> TicCodec:
    """The ``tic`` codec: TransTIC's TIC_hp (N=128, M=192) behind neckkit's codec interface.

    Args:
        weights: a TIC_hp state-dict file (TransTIC's ``base_codec_<q>.pth.tar`` or any
            CompressAI-style file: ``{"state_dict": ...}`` wrapped, ``module.``-prefixed, legacy
            EntropyBottleneck names, with or without entropy-coder tables); read safely.
        quality: 1-4, which TransTIC base codec ``weights`` is (recorded; no weights download).
        tiny: tiny widths and windows, random weights (tests, quick starts).
        random_init: the real-size architecture with random weights.
    """
    if quality is not None and quality not in QUALITIES:
        raise NeckkitError(f"TIC quality must be one of {', '.join(map(str, QUALITIES))}, got {quality}")
    if weights is not None and (tiny or random_init):
        raise NeckkitError("TIC: weights=<file> excludes tiny=True and random_init=True")
    if weights is None:
        if quality is not None and not (tiny or random_init):
            raise NeckkitError(
                f"TIC has no downloadable weights here: download base_codec_{quality}.pth.tar from release v1.0 of "
                f"NYCU-MAPL/TransTIC ({TRANSTIC_RELEASE}) and pass it as weights=<file>"
            )
        if not (tiny or random_init):
            raise NeckkitError(
                "TIC needs weights: pass a TransTIC base_codec_<q>.pth.tar file (release v1.0 of NYCU-MAPL/TransTIC) "
                "as weights=<file>, or tiny=True (tiny random model) or random_init=True (real size, random weights)"
            )
    # Random init draws from the RNG that neckkit seeds around every build (seeded_init(seed)).
    model = TICModel(TINY_CONFIG, resolution=TINY_RESOLUTION) if tiny else TICModel()
    if weights is not None:
        source = str(weights)
        state = read_state_dict(weights, source=source)
        load_codec_state(model, state, source, recomputed=RECOMPUTED_BUFFERS)
    codec = TicCodec(model, quality=quality)
    if not stored_tables_current(model):  # keep a weight file's own tables
        codec.update_entropy_tables()
    return codec.eval()
