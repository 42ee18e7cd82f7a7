"""Reading and writing image files as [1, 3, H, W] tensors in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from neckkit.errors import NeckkitError
from neckkit.bitstream.pixel_limit import check_pixels
from neckkit.files import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".gif")
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def to_eight_bits(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit grayscale scaled to 8 bits (PIL's ``convert`` clips them to 255: near white)."""
    if image.mode in SIXTEEN_BIT_MODES or (image.mode == "I" and np.asarray(image).max(initial=0) > 255):
        array = np.asarray(image, dtype=np.float64)
        full = 65535.0 if image.mode in SIXTEEN_BIT_MODES or array.max() <= 65535 else float(array.max())
        return Image.fromarray(np.clip(np.round(array * (255.0 / full)), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 if array.max(initial=0.0) <= 1.0 else 1.0  # [0, 1] floats, else 8-bit values as floats
        return Image.fromarray(np.clip(np.round(array * scale), 0, 255).astype(np.uint8), mode="L")
    return image


ALPHA_MODES = ("white", "drop")


def to_rgb(image: Image.Image, alpha: str = "white") -> Image.Image:
    """Any PIL mode as RGB: grayscale is repeated; alpha is composited over white (``"white"``, what a
    viewer shows), or dropped, keeping the colour under transparent pixels (``"drop"``: the authors'
    ``Image.convert("RGB")``, used under ``--preprocess paper``)."""
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {', '.join(ALPHA_MODES)}, got {alpha!r}")
    if image.mode == "RGB":
        return image
    image = to_eight_bits(image)
    transparent = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if transparent and alpha == "white":
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def image_to_tensor(image: Image.Image) -> Tensor:
    """PIL image -> [1, 3, H, W] float32 in [0, 1]."""
    array = np.asarray(to_rgb(image), dtype=np.uint8)  # [H, W, 3]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def load_image(path: str | Path) -> Tensor:
    """Read an image file as [1, 3, H, W] in [0, 1]; anything unreadable is one clear error."""
    return image_to_tensor(load_pil_image(path))


def load_pil_image(path: str | Path, alpha: str = "white") -> Image.Image:
    """Read an image file as an RGB PIL image (for PIL-based preprocessing); one clear error if unreadable.

    Upright as its EXIF orientation says, 16-bit data scaled to 8 bits, at most :func:`max_image_pixels`
    pixels (checked from the header, before decoding). ``alpha``: what transparency becomes (:func:`to_rgb`).
    """
    path = Path(path)
    if not path.is_file():
        raise NeckkitError(f"image {path} does not exist")
    try:
        with Image.open(path) as image:
            check_pixels(*image.size, source=str(path))
            image.load()
            return to_rgb(ImageOps.exif_transpose(image), alpha)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise NeckkitError(f"{path} is not a readable image ({type(error).__name__}: {error})") from None


def tensor_to_image(x: Tensor) -> Image.Image:
    """[1, 3, H, W] or [3, H, W] in [0, 1] -> 8-bit RGB PIL image (rounded)."""
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {x.shape[0]}")
        x = x[0]
    array = (x.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array, mode="RGB")


def save_image(x: Tensor, path: str | Path) -> Path:
    """Write an image atomically (temporary file, then rename); format from the suffix."""
    path = Path(path)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise NeckkitError(f"cannot write {path}: unknown image suffix {path.suffix!r} (use .png, .jpg, ...)")
    image = tensor_to_image(x)
    with atomic_path(path) as temporary:
        image.save(temporary, format=image_format)
    return path


def find_images(folder: str | Path) -> list[Path]:
    """Image files in ``folder`` (recursively, sorted), by suffix."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
