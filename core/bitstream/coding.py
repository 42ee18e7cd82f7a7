"""One image to a ``.nk`` file and back, for every kind of codec: what a device sends and what a server decodes.

A learned codec (:class:`~neckkit.interfaces.Codec`) pads the image to its multiple and codes the latent; an
image codec (:class:`~neckkit.interfaces.image_codec.ImageCodec`: JPEG, AVIF, VTM...) stores its own file's
bytes. :func:`compress_image` gives the file, :func:`transmit` the bytes a device sends and the file a server
parses from them, :func:`reconstruct_image` the decoded picture (the *Reconstruction* path; the neck path reads
the latent with :func:`~neckkit.bitstream.decoding.decode_latent`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from neckkit.bitstream.nk_format import NkFile

__all__ = ["compress_image", "reconstruct_image", "transmit"]


def compress_image(codec: Any, image: Tensor, *, name: str, fingerprint: str | None = None,
                   options: Mapping[str, Any] | None = None, level: float | None = None) -> NkFile:
    """The ``.nk`` file of ``image`` [1, 3, H, W] in [0, 1] coded by ``codec`` (registered as ``name``).

    A learned codec: ``fingerprint`` (default: the codec's stream fingerprint) and ``options`` go into the
    header, ``level`` is a variable-rate codec's level (None: its default). An image codec records its quality.
    """
    from neckkit.bitstream.image_files import encode_image
    from neckkit.interfaces.codec import at_level
    from neckkit.interfaces.image_codec import is_image_codec

    if is_image_codec(codec):
        return encode_image(codec, image, name=name)
    from neckkit.bitstream.codec_identity import stream_fingerprint
    from neckkit.bitstream.padding import pad_to_multiple

    with at_level(codec, level) as chosen:
        padded, padding = pad_to_multiple(image, codec.pad_multiple)
        payload = codec.compress(padded)
    return NkFile.from_payload(payload, codec=name, fingerprint=fingerprint or stream_fingerprint(codec),
                               original_size=tuple(image.shape[-2:]), padding=padding, options=dict(options or {}),
                               level=chosen)


def transmit(nk: NkFile, *, source: str | None = None) -> tuple[bytes, NkFile]:
    """The bytes a device sends for ``nk``, and the file a server parses back from them (every header check)."""
    from neckkit.bitstream.nk_format import decode_nk, encode_nk

    data = encode_nk(nk)
    return data, decode_nk(data, source=source)


def reconstruct_image(codec: Any, nk: NkFile, *, name: str, source: str | None = None) -> Tensor:
    """The image a ``.nk`` file decodes to, [1, 3, H, W] in [0, 1]: the library's decoder for an image codec,
    entropy decoding then the synthesis transform for a learned one (its padding cropped off)."""
    from neckkit.bitstream.image_files import decode_image
    from neckkit.interfaces.image_codec import is_image_codec

    if is_image_codec(codec):
        return decode_image(codec, nk, source=source, name=name).clamp(0, 1)
    from neckkit.bitstream.decoding import decode_latent
    from neckkit.bitstream.padding import Padding, crop_padding

    y_hat = decode_latent(codec, nk, source=source)  # [1, C, h, w]
    return crop_padding(codec.synthesize(y_hat), Padding(*nk.padding)).clamp(0, 1)
