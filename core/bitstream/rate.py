"""The rate of a ``.nk`` file: bits per pixel of the original image, payload only and whole file."""

from __future__ import annotations

from dataclasses import dataclass

from neckkit.bitstream.nk_format import NkFile

__all__ = ["Bpp", "bpp"]


@dataclass(frozen=True)
class Bpp:
    """Bits per pixel of the original image: of the entropy-coded payload and of the whole file."""

    payload_bpp: float
    file_bpp: float
    payload_bytes: int
    file_bytes: int
    pixels: int


def bpp(nk: NkFile) -> Bpp:
    """Bits per pixel over the ORIGINAL (unpadded) image size."""
    height, width = nk.original_size
    pixels = height * width
    payload, whole = nk.payload_bytes, nk.file_bytes
    return Bpp(payload * 8 / pixels, whole * 8 / pixels, payload, whole, pixels)
