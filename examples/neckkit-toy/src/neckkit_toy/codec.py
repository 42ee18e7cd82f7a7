"""A toy codec: two strided convolutions and CompressAI's factorized entropy model."""

from __future__ import annotations

import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.ops import quantize_ste
from torch import Tensor, nn

from neckkit import Analysis, Codec, LatentPayload


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
        return Analysis(y_hat=y_hat, likelihoods={"y": y_likelihoods})

    def synthesize(self, y_hat: Tensor) -> Tensor:
        return self.g_s(y_hat).clamp(0, 1)  # [B, 3, H, W]

    @torch.no_grad()
    def compress(self, x: Tensor) -> LatentPayload:
        self.entropy_bottleneck.update()  # builds the coder's tables once; a no-op afterwards
        y = self.g_a(x)
        return LatentPayload(strings=[self.entropy_bottleneck.compress(y)], shape=tuple(y.shape[-2:]))

    @torch.no_grad()
    def decompress_latent(self, payload: LatentPayload) -> Tensor:
        self.entropy_bottleneck.update()
        return self.entropy_bottleneck.decompress(payload.strings[0], payload.shape)
