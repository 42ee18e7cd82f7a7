"""The ``.nk`` bitstream container in one import: the names of the module before it was split.

The container now lives in one module per concept, and this module re-exports their names (and the
private ones older code and tests read), so ``from neckkit.bitstream.container import read_nk`` keeps
working:

- :mod:`neckkit.bitstream.nk_format`: the byte layout (documented there), :class:`NkFile`, ``encode_nk`` / ``decode_nk``;
- :mod:`neckkit.bitstream.nk_files`: ``read_nk`` / ``write_nk``, the file on disk;
- :mod:`neckkit.bitstream.codec_identity`: ``codec_fingerprint`` and ``check_codec``;
- :mod:`neckkit.bitstream.rate`: :class:`Bpp` and ``bpp``.

Importing it does not import torch.
"""

from __future__ import annotations

from neckkit.bitstream import codec_identity, nk_files, nk_format, rate
from neckkit.bitstream.codec_identity import *  # noqa: F403
from neckkit.bitstream.nk_files import *  # noqa: F403
from neckkit.bitstream.nk_format import *  # noqa: F403
from neckkit.bitstream.nk_format import (  # noqa: F401  (private names: read by older code and tests)
    _FINGERPRINT_PATTERN,
    _HEADER_KEYS,
    _MAX_NAME_CHARS,
    _NAME_PATTERN,
    _PREFIX,
    _U16,
    _U32,
    _ints,
    _json_value,
    _one_line,
    _options,
    _parse_header,
    _Reader,
    _short,
)
from neckkit.bitstream.rate import *  # noqa: F403

__all__ = [*nk_format.__all__, *nk_files.__all__, *codec_identity.__all__, *rate.__all__]
