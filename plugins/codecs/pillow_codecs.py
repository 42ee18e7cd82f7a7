"""JPEG, WebP and AVIF through Pillow's own encoders (AVIF natively since Pillow 11.3): anchors with no latent."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from neckkit.errors import NeckkitError
from neckkit.interfaces.image_codec import ImageCodec

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["AvifCodec", "JpegCodec", "PillowImageCodec", "WebpCodec", "build_pillow_codec"]


class PillowImageCodec(ImageCodec):
    """A format Pillow reads and writes itself: ``format`` is Pillow's name for it, ``feature`` its
    :mod:`PIL.features` name (whose version is part of :attr:`library`)."""

    format: str
    feature: str
    library_feature: str = ""  # a more precise PIL.features name for the library's version, where there is one

    def __init__(self, quality: int | None = None) -> None:
        from PIL import features

        if not features.check(self.feature):
            raise NeckkitError(
                f"{self.name}: this Pillow cannot write {self.format} (PIL.features.check({self.feature!r}) is False); "
                "pip install -U 'pillow>=11.3' (its wheels include libjpeg, libwebp and libavif)"
            )
        super().__init__(quality)

    @property
    def library(self) -> str:
        import PIL
        from PIL import features

        feature = self.library_feature if self.library_feature and features.version(self.library_feature) else self.feature
        return f"pillow {PIL.__version__} {self.name} {feature} {features.version(feature)}"

    def save_options(self) -> dict[str, object]:
        """Keyword arguments of ``Image.save`` besides the format."""
        return {"quality": self.quality}

    def encode(self, x: Tensor) -> bytes:
        from neckkit.bitstream.images import tensor_to_image

        buffer = io.BytesIO()
        tensor_to_image(x).save(buffer, format=self.format, **self.save_options())
        return buffer.getvalue()

    def declared_size(self, data: bytes) -> tuple[int, int]:
        from PIL import Image

        with _own_pixel_limit(self.format), Image.open(io.BytesIO(data), formats=[self.format]) as image:  # the header only
            return image.height, image.width

    def decode(self, data: bytes, size: tuple[int, int] | None = None) -> Tensor:
        from PIL import Image

        from neckkit.bitstream.images import image_to_tensor

        with _own_pixel_limit(self.format), Image.open(io.BytesIO(data), formats=[self.format]) as image:
            image.load()
            return image_to_tensor(image)


@contextmanager
def _own_pixel_limit(format_name: str) -> Iterator[None]:
    """No DecompressionBombWarning on stderr (neckkit checks sizes against its own limit; Pillow's error stays),
    and a stream Pillow cannot identify as ``format_name`` said in words, not with a BytesIO's address."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            yield
        except UnidentifiedImageError:
            raise ValueError(f"Pillow does not recognise it as {format_name}") from None


class JpegCodec(PillowImageCodec):
    """JPEG (libjpeg-turbo in Pillow's wheels), 4:2:0, baseline; quality 1 (fewest bits) to 100."""

    name, format, feature, library_feature = "jpeg", "JPEG", "jpg", "libjpeg_turbo"
    quality_range = (1, 100)
    default_quality = 75  # Pillow's


class WebpCodec(PillowImageCodec):
    """Lossy WebP (libwebp, VP8 intra), method 4; quality 0 (fewest bits) to 100."""

    name, format, feature = "webp", "WEBP", "webp"
    quality_range = (0, 100)
    default_quality = 80  # Pillow's


class AvifCodec(PillowImageCodec):
    """AVIF (libavif with libaom: AV1 intra), 4:2:0, speed 6; quality 0 (fewest bits) to 100."""

    name, format, feature = "avif", "AVIF", "avif"
    quality_range = (0, 100)
    default_quality = 75  # Pillow's


CODECS: dict[str, type[PillowImageCodec]] = {codec.name: codec for codec in (JpegCodec, WebpCodec, AvifCodec)}


def build_pillow_codec(codec: str, quality: int | None = None, tiny: bool = False) -> PillowImageCodec:
    """The factory of ``jpeg``, ``webp`` and ``avif``; ``tiny`` changes nothing (there are no weights)."""
    return CODECS[codec](quality)
