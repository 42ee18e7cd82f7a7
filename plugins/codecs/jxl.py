"""JPEG XL (libjxl through pillow-jxl-plugin): an anchor with no latent.

pillow-jxl-plugin decodes the whole image when it opens a file, so :func:`codestream_size` reads the
image size from the codestream's first bytes (its SizeHeader) first: an untrusted file is checked
before libjxl allocates anything.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from neckkit.errors import NeckkitError
from neckkit.interfaces.image_codec import ImageCodec

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["JxlCodec", "build_jxl", "codestream_size"]

SIGNATURE = b"\xff\x0a"  # a bare codestream (what the encoder writes without a container)
# SizeHeader.ratio -> xsize / ysize (JPEG XL, ISO/IEC 18181-1, Table D.1)
RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}
U32_BITS = (9, 13, 18, 30)  # the distributions of ysize_minus_1 / xsize_minus_1


def codestream_size(data: bytes) -> tuple[int, int]:
    """``(height, width)`` from a bare JPEG XL codestream's SizeHeader; ValueError for anything else."""
    if data[:2] != SIGNATURE:
        raise ValueError("not a bare JPEG XL codestream (no FF 0A signature)")
    if len(data) < 12:
        raise ValueError("truncated JPEG XL codestream")
    bits, position = int.from_bytes(data[2:12], "little"), 0  # the header is at most 68 bits; read LSB first

    def read(count: int) -> int:
        nonlocal position
        value = (bits >> position) & ((1 << count) - 1)
        position += count
        return value

    def read_size(small: bool) -> int:
        return (read(5) + 1) * 8 if small else read(U32_BITS[read(2)]) + 1

    small = bool(read(1))
    height = read_size(small)
    ratio = read(3)
    if ratio == 0:
        return height, read_size(small)
    numerator, denominator = RATIOS[ratio]
    return height, height * numerator // denominator


class JxlCodec(ImageCodec):
    """JPEG XL, VarDCT, effort 7; quality 0 (fewest bits) to 99, and 100 is lossless (libjxl has no
    lossy distance 0)."""

    name = "jxl"
    quality_range = (0, 100)
    default_quality = 90  # pillow-jxl-plugin's

    def __init__(self, quality: int | None = None) -> None:
        try:
            import pillow_jxl  # noqa: F401  (registers the JXL format with Pillow)
        except ImportError as error:
            raise NeckkitError(f"jxl needs the pillow-jxl-plugin package ({error}): pip install pillow-jxl-plugin") from None
        super().__init__(quality)

    @property
    def library(self) -> str:
        from importlib.metadata import version

        return f"pillow-jxl-plugin {version('pillow-jxl-plugin')} libjxl"

    def encode(self, x: Tensor) -> bytes:
        from neckkit.bitstream.images import tensor_to_image

        buffer = io.BytesIO()
        tensor_to_image(x).save(buffer, format="JXL", quality=self.quality, lossless=self.quality == 100,
                                lossless_jpeg=False, effort=7, use_container=False)
        return buffer.getvalue()

    def declared_size(self, data: bytes) -> tuple[int, int]:
        return codestream_size(data)

    def decode(self, data: bytes, size: tuple[int, int] | None = None) -> Tensor:
        from PIL import Image

        from neckkit.bitstream.images import image_to_tensor

        codestream_size(data)  # refuse a container or another format before libjxl sees it
        try:
            with Image.open(io.BytesIO(data), formats=["JXL"]) as image:
                image.load()
                return image_to_tensor(image)
        except RuntimeError as error:  # libjxl's "Generic Error. Please build libjxl from source ..."
            said = str(error).split(".")[0]
            raise ValueError(f"libjxl cannot decode the codestream: it is damaged or truncated ({said})") from None


def build_jxl(quality: int | None = None, tiny: bool = False) -> JxlCodec:
    """The factory of ``jxl``; ``tiny`` changes nothing (there are no weights)."""
    return JxlCodec(quality)
