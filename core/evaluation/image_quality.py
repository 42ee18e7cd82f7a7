"""Human-path image quality: PSNR and MS-SSIM of a decoded image against the original.

Both compare [B, 3, H, W] images in [0, 1] on the 8-bit scale the viewer sees (the decoded image
is clamped to [0, 1] first). MS-SSIM is pytorch-msssim's (the implementation CompressAI evaluates
with), which needs the shorter side above ``(win_size - 1) * 2**4 = 160`` pixels for its five scales.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from neckkit.errors import NeckkitError

MS_SSIM_MIN_SIDE = 161  # pytorch-msssim asserts min(H, W) > (11 - 1) * 2**4


def _check_pair(reference: Tensor, decoded: Tensor) -> None:
    if reference.shape != decoded.shape or reference.ndim != 4:
        raise NeckkitError(
            f"image quality compares two [B, 3, H, W] images of one shape, got {list(reference.shape)} "
            f"and {list(decoded.shape)}"
        )


def psnr(reference: Tensor, decoded: Tensor) -> float:
    """Peak signal-to-noise ratio in dB (peak 1.0), over the whole batch; ``inf`` for identical images."""
    _check_pair(reference, decoded)
    mse = torch.mean((reference.float() - decoded.float().clamp(0, 1)) ** 2).item()
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def ms_ssim(reference: Tensor, decoded: Tensor) -> float | None:
    """MS-SSIM in [0, 1] (data range 1.0); ``None`` when the image is too small for five scales."""
    _check_pair(reference, decoded)
    if min(reference.shape[-2:]) < MS_SSIM_MIN_SIDE:
        return None
    from pytorch_msssim import ms_ssim as pytorch_ms_ssim

    return float(pytorch_ms_ssim(reference.float(), decoded.float().clamp(0, 1), data_range=1.0))
