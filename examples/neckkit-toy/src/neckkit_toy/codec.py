"""A toy codec: two strided convolutions and CompressAI's factorized entropy model.

:func:`build_codec` is the ``toy-codec`` factory: tiny or real-size random weights, or a state-dict
file read with :func:`neckkit.plugin_api.load_codec_state` (``weights_only``, keys cleaned, one-line
mismatch errors, the file's entropy-coder tables used as stored). neckkit seeds every build
(``seeded_init(seed)``), so random weights are reproducible.

Entropy-coder tables: ``compress`` builds missing ones (``update()``, never forced, so stored tables are
used as they are); after d2/d3 training neckkit rebuilds them with ``Codec.update_entropy_tables()``,
whose default covers every CompressAI entropy model in the codec, so the toy needs no code for it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.ops import quantize_ste
from torch import Tensor, nn

from neckkit.plugin_api import Analysis, Codec, LatentPayload, NeckkitError, load_codec_state, read_state_dict


class ToyCodec(Codec):
    """Analysis ``g_a`` (stride 4), synthesis ``g_s``, one entropy bottleneck on ``y``."""

    stride = 4
    pad_multiple = 4

    def __init__(self, channels: int = 8, tiny: bool = False) -> None:
        super().__init__()
        hidden = 8 if tiny else 32
        self.latent_channels = channels
        self.g_a = nn.Sequential(
            nn.Conv2d(3, hidden, 5, stride=2, padding=2),
            nn.GELU(),
            nn.Conv2d(hidden, channels, 5, stride=2, padding=2),
        )
        self.g_s = nn.Sequential(
            nn.ConvTranspose2d(channels, hidden, 5, stride=2, padding=2, output_padding=1),
            nn.GELU(),
            nn.ConvTranspose2d(hidden, 3, 5, stride=2, padding=2, output_padding=1),
        )
        self.entropy_bottleneck = EntropyBottleneck(channels)

    def analyze(self, x: Tensor) -> Analysis:
        y = self.g_a(x)  # [B, C, H/4, W/4]
        _, y_likelihoods = self.entropy_bottleneck(y)
        medians = self.entropy_bottleneck._get_medians()  # [1, C, 1, 1]
        y_hat = quantize_ste(y - medians) + medians  # the same rounding as compress()
        return Analysis(y_hat=y_hat, likelihoods={"y": y_likelihoods}, latents={"y": y})  # y: for compress()

    def synthesize(self, y_hat: Tensor) -> Tensor:
        return self.g_s(y_hat).clamp(0, 1)  # [B, 3, H, W]

    def synthesis_modules(self) -> list[nn.Module]:
        return [self.g_s]  # scenario d3 freezes the decoder side and trains g_a for machines only

    @torch.no_grad()
    def compress(self, x: Tensor, analysis: Analysis | None = None) -> LatentPayload:
        self.entropy_bottleneck.update()  # builds missing tables only; a no-op when stored or rebuilt ones exist
        y = analysis.latent_for("y", x) if analysis is not None else None  # analyze(x)'s y: g_a runs once
        if y is None:
            y = self.g_a(x)
        return LatentPayload(strings=[self.entropy_bottleneck.compress(y)], shape=tuple(y.shape[-2:]))

    def payload_shape(self, height: int, width: int) -> tuple[int, ...]:
        """The (h, w) of ``y`` for a padded image: decoders check an untrusted header against it."""
        return (height // self.stride, width // self.stride)

    @torch.no_grad()
    def decompress_latent(self, payload: LatentPayload) -> Tensor:
        self.entropy_bottleneck.update()
        return self.entropy_bottleneck.decompress(payload.strings[0], payload.shape)


def build_codec(
    channels: int = 8, tiny: bool = False, random_init: bool = False, weights: str | Path | None = None
) -> ToyCodec:
    """The ``toy-codec`` factory. The toy has no published weights, so one of the three is required.

    ``tiny``: the small transforms (with ``weights``, a tiny model trained elsewhere); ``random_init``:
    the real-size transforms, random weights; ``weights``: a state-dict file of this codec, e.g. the
    ``codec.pt`` of a d2 or d3 training run.
    """
    if not (tiny or random_init or weights is not None):
        raise NeckkitError("toy-codec has no published weights: pass weights=<file>, tiny=True or random_init=True")
    codec = ToyCodec(channels=channels, tiny=tiny)
    if weights is not None:  # coder tables: the file's as stored, else rebuilt from its weights
        load_codec_state(codec, read_state_dict(weights), str(weights))
    return codec
