"""The image-codec interface: a traditional codec (JPEG, AVIF, VVC intra...) that codes pixels to its own file bytes.

It has no latent for a neck to read, so it serves the Reconstruction path only: the anchors that learned
codecs and necks are compared with. Not an ``nn.Module``: nothing in it is trained, moved or fingerprinted
by weights.
"""

from __future__ import annotations

import abc
import hashlib
from typing import TYPE_CHECKING

from neckkit.errors import NeckkitError

if TYPE_CHECKING:
    from torch import Tensor


def library_fingerprint(library: str) -> str:
    """16 hex digits naming the library and version that encoded a file (``"pillow 13.0.0 jpeg libjpeg_turbo 3.2.0"``)."""
    return hashlib.sha256(library.encode("utf-8")).hexdigest()[:16]


class ImageCodec(abc.ABC):
    """A codec from images to file bytes and back, with one integer ``quality`` knob.

    Subclasses set :attr:`name` (the registered name), :attr:`quality_range` (inclusive), whether
    :attr:`higher_quality_more_bits` (False for a quantisation parameter such as VTM's QP) and
    :attr:`default_quality`, and implement :meth:`encode`, :meth:`decode` and :attr:`library`. One image at a
    time: a caller with a batch calls them per image.
    """

    name: str
    quality_range: tuple[int, int]
    higher_quality_more_bits: bool = True
    default_quality: int

    def __init__(self, quality: int | None = None) -> None:
        self.quality = self.check_quality(self.default_quality if quality is None else quality)

    def check_quality(self, quality: int) -> int:
        """``quality`` if it is an integer in :attr:`quality_range`, else one NeckkitError line."""
        low, high = self.quality_range
        if isinstance(quality, bool) or not isinstance(quality, int) or not low <= quality <= high:
            raise NeckkitError(f"{self.name}: quality must be an integer in {low}..{high}, got {quality!r}")
        return quality

    @property
    @abc.abstractmethod
    def library(self) -> str:
        """What encodes, with its version, e.g. ``"pillow 13.0.0 jpeg libjpeg_turbo 3.2.0"``."""

    @property
    def fingerprint(self) -> str:
        """The ``.nk`` header's fingerprint: 16 hex digits of :attr:`library` (provenance, not a decoding key)."""
        return library_fingerprint(self.library)

    @abc.abstractmethod
    def encode(self, x: Tensor) -> bytes:
        """The codec's own file bytes for ``x``, one image [1, 3, H, W] in [0, 1], at :attr:`quality`."""

    @abc.abstractmethod
    def decode(self, data: bytes, size: tuple[int, int] | None = None) -> Tensor:
        """The image [1, 3, H, W] in [0, 1] of file bytes this codec wrote; a bad stream raises (any exception).

        ``size``: the ``(height, width)`` the caller expects (a ``.nk`` header's ``original_size``). Codecs
        whose decoder cannot tell the size itself (VTM writes raw YUV) need it; the others may ignore it.
        """

    def declared_size(self, data: bytes) -> tuple[int, int] | None:
        """``(height, width)`` the stream's own header declares, read without decoding pixels; None when it
        cannot be told. Untrusted files are checked against it before :meth:`decode` runs."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(quality={self.quality})"


def is_image_codec(codec: object) -> bool:
    """Whether ``codec`` is an :class:`ImageCodec` (no latent: Reconstruction path only)."""
    return isinstance(codec, ImageCodec)
