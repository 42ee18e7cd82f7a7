"""The ``.nk`` bitstream and the images around it.

- :mod:`neckkit.bitstream.nk_format`: the ``.nk`` byte layout, :class:`NkFile`, ``encode_nk`` / ``decode_nk``;
- :mod:`neckkit.bitstream.nk_files`: reading and writing ``.nk`` files (``read_nk``, atomic ``write_nk``);
- :mod:`neckkit.bitstream.codec_identity`: ``codec_fingerprint`` and ``check_codec`` (decode only with the right codec);
- :mod:`neckkit.bitstream.rate`: :class:`Bpp` and ``bpp``, payload and whole-file bits per pixel;
- :mod:`neckkit.bitstream.container`: all of the four above in one import (the module before it was split);
- :mod:`neckkit.bitstream.image_files`: ``.nk`` files of image codecs (JPEG, AVIF...): ``encode_image``, ``decode_image``;
- :mod:`neckkit.bitstream.padding`: padding to a codec's multiple and cropping back;
- :mod:`neckkit.bitstream.images`: image files as [1, 3, H, W] tensors in [0, 1];
- :mod:`neckkit.bitstream.pixel_limit`: the pixel limit for image files (``NECKKIT_MAX_IMAGE_PIXELS``).

``from neckkit.bitstream import NkFile, read_nk, ...`` (the names of the module before core/ was
grouped) keeps working; importing this package does not import torch.
"""

from neckkit.bitstream import container
from neckkit.bitstream.container import *  # noqa: F403

__all__ = list(container.__all__)
