"""Entropy decoding of untrusted ``.nk`` files: plausible headers first, then a decoder that cannot read out of bounds.

:func:`decode_latent` is the one way the core turns a :class:`~neckkit.bitstream.nk_format.NkFile` into
``y_hat``: it checks that the header is one the codec could have written (:func:`check_plausible`),
makes every CompressAI entropy model in the codec decode with
:class:`~neckkit.bitstream.rans.BoundedRansDecoder`, calls the codec's ``decompress_latent`` and checks
what comes back. Any failure is one :class:`~neckkit.errors.NeckkitError` line naming the file. The
threat model and the bounds are in docs/bitstreams.md.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from neckkit.errors import NeckkitError, describe_error

if TYPE_CHECKING:
    from torch import Tensor

    from neckkit.bitstream.nk_format import NkFile
    from neckkit.interfaces.codec import Codec

__all__ = ["MAX_DECODE_PIXELS", "check_plausible", "decode_latent", "min_bits_per_value"]

MAX_DECODE_PIXELS = 1 << 28  # 16384 x 16384: the largest padded image a .nk file may declare
_STREAM_SLACK_BITS = 64  # the rANS state flushed at the end of every stream


def _prefix(source: str | None) -> str:
    return f"{source}: " if source else ""


def check_plausible(nk: NkFile, codec: Codec, *, source: str | None = None,
                    max_pixels: int = MAX_DECODE_PIXELS) -> None:
    """Refuse a header that ``codec`` cannot have written, or that asks for more work than its bytes allow.

    Checked in order, each a one-line :class:`NeckkitError` naming the field: the padded image
    (``original_size`` + ``padding``) is at most ``max_pixels`` and a multiple of the codec's
    ``pad_multiple`` with less than one multiple of padding per side; ``shape`` is the codec's
    :meth:`~neckkit.interfaces.codec.Codec.payload_shape` for that image (or, when the codec cannot
    tell, non-empty and no larger than the image); and the latent values the image implies could be
    entropy-coded in the file's payload bytes with the codec's own tables (:func:`min_bits_per_value`).
    """
    prefix = _prefix(source)
    height, width = nk.original_size
    left, right, top, bottom = nk.padding
    padded_height, padded_width = height + top + bottom, width + left + right
    if padded_height * padded_width > max_pixels:
        raise NeckkitError(f"{prefix}original_size {list(nk.original_size)} with padding {list(nk.padding)} "
                           f"declares a {padded_width}x{padded_height} image, more than the {max_pixels} pixels "
                           "neckkit decodes")
    multiple = int(codec.pad_multiple)
    if padded_height % multiple or padded_width % multiple or any(pad >= multiple for pad in nk.padding):
        raise NeckkitError(f"{prefix}padding {list(nk.padding)} does not pad {width}x{height} to a multiple of "
                           f"{multiple} as the codec does")
    expected = codec.payload_shape(padded_height, padded_width)
    if expected is not None:
        if tuple(nk.shape) != tuple(expected):
            raise NeckkitError(f"{prefix}shape {list(nk.shape)} is not the {list(expected)} the codec writes for a "
                               f"{padded_width}x{padded_height} image")
    elif not nk.shape or any(dim < 1 or dim > max(padded_height, padded_width) for dim in nk.shape):
        raise NeckkitError(f"{prefix}shape {list(nk.shape)} does not fit a {padded_width}x{padded_height} image")
    if not getattr(codec, "codes_every_latent_value", True):
        return
    from neckkit.bitstream.rans import WORK_MARGIN  # numba: only where a file is decoded

    bits = min_bits_per_value(codec)
    if bits is None:
        return
    values = int(codec.latent_channels) * (padded_height // codec.stride) * (padded_width // codec.stride)
    capacity = 8 * nk.payload_bytes + _STREAM_SLACK_BITS * len(nk.streams)
    if values * bits > WORK_MARGIN * capacity:
        raise NeckkitError(f"{prefix}original_size {list(nk.original_size)} implies {values} latent values, but "
                           f"{nk.payload_bytes} payload bytes can hold at most {math.floor(WORK_MARGIN * capacity / bits)} "
                           "with this codec's tables")


def _entropy_models(codec: Any) -> list[Any]:
    from compressai.entropy_models import EntropyModel

    return [module for module in codec.modules() if isinstance(module, EntropyModel)] if hasattr(codec, "modules") else []


def min_bits_per_value(codec: Codec) -> float | None:
    """The fewest bits any one value costs under the codec's CompressAI tables (None without tables).

    A CDF row whose most likely symbol has frequency ``f`` out of ``2**16`` codes no value in fewer than
    ``log2(2**16 / f)`` bits, so ``values * min_bits_per_value`` bits is a lower bound on any stream.
    """
    from neckkit.bitstream.rans import row_min_bits

    ensure = getattr(codec, "_ensure_tables", None)  # the built-in codecs build their tables lazily
    if callable(ensure):
        ensure()
    best: float | None = None
    for module in _entropy_models(codec):
        cdf, lengths = getattr(module, "_quantized_cdf", None), getattr(module, "_cdf_length", None)
        if cdf is None or lengths is None or cdf.ndim != 2 or cdf.numel() == 0:
            continue
        cached = module.__dict__.get("_neckkit_min_bits")
        key = (cdf.data_ptr(), cdf._version, lengths.data_ptr(), lengths._version)
        if cached is None or cached[0] != key:
            bits = row_min_bits(cdf.detach().cpu().numpy(), lengths.detach().cpu().numpy())  # [rows]
            least = float(bits.min()) if bits.size else math.inf  # from the largest frequency of any row
            cached = (key, least if 0 <= least < math.inf else None)
            module.__dict__["_neckkit_min_bits"] = cached
        if cached[1] is not None and (best is None or cached[1] < best):
            best = cached[1]
    return best


def file_level(nk: NkFile, codec: Codec, *, source: str | None = None) -> int | float | None:
    """The rate level ``codec`` decodes ``nk`` at, or one NeckkitError line when the two disagree.

    A variable-rate codec needs the file's ``level`` (one of its levels, or a fraction between two where
    it allows that); a fixed-rate codec's file has none.
    """
    from neckkit.interfaces.codec import VariableRateCodec

    prefix = _prefix(source)
    name = getattr(codec, "name", type(codec).__name__)
    if not isinstance(codec, VariableRateCodec):
        if nk.level is not None:
            raise NeckkitError(f"{prefix}the file names rate level {nk.level:g}, but {name} is a fixed-rate codec")
        return None
    if nk.level is None:
        raise NeckkitError(f"{prefix}the file names no rate level, which variable-rate codec {name} needs")
    try:
        return codec.check_level(nk.level)
    except NeckkitError as error:
        raise NeckkitError(f"{prefix}{error}") from None


def decode_latent(codec: Codec, nk: NkFile, *, source: str | None = None,
                  max_pixels: int = MAX_DECODE_PIXELS) -> Tensor:
    """``y_hat`` [1, C, h, w] of ``nk`` decoded by ``codec``; every problem is one NeckkitError line.

    The header is checked first (:func:`check_plausible`), then the codec decodes with the bounded
    rANS decoder (:func:`~neckkit.bitstream.rans.bound_entropy_decoding`); the result must be the
    finite [1, latent_channels, H / stride, W / stride] tensor the header promises.
    """
    import torch

    from neckkit.bitstream.rans import bound_entropy_decoding
    from neckkit.interfaces.codec import at_level

    prefix = _prefix(source)
    check_plausible(nk, codec, source=source, max_pixels=max_pixels)
    level = file_level(nk, codec, source=source)
    bound_entropy_decoding(codec)
    try:
        with torch.no_grad(), at_level(codec, level):
            y_hat = codec.decompress_latent(nk.to_payload())
    except NeckkitError as error:
        message = str(error)
        raise NeckkitError(message if source and message.startswith(prefix)
                           else f"{prefix}entropy decoding failed: {message}") from None
    except Exception as error:  # the codec's own exception on a damaged stream, one line
        raise NeckkitError(f"{prefix}entropy decoding failed ({describe_error(error)})") from None
    height, width = nk.original_size
    left, right, top, bottom = nk.padding
    expected = [1, int(codec.latent_channels), (height + top + bottom) // codec.stride,
                (width + left + right) // codec.stride]
    check_decoded(y_hat, expected, prefix=prefix, decoder="the codec", noun="latent",
                  damaged=": the stream is damaged")
    return y_hat


def check_decoded(value: object, expected: list[int], *, prefix: str, decoder: str, noun: str, damaged: str = "") -> None:
    """Refuse, in one line, a decoder's result that is not a finite tensor of shape ``expected``.

    The messages read ``<prefix><decoder> decoded a <noun> of shape ..., expected ...`` and ``<prefix>the decoded
    <noun> holds values that are not finite<damaged>``.
    """
    import torch

    if not isinstance(value, torch.Tensor) or list(value.shape) != expected:
        shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        article = "an" if noun[0] in "aeiou" else "a"
        raise NeckkitError(f"{prefix}{decoder} decoded {article} {noun} of shape {shape}, expected {expected}")
    if not bool(torch.isfinite(value).all()):
        raise NeckkitError(f"{prefix}the decoded {noun} holds values that are not finite{damaged}")
