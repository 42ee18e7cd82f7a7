"""The ``.nk`` header's optional ``level``: written only for variable-rate codecs, checked like every field."""

from __future__ import annotations

import json
import struct
import zlib

import pytest

from neckkit.bitstream.nk_format import MAX_LEVEL, NkFile, decode_nk, encode_nk
from neckkit.errors import NeckkitError

BASE = dict(codec="mbt2018-mean-vbr", fingerprint="0123456789abcdef", original_size=(300, 451),
            padding=(30, 31, 42, 42), shape=(6, 8), streams=(b"abc", b"zz"), options={"tiny": True})


def _with_header(data: bytes, change: dict) -> bytes:
    """``data`` (a valid .nk) with its header JSON updated by ``change`` and the lengths and CRC redone."""
    (size,) = struct.unpack_from("<I", data, 10)
    header = json.loads(data[14 : 14 + size])
    header.update(change)
    raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    body = data[:10] + struct.pack("<I", len(raw)) + raw + data[14 + size : -4]
    return body + struct.pack("<I", zlib.crc32(body))


def test_a_file_without_a_level_is_byte_identical_to_the_old_format() -> None:
    data = encode_nk(NkFile(**BASE))
    assert b'"level"' not in data
    # The header as format version 1 wrote it before the key existed: exactly these six keys.
    (size,) = struct.unpack_from("<I", data, 10)
    assert sorted(json.loads(data[14 : 14 + size])) == ["codec", "fingerprint", "options", "original_size",
                                                         "padding", "shape"]
    assert decode_nk(data).level is None


@pytest.mark.parametrize(("level", "stored"), [(0, 0), (3, 3), (3.0, 3), (2.5, 2.5), (MAX_LEVEL, MAX_LEVEL)])
def test_the_level_survives_the_file(level: float, stored: float) -> None:
    data = encode_nk(NkFile(**BASE, level=level))
    nk = decode_nk(data)
    assert nk.level == stored and type(nk.level) is type(stored)
    assert encode_nk(nk) == data
    assert f'"level":{stored}'.encode() in data
    assert nk.file_bytes == len(data)


@pytest.mark.parametrize("level", [-1, MAX_LEVEL + 1, float("nan"), float("inf"), True, "3", [3]])
def test_an_invalid_level_is_refused_on_construction(level: object) -> None:
    with pytest.raises(NeckkitError, match=r"^level must be a number in 0\.\.65535, got "):
        NkFile(**BASE, level=level)


@pytest.mark.parametrize("level", [-1, 65536, 1e300, "2", True, None, {"a": 1}])
def test_an_invalid_level_in_a_file_is_one_header_line(level: object) -> None:
    data = _with_header(encode_nk(NkFile(**BASE, level=2)), {"level": level})
    if level is None:  # JSON null: the same as no level
        assert decode_nk(data).level is None
        return
    with pytest.raises(NeckkitError) as error:
        decode_nk(data, source="x.nk")
    message = str(error.value)
    assert message.startswith("x.nk: header not valid: level must be a number in 0..65535") and "\n" not in message


def test_other_unknown_keys_are_still_refused() -> None:
    data = _with_header(encode_nk(NkFile(**BASE)), {"levels": 3})
    with pytest.raises(NeckkitError, match=r"header not valid: unknown 'levels'$"):
        decode_nk(data)
