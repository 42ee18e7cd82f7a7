"""The ``.nk`` bitstream and the images around it.

- :mod:`neckkit.bitstream.container`: the ``.nk`` byte layout, :class:`NkFile`, ``encode_nk`` / ``decode_nk``
  and file reading / writing, codec checks and bpp;
- :mod:`neckkit.bitstream.padding`: padding to a codec's multiple and cropping back;
- :mod:`neckkit.bitstream.images`: image files as [1, 3, H, W] tensors in [0, 1].

``from neckkit.bitstream import NkFile, read_nk, ...`` (the names of the module before core/ was
grouped) keeps working; importing this package does not import torch.
"""

from neckkit.bitstream.container import (
    FORMAT_VERSION,
    MAGIC,
    MAX_FILE_BYTES,
    MAX_HEADER_BYTES,
    MAX_OPTION_DEPTH,
    MAX_OPTION_INT,
    MAX_SHAPE_DIMS,
    MAX_SHAPE_VALUE,
    MAX_SIDE,
    MAX_STREAM_BYTES,
    MAX_STREAMS,
    Bpp,
    NkFile,
    bpp,
    check_codec,
    codec_fingerprint,
    decode_nk,
    encode_nk,
    read_nk,
    write_nk,
)

__all__ = [
    "FORMAT_VERSION", "MAGIC", "MAX_FILE_BYTES", "MAX_HEADER_BYTES", "MAX_OPTION_DEPTH", "MAX_OPTION_INT",
    "MAX_SHAPE_DIMS", "MAX_SHAPE_VALUE", "MAX_SIDE", "MAX_STREAMS", "MAX_STREAM_BYTES",
    "Bpp", "NkFile", "bpp", "check_codec", "codec_fingerprint", "decode_nk", "encode_nk", "read_nk", "write_nk",
]
