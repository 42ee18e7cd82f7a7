"""HEIF with HEVC intra (libheif and x265 through pillow-heif): an anchor with no latent."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from neckkit.errors import NeckkitError
from neckkit.interfaces.image_codec import ImageCodec

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["HeifCodec", "build_heif"]

HEVC_MIMETYPES = ("image/heic", "image/heif")  # not image/avif: pillow-heif could open that too


def _pillow_heif() -> Any:
    try:
        import pillow_heif
    except ImportError as error:
        raise NeckkitError(f"heif needs the pillow-heif package ({error}): pip install pillow-heif") from None
    return pillow_heif


class HeifCodec(ImageCodec):
    """HEIF (HEVC Main intra through x265, 4:2:0); quality 0 (fewest bits) to 100."""

    name = "heif"
    quality_range = (0, 100)
    default_quality = 50  # libheif's

    def __init__(self, quality: int | None = None) -> None:
        self._heif = _pillow_heif()
        if not self._heif.libheif_info().get("HEIF"):
            raise NeckkitError("heif: this pillow-heif has no HEVC encoder (libheif_info()['HEIF'] is empty); "
                               "pip install -U pillow-heif (its wheels include x265)")
        super().__init__(quality)

    @property
    def library(self) -> str:
        info = self._heif.libheif_info()
        return f"pillow-heif {self._heif.__version__} libheif {info['libheif']} {info['HEIF']}"

    def encode(self, x: Tensor) -> bytes:
        from neckkit.bitstream.images import tensor_to_image

        buffer = io.BytesIO()
        self._heif.from_pillow(tensor_to_image(x)).save(buffer, quality=self.quality)
        return buffer.getvalue()

    def _open(self, data: bytes) -> Any:
        mimetype = self._heif.get_file_mimetype(data)
        if mimetype not in HEVC_MIMETYPES:
            raise ValueError(f"not an HEVC HEIF file (its brand says {mimetype or 'nothing known'!r})")
        return self._heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)  # the boxes only, no pixels

    def declared_size(self, data: bytes) -> tuple[int, int]:
        width, height = self._open(data).size  # of the primary image
        return height, width

    def decode(self, data: bytes, size: tuple[int, int] | None = None) -> Tensor:
        from neckkit.bitstream.images import image_to_tensor

        return image_to_tensor(self._open(data).to_pillow())


def build_heif(quality: int | None = None, tiny: bool = False) -> HeifCodec:
    """The factory of ``heif``; ``tiny`` changes nothing (there are no weights)."""
    return HeifCodec(quality)
