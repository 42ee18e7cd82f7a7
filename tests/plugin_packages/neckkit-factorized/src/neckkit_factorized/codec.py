"""CompressAI's ``FactorizedPrior`` (bmshj2018-factorized) behind neckkit's codec interface.

``y_hat = round(y - median) + median`` exactly as the entropy bottleneck codes it, with a
straight-through gradient, so the neck reads the same latent that ``decompress_latent`` decodes.
Entropy-coder tables: a weights file's are used as they are (``load_codec_state``); missing ones are
built on first use (``update()``, never forced); after d2/d3 training neckkit rebuilds them with
``Codec.update_entropy_tables()``, whose default covers the model's ``EntropyBottleneck``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from compressai.models import FactorizedPrior
from compressai.ops import quantize_ste
from torch import Tensor, nn

from neckkit.plugin_api import (
    Analysis,
    Codec,
    LatentPayload,
    NeckkitError,
    load_codec_state,
    random_weights,
    read_state_dict,
)

REAL_SIZES = (128, 192)  # N, M of CompressAI's quality 1-5 models
TINY_SIZES = (16, 32)


class FactorizedCodec(Codec):
    """A ``FactorizedPrior`` kept as ``.model``; images must be multiples of 16 pixels."""

    stride = 16
    pad_multiple = 16

    def __init__(self, model: FactorizedPrior) -> None:
        super().__init__()
        self.model = model
        self.latent_channels = int(model.M)

    def analyze(self, x: Tensor) -> Analysis:
        self.check_input(x)
        y = self.model.g_a(x)  # [B, M, H/16, W/16]
        bottleneck = self.model.entropy_bottleneck
        _, likelihoods = bottleneck(y)
        medians = bottleneck._get_medians().detach()  # [1, M, 1, 1]
        y_hat = quantize_ste(y - medians) + medians
        return Analysis(y_hat=y_hat, likelihoods={"y": likelihoods}, latents={"y": y})  # y: for compress()

    def synthesize(self, y_hat: Tensor) -> Tensor:
        return self.model.g_s(y_hat).clamp(0, 1)  # [B, 3, H, W]

    def synthesis_modules(self) -> list[nn.Module]:
        return [self.model.g_s]

    @torch.no_grad()
    def compress(self, x: Tensor, analysis: Analysis | None = None) -> LatentPayload:
        self.check_input(x)
        self.model.update()  # builds missing tables only: stored or rebuilt ones are used as they are
        y = analysis.latent_for("y", x) if analysis is not None else None  # analyze(x)'s y: g_a runs once
        if y is None:
            y = self.model.g_a(x)
        strings = self.model.entropy_bottleneck.compress(y)
        return LatentPayload(strings=[list(strings)], shape=tuple(int(side) for side in y.shape[-2:]))

    @torch.no_grad()
    def decompress_latent(self, payload: LatentPayload) -> Tensor:
        if len(payload.strings) != 1 or len(payload.shape) != 2:
            raise NeckkitError("a bmshj2018-factorized payload holds one stream and the (h, w) of y")
        self.model.update()
        return self.model.entropy_bottleneck.decompress(payload.strings[0], payload.shape)


def build_factorized(
    weights: str | Path | None = None, tiny: bool = False, random_init: bool = False
) -> FactorizedCodec:
    """The ``bmshj2018-factorized`` factory: tiny or real-size random weights, or a state-dict file."""
    if random_weights(weights, tiny, random_init):
        return FactorizedCodec(FactorizedPrior(*(TINY_SIZES if tiny else REAL_SIZES)))
    if weights is None:
        raise NeckkitError("bmshj2018-factorized needs weights=<file>, tiny=True or random_init=True")
    state = read_state_dict(weights)
    if "g_a.0.weight" not in state or "g_a.6.weight" not in state:
        raise NeckkitError(f"{weights} does not look like a FactorizedPrior state dict (no g_a.0 / g_a.6 weights)")
    model = FactorizedPrior(int(state["g_a.0.weight"].size(0)), int(state["g_a.6.weight"].size(0)))
    load_codec_state(model, state, str(weights))
    return FactorizedCodec(model)
