"""The rate-distortion objective of ``neckkit train-codec``: one level per step, CompressAI's loss at it.

``R + lambda_s * scale * MSE(x, x_hat)`` with ``R`` the estimated bits per pixel from the likelihoods
(uniform noise in ``train()`` mode), ``scale`` CompressAI's 255^2, everything computed inside
``at_level(codec, s)``; the level ``s`` of each step is drawn by :class:`LevelSampler` from ``(seed, step)``
alone. The entropy bottlenecks' quantiles have their own objective, :func:`codec_aux_loss`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from neckkit.interfaces.codec import VariableRateCodec, at_level, estimated_bits
from neckkit.training.codec_data import crop_generator
from neckkit.training.scenarios import aux_loss

__all__ = ["LevelSampler", "RateDistortion", "codec_aux_loss", "mean_level_loss"]

LEVEL_STREAM = 1  # crop_generator stream of the level draw (crops use stream 0)


class LevelSampler:
    """The rate level each step trains: uniform over ``0 .. num_levels - 1``, a pure function of ``(seed, step)``."""

    def __init__(self, num_levels: int, seed: int) -> None:
        self.num_levels, self.seed = num_levels, seed

    def level(self, step: int) -> int:
        return int(crop_generator(self.seed, step, LEVEL_STREAM).integers(self.num_levels))

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "uniform", "num_levels": self.num_levels, "seed": self.seed}


def codec_aux_loss(codec: nn.Module) -> Tensor:
    """CompressAI's auxiliary loss of every entropy bottleneck (its variable-rate ``EntropyBottleneckVbr`` too)."""
    from compressai.entropy_models import EntropyBottleneckVbr

    total = aux_loss(codec)  # EntropyBottleneck
    for module in codec.modules():
        if isinstance(module, EntropyBottleneckVbr):
            total = total + module.loss()
    return total


class RateDistortion(nn.Module):
    """``codec`` at one level on a batch -> (loss, bpp, mse); a module so torchrun can wrap it in DDP."""

    def __init__(self, codec: VariableRateCodec, distortion_scale: float) -> None:
        super().__init__()
        self.codec, self.distortion_scale = codec, distortion_scale

    def forward(self, x: Tensor, level: int, rate_lambda: float) -> tuple[Tensor, Tensor, Tensor]:
        with at_level(self.codec, level):
            analysis = self.codec.analyze(x)
            x_hat = self.codec.synthesize(analysis.y_hat)  # [B, 3, H, W]
        bpp = estimated_bits(analysis.likelihoods).to(x.device) / (x.shape[0] * x.shape[-2] * x.shape[-1])
        mse = torch.mean((x_hat - x) ** 2)
        return bpp + rate_lambda * self.distortion_scale * mse, bpp, mse


@torch.no_grad()
def mean_level_loss(codec: VariableRateCodec, x: Tensor, lambdas: tuple[float, ...], distortion_scale: float) -> float:
    """The RD loss of batch ``x`` averaged over all levels, in ``eval()`` mode (no noise): a fixed yardstick."""
    was_training = codec.training
    codec.eval()
    try:
        model = RateDistortion(codec, distortion_scale)
        return sum(float(model(x, level, lmbda)[0]) for level, lmbda in enumerate(lambdas)) / len(lambdas)
    finally:
        codec.train(was_training)
