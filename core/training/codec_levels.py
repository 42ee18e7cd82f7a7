"""The per-level evaluation that ends ``neckkit train-codec``: bits per pixel and PSNR at every rate level.

Each image is coded for real at each level (:meth:`Codec.compress`: ``bpp`` counts the payload's bytes
over the image's own pixels, padding excluded), and reconstructed from the quantised latent (the same
``y_hat`` the decoder returns); ``estimated_bpp`` is the likelihoods' rate. Averages are per image, as
CompressAI's ``eval_model`` reports them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from neckkit.interfaces.codec import VariableRateCodec, at_level, compress_with_analysis, estimated_bits

__all__ = ["evaluate_levels", "psnr"]


def psnr(mse: float) -> float:
    """PSNR in dB of a mean squared error of images in [0, 1] (``inf`` for a perfect reconstruction)."""
    return 10 * math.log10(1 / mse) if mse > 0 else math.inf


def _image(path: Path, crop: int | None) -> Tensor:
    from neckkit.bitstream.images import load_image

    image = load_image(path)  # [1, 3, H, W]
    if crop is None:
        return image
    height, width = image.shape[-2:]
    return TF.center_crop(image, [min(height, crop), min(width, crop)])


@torch.no_grad()
def _code(codec: VariableRateCodec, image: Tensor, level: int) -> dict[str, float]:
    from neckkit.bitstream.padding import crop_padding, pad_to_multiple

    height, width = image.shape[-2:]
    padded, padding = pad_to_multiple(image, codec.pad_multiple)
    with at_level(codec, level):
        analysis = codec.analyze(padded)
        payload = compress_with_analysis(codec, padded, analysis)
        x_hat = crop_padding(codec.synthesize(analysis.y_hat), padding).clamp(0, 1)  # [1, 3, H, W]
    mse = float(torch.mean((x_hat.float() - image.float()) ** 2))
    pixels = height * width
    return {
        "bpp": payload.num_bytes * 8 / pixels,
        "estimated_bpp": float(estimated_bits(analysis.likelihoods)) / pixels,
        "mse": mse,
        "psnr": psnr(mse),
    }


def evaluate_levels(
    codec: VariableRateCodec,
    paths: Sequence[Path],
    lambdas: Sequence[float],
    crop: int | None = None,
    device: torch.device | None = None,
    tick: Callable[[str], None] = lambda _text: None,
) -> list[dict[str, Any]]:
    """``[{"level", "lambda", "bpp", "estimated_bpp", "mse", "psnr", "images"}, ...]``, level 0 first.

    ``crop``: centre crop side of each image (whole images when ``None``); ``tick`` is told what runs.
    """
    device = device or torch.device("cpu")
    was_training = codec.training
    codec.eval()
    images = [_image(path, crop).to(device) for path in paths]
    rows = []
    try:
        for level, lmbda in enumerate(lambdas):
            tick(f"evaluating level {level}/{len(lambdas) - 1} on {len(images)} images")
            results = [_code(codec, image, level) for image in images]
            mean = {key: sum(r[key] for r in results) / len(results) for key in ("bpp", "estimated_bpp", "mse", "psnr")}
            rows.append({"level": level, "lambda": lmbda, **mean, "images": len(results)})
    finally:
        codec.train(was_training)
    return rows
