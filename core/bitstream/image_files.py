"""``.nk`` files of image codecs (JPEG, AVIF, VTM...): the codec's own file bytes in one stream, decoded to pixels.

Such a file has no latent: its one stream is the codec's file (a JPEG, an AVIF, a VVC bitstream), ``options``
is ``{"quality": q}``, ``fingerprint`` names the library that encoded it (provenance: any conforming decoder
decodes the format, so decoding does not require it to match), ``padding`` is zero and ``shape`` empty.
:func:`decode_image` is how the core decodes an untrusted one: header fields first, then the pixel limit, then
the size the stream's own header declares, then the decoder library, then the result; every problem is one
:class:`~neckkit.errors.NeckkitError` line naming the file. It never goes through the latent decoder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from neckkit.bitstream.nk_format import NkFile, _one_line, _short
from neckkit.bitstream.pixel_limit import MAX_PIXELS_ENV, max_image_pixels
from neckkit.errors import NeckkitError, describe_error

if TYPE_CHECKING:
    from torch import Tensor

    from neckkit.interfaces.image_codec import ImageCodec

__all__ = ["decode_image", "encode_image", "recorded_options"]

RECORDED_OPTIONS = frozenset({"quality"})


def _prefix(source: str | None) -> str:
    return f"{_one_line(source)}: " if source else ""


def encode_image(codec: ImageCodec, x: Tensor, *, name: str | None = None) -> NkFile:
    """The ``.nk`` file of one image ``x`` [1, 3, H, W] in [0, 1], coded by ``codec`` at its quality.

    ``name``: the codec's registered name, when it differs from ``codec.name`` (an alias was built).
    """
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != 3:
        raise NeckkitError(f"{codec.name} codes one [1, 3, H, W] image at a time, got shape {list(x.shape)}")
    height, width = (int(side) for side in x.shape[-2:])
    try:
        data = codec.encode(x)
    except NeckkitError:
        raise
    except Exception as error:  # the library's own refusal, e.g. WebP's 16383-pixel side limit
        raise NeckkitError(f"{name or codec.name} encoding failed ({describe_error(error)})") from None
    if not isinstance(data, bytes) or not data:
        raise NeckkitError(f"{name or codec.name} encoded no bytes (got {type(data).__name__})")
    return NkFile(codec=name or codec.name, fingerprint=codec.fingerprint, original_size=(height, width),
                  padding=(0, 0, 0, 0), shape=(), streams=(data,), options={"quality": codec.quality})


def recorded_options(nk: NkFile, *, source: str | None = None) -> dict[str, Any]:
    """The factory options an image codec's file records (``quality`` only), or one line refusing any other.

    A file never chooses what neckkit opens, so a header naming, say, ``vtm``'s ``decoder`` path is refused.
    """
    others = sorted(set(nk.options) - RECORDED_OPTIONS)
    if others:
        raise NeckkitError(f"{_prefix(source)}header options {_short(others)}: an image codec's file records only "
                           "quality (a file never names paths or other options)")
    return dict(nk.options)


def _check_header(nk: NkFile, name: str, prefix: str, max_pixels: int) -> None:
    if nk.codec != name:
        raise NeckkitError(f"{prefix}was compressed with codec {nk.codec!r}, not {name!r}")
    if len(nk.streams) != 1:
        raise NeckkitError(f"{prefix}an image codec's file holds one stream (its {name} file), this one "
                           f"{len(nk.streams)}")
    odd = [field for field, value in (("padding", any(nk.padding)), ("shape", nk.shape),
                                      ("level", nk.level is not None)) if value]
    if odd:
        raise NeckkitError(f"{prefix}{' and '.join(odd)} in the header: {name} writes no padding, shape [] and no level")
    height, width = nk.original_size
    if height * width > max_pixels:
        raise NeckkitError(f"{prefix}original_size {list(nk.original_size)} declares a {width}x{height} image, more "
                           f"than the {max_pixels} pixels neckkit decodes; raise {MAX_PIXELS_ENV} to decode it")


def decode_image(codec: ImageCodec, nk: NkFile, *, source: str | None = None, name: str | None = None,
                 max_pixels: int | None = None) -> Tensor:
    """The image [1, 3, H, W] in [0, 1] of an image codec's ``.nk`` file; every problem is one NeckkitError line.

    Checked in order: the header (codec ``name``, one stream, no padding, shape or level), the declared size
    against ``max_pixels`` (default :func:`~neckkit.bitstream.pixel_limit.max_image_pixels`), the size the
    stream's own header declares (:meth:`~neckkit.interfaces.image_codec.ImageCodec.declared_size`) against
    ``original_size``, before the decoder runs; then the decoded image's shape and values.
    """
    from neckkit.bitstream.decoding import check_decoded

    prefix, name = _prefix(source), name or codec.name
    _check_header(nk, name, prefix, max_image_pixels() if max_pixels is None else max_pixels)
    (data,), (height, width) = nk.streams, nk.original_size
    try:
        declared = codec.declared_size(data)
    except NeckkitError as error:
        raise NeckkitError(f"{prefix}{error}") from None
    except Exception as error:  # the library's own exception on a stream that is not its format
        raise NeckkitError(f"{prefix}not a valid {name} stream ({describe_error(error)})") from None
    if declared is not None and tuple(declared) != (height, width):
        raise NeckkitError(f"{prefix}the {name} stream declares a {declared[1]}x{declared[0]} image, but the header "
                           f"says {width}x{height}")
    try:
        x_hat = codec.decode(data, size=(height, width))
    except NeckkitError as error:
        raise NeckkitError(f"{prefix}{error}") from None
    except Exception as error:  # the decoder library's exception on a damaged stream, one line
        raise NeckkitError(f"{prefix}{name} decoding failed ({describe_error(error)})") from None
    check_decoded(x_hat, [1, 3, height, width], prefix=prefix, decoder=name, noun="image")
    return x_hat
