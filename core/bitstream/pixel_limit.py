"""How many pixels neckkit reads from one image file: a documented, configurable bound.

Light on purpose (no torch): the CLI checks images' headers with it before anything heavy loads.
"""

from __future__ import annotations

import os

from neckkit.errors import NeckkitError

__all__ = ["DEFAULT_MAX_IMAGE_PIXELS", "MAX_PIXELS_ENV", "check_pixels", "max_image_pixels"]

# The most pixels an image file may hold (64 Mpx: 8192 x 8192); NECKKIT_MAX_IMAGE_PIXELS changes it.
DEFAULT_MAX_IMAGE_PIXELS = 1 << 26
MAX_PIXELS_ENV = "NECKKIT_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The pixel limit for reading image files: ``NECKKIT_MAX_IMAGE_PIXELS``, else 64 Mpx."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise NeckkitError(f"{MAX_PIXELS_ENV} must be a positive number of pixels, got {value!r}")
    return limit


def check_pixels(width: int, height: int, source: str, limit: int | None = None) -> None:
    """Refuse an image of more than ``limit`` pixels (default :func:`max_image_pixels`) before decoding it."""
    limit = max_image_pixels() if limit is None else limit
    if width * height > limit:
        raise NeckkitError(
            f"{source} is a {width}x{height} image ({width * height} pixels), more than the {limit} neckkit reads; "
            f"raise {MAX_PIXELS_ENV} to read it"
        )
