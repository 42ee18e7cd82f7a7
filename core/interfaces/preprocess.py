"""Image preprocessing shared by encoders: resize, crop and normalise batches in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

# OpenAI CLIP's normalisation, shared by CLIP, BLIP-2 and many open_clip models.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
BICUBIC = TF.InterpolationMode.BICUBIC


def _check_images(x01: Tensor) -> None:
    if x01.ndim != 4 or x01.shape[1] != 3:
        raise ValueError(f"expected images [B, 3, H, W], got shape {tuple(x01.shape)}")


def normalize(x01: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(x - mean) / std`` per channel, after clamping to [0, 1] (bicubic resizing overshoots)."""
    mean_t = torch.tensor(mean, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
    return (x01.clamp(0, 1) - mean_t) / std_t


def resize_center_crop(x01: Tensor, resize: int, crop: int, interpolation: TF.InterpolationMode = BICUBIC) -> Tensor:
    """Short side to ``resize`` (antialiased), then the centre ``crop x crop``, kept in [0, 1].

    The paper's training crops: ``Resize(256)`` then ``CenterCrop(256)``.
    """
    _check_images(x01)
    if min(x01.shape[-2:]) != resize:
        x01 = TF.resize(x01, [resize], interpolation=interpolation, antialias=True)
    return TF.center_crop(x01, [crop, crop]).clamp(0, 1)


def resize_center_crop_normalize(
    x01: Tensor,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: TF.InterpolationMode = BICUBIC,
) -> Tensor:
    """CLIP-style: short side to ``size`` (antialiased), centre crop, normalise.

    [B, 3, H, W] in [0, 1] -> [B, 3, size, size].
    """
    return normalize(resize_center_crop(x01, size, size, interpolation), mean, std)


def resize_square_normalize(
    x01: Tensor,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: TF.InterpolationMode = BICUBIC,
) -> Tensor:
    """BLIP-style: the whole image to ``size x size`` (aspect ratio not kept, no crop), normalise."""
    _check_images(x01)
    if tuple(x01.shape[-2:]) != (size, size):
        x01 = TF.resize(x01, [size, size], interpolation=interpolation, antialias=True)
    return normalize(x01, mean, std)
