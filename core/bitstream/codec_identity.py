"""Codec identity: which codec, with which weights, a ``.nk`` file may be decoded with.

A ``.nk`` header names the codec and a fingerprint of its weights (without the entropy-coder
tables, which a codec can rebuild, unless it codes with a file's stored tables: see
:func:`stream_fingerprint`); decoding with another codec or other weights is refused
before any entropy decoding runs, since it would silently give a wrong latent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from neckkit.bitstream.nk_format import NkFile, _one_line, _short
from neckkit.errors import NeckkitError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["check_codec", "codec_fingerprint", "stream_fingerprint"]


def codec_fingerprint(module: nn.Module) -> str:
    """The fingerprint stored in ``.nk`` files: the codec's weights without entropy-coder tables."""
    from neckkit.loading.codec_weights import CODER_TABLES
    from neckkit.loading.weights import fingerprint

    return fingerprint(module, exclude=CODER_TABLES)


def stream_fingerprint(module: nn.Module) -> str:
    """The fingerprint a ``.nk`` header carries: which weights *and* which entropy tables code the streams.

    A codec whose tables are those CompressAI builds from its weights (rebuilt, or stored but equal
    to a rebuild, as in neckkit's own checkpoints) gets :func:`codec_fingerprint`, as before. A codec
    coding with a file's stored tables that differ from a rebuild (the authors' CompressAI 1.2.0 builds
    CDFs that differ from 1.2.8's in a few entries) gets the fingerprint of its weights *with* those
    tables, so a stream coded with one kind of table is refused, not misdecoded, by the other.
    """
    from neckkit.loading.codec_weights import stored_tables_differ
    from neckkit.loading.weights import fingerprint

    return fingerprint(module) if stored_tables_differ(module) else codec_fingerprint(module)


def check_codec(nk: NkFile, name: str, fingerprint: str, *, source: str | None = None) -> None:
    """Refuse to decode ``nk`` with a codec other than the one (name and weights) that made it."""
    what = _one_line(source) if source else "the .nk file"
    if nk.codec != name:
        raise NeckkitError(f"{what} was compressed with codec '{nk.codec}', not {_short(name)}")
    if nk.fingerprint != fingerprint:
        raise NeckkitError(
            f"{what}: weights fingerprint {nk.fingerprint} differs from the loaded codec's {_one_line(str(fingerprint))[:64]}; "
            "pass the same --codec-weights / --quality (or --neck) used to compress (a checkpoint's stored "
            "entropy tables count as part of the weights)"
        )
