"""Image preprocessing shared by encoders: resize, crop and normalise batches in [0, 1].

Two pipelines (``DataConfig.preprocess``, ``--preprocess``):

- ``neckkit`` (default): crops are resized on tensors (antialiased bicubic), and every resize is
  clamped back to [0, 1] before normalising (bicubic overshoots).
- ``paper``: the authors' own: training crops through torchvision's PIL transforms,
  ``Resize(256)`` (bilinear, PIL's default) + ``CenterCrop(256)``, evaluation crops the same with
  bicubic, and the encoder's resize of the crop (e.g. 256 -> 224) is normalised unclamped.
  :func:`preprocessing` switches the clamp for the code inside it (a context variable: per thread
  and per task); :func:`pil_resize_center_crop` makes the crops.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

# OpenAI CLIP's normalisation, shared by CLIP, BLIP-2 and many open_clip models.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
BICUBIC = TF.InterpolationMode.BICUBIC
PREPROCESS_MODES = ("neckkit", "paper")
_CLAMP_AFTER_RESIZE: contextvars.ContextVar[bool] = contextvars.ContextVar("neckkit_clamp_after_resize", default=True)

if TYPE_CHECKING:
    from PIL import Image


@contextmanager
def preprocessing(mode: str) -> Iterator[None]:
    """Inside: encoders' resizes are clamped to [0, 1] (``neckkit``) or not (``paper``)."""
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS_MODES)}, got {mode!r}")
    token = _CLAMP_AFTER_RESIZE.set(mode != "paper")
    try:
        yield
    finally:
        _CLAMP_AFTER_RESIZE.reset(token)


def _clamped(x01: Tensor) -> Tensor:
    return x01.clamp(0, 1) if _CLAMP_AFTER_RESIZE.get() else x01


def pil_resize_center_crop(image: Image.Image, resize: int, crop: int, interpolation: str = "bilinear") -> Tensor:
    """The authors' crop: torchvision ``Resize(resize)`` + ``CenterCrop(crop)`` + ``ToTensor`` on a PIL image.

    ``interpolation``: ``bilinear`` (their training crops, torchvision's default) or ``bicubic``
    (their evaluation crops). -> [1, 3, crop, crop] in [0, 1], 8-bit steps as PIL resizes in 8 bits.
    """
    from torchvision import transforms

    modes = {"bilinear": transforms.InterpolationMode.BILINEAR, "bicubic": transforms.InterpolationMode.BICUBIC}
    if interpolation not in modes:
        raise ValueError(f"interpolation must be bilinear or bicubic, got {interpolation!r}")
    pipeline = transforms.Compose([transforms.Resize(resize, interpolation=modes[interpolation]),
                                   transforms.CenterCrop(crop), transforms.ToTensor()])
    return pipeline(image).unsqueeze(0)


def _check_images(x01: Tensor) -> None:
    if x01.ndim != 4 or x01.shape[1] != 3:
        raise ValueError(f"expected images [B, 3, H, W], got shape {tuple(x01.shape)}")


def normalize(x01: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(x - mean) / std`` per channel, after clamping to [0, 1] (bicubic resizing overshoots).

    Inside ``preprocessing("paper")`` the clamp is skipped, as in the authors' code.
    """
    mean_t = torch.tensor(mean, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=x01.dtype, device=x01.device).view(1, 3, 1, 1)
    return (_clamped(x01) - mean_t) / std_t


def resize_center_crop(x01: Tensor, resize: int, crop: int, interpolation: TF.InterpolationMode = BICUBIC) -> Tensor:
    """Short side to ``resize`` (antialiased), then the centre ``crop x crop``, kept in [0, 1].

    The paper's training crops: ``Resize(256)`` then ``CenterCrop(256)``.
    """
    _check_images(x01)
    if min(x01.shape[-2:]) != resize:
        x01 = TF.resize(x01, [resize], interpolation=interpolation, antialias=True)
    return _clamped(TF.center_crop(x01, [crop, crop]))


def resize_cover_crop(x01: Tensor, height: int, width: int, interpolation: TF.InterpolationMode = BICUBIC) -> Tensor:
    """Resize (antialiased) so the image covers ``height x width``, then the centre ``height x width``, in [0, 1].

    The non-square form of :func:`resize_center_crop`: [B, 3, H, W] -> [B, 3, height, width].
    """
    _check_images(x01)
    source_h, source_w = x01.shape[-2:]
    scale = max(height / source_h, width / source_w)
    size = [max(height, round(source_h * scale)), max(width, round(source_w * scale))]
    if size != [source_h, source_w]:
        x01 = TF.resize(x01, size, interpolation=interpolation, antialias=True)
    return _clamped(TF.center_crop(x01, [height, width]))


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


def resize_square(x01: Tensor, size: int, interpolation: TF.InterpolationMode = BICUBIC) -> Tensor:
    """The whole image to ``size x size`` (aspect ratio not kept, no crop, antialiased), kept in [0, 1]."""
    _check_images(x01)
    if tuple(x01.shape[-2:]) != (size, size):
        x01 = _clamped(TF.resize(x01, [size, size], interpolation=interpolation, antialias=True))
    return x01


def resize_square_normalize(
    x01: Tensor,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: TF.InterpolationMode = BICUBIC,
) -> Tensor:
    """BLIP-style: the whole image to ``size x size`` (aspect ratio not kept, no crop), normalise."""
    return normalize(resize_square(x01, size, interpolation), mean, std)
