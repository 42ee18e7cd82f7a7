"""The ``.nk`` header's optional ``level``: written only for variable-rate codecs, checked like every field."""

from __future__ import annotations

import json
import struct
import zlib

import pytest
import torch

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


# --------------------------------------------------------------------------------------- through the CLI

VBR = ["--codec", "mbt2018-mean-vbr", "--tiny"]


@pytest.fixture(scope="module")
def chelsea() -> str:
    from neckkit.samples import sample_images

    return str(sample_images()[1])


def _compress(host, tmp_path, chelsea: str, *args: str):  # noqa: ANN001, ANN202
    from typer.testing import CliRunner

    from conftest import invoke

    target = tmp_path / f"c{len(list(tmp_path.iterdir()))}.nk"
    result = invoke(CliRunner(), host, "compress", chelsea, *args, "-o", str(target), "--json")
    return result, target


def test_compress_at_levels_records_the_level_and_codes_differently(host, tmp_path, chelsea) -> None:  # noqa: ANN001
    from neckkit.bitstream.container import read_nk

    sizes = {}
    for level in ("0", "2.5", "7"):
        result, target = _compress(host, tmp_path, chelsea, *VBR, "--level", level)
        assert result.exit_code == 0, result.output
        row = json.loads(result.stdout)["images"][0]
        nk = read_nk(target)
        assert nk.level == float(level) == row["level"]
        sizes[level] = nk.payload_bytes
    assert len(set(sizes.values())) > 1, sizes  # a random tiny codec: bytes differ, in no set order
    result, target = _compress(host, tmp_path, chelsea, *VBR)  # no --level: the top level, recorded
    assert result.exit_code == 0 and read_nk(target).level == 7


def test_decompress_codes_at_the_files_level(host, tmp_path, chelsea) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from conftest import invoke
    from neckkit.bitstream.container import read_nk
    from neckkit.bitstream.decoding import decode_latent
    from neckkit.bitstream.images import load_image
    from neckkit.bitstream.padding import pad_to_multiple
    from neckkit.host.options import build_component
    from neckkit.interfaces.codec import at_level

    result, target = _compress(host, tmp_path, chelsea, *VBR, "--level", "2")
    assert result.exit_code == 0, result.output
    result = invoke(CliRunner(), host, "decompress", str(target), "-o", str(tmp_path / "x.png"))
    assert result.exit_code == 0 and (tmp_path / "x.png").stat().st_size > 0, result.output
    _, codec = build_component(host, "codec", "mbt2018-mean-vbr", {"tiny": True})
    padded, _ = pad_to_multiple(load_image(chelsea), codec.pad_multiple)
    with torch.no_grad(), at_level(codec, 2):
        expected = codec.analyze(padded).y_hat
    nk = read_nk(target)
    assert torch.equal(decode_latent(codec, nk), expected)
    assert codec.level == 7  # decoding put the default back
    with torch.no_grad(), at_level(codec, 7):  # the same streams read at another level: not the same latent
        assert codec.compress(padded).strings != [[stream] for stream in nk.streams]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--level", "8"], "--level 8: mbt2018-mean-vbr-tiny has rate levels 0..7; level 8 is outside them"),
        (["--level", "-1"], "level -1 is outside them"),
        (["--codec", "mbt2018-mean", "--tiny", "--level", "2"], "--level 2: codec 'mbt2018-mean' is fixed-rate"),
    ],
)
def test_a_level_the_codec_does_not_have_is_one_line(host, tmp_path, chelsea, args, message) -> None:  # noqa: ANN001
    codec_args = [] if "--codec" in args else VBR
    result, target = _compress(host, tmp_path, chelsea, *codec_args, *args)
    assert result.exit_code != 0 and not target.exists()
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and message in errors[0], result.stderr


def test_a_file_and_a_codec_that_disagree_on_levels_are_refused(host, tmp_path, chelsea) -> None:  # noqa: ANN001
    import dataclasses

    from neckkit.bitstream.container import read_nk, write_nk
    from neckkit.bitstream.decoding import decode_latent
    from neckkit.host.options import build_component

    result, target = _compress(host, tmp_path, chelsea, *VBR, "--level", "3")
    assert result.exit_code == 0, result.output
    nk = read_nk(target)
    _, vbr = build_component(host, "codec", "mbt2018-mean-vbr", {"tiny": True})
    with pytest.raises(NeckkitError, match=r"^f\.nk: the file names no rate level, which variable-rate codec "):
        decode_latent(vbr, dataclasses.replace(nk, level=None), source="f.nk")
    with pytest.raises(NeckkitError, match=r"^f\.nk: mbt2018-mean-vbr-tiny has rate levels 0\.\.7; level 9 is outside"):
        decode_latent(vbr, dataclasses.replace(nk, level=9), source="f.nk")
    result, fixed = _compress(host, tmp_path, chelsea, "--codec", "mbt2018-mean", "--tiny")
    _, codec = build_component(host, "codec", "mbt2018-mean", {"tiny": True})
    with pytest.raises(NeckkitError, match=r"the file names rate level 2, but .* is a fixed-rate codec$"):
        decode_latent(codec, dataclasses.replace(read_nk(fixed), level=2), source="g.nk")
    before = target.read_bytes()
    write_nk(target, dataclasses.replace(nk, level=None))  # the CLI refuses it too, in one line
    from typer.testing import CliRunner

    from conftest import invoke

    result = invoke(CliRunner(), host, "decompress", str(target), "--latent-only", "-o", str(tmp_path / "y.pt"))
    assert result.exit_code != 0 and "names no rate level" in result.stderr
    assert before != target.read_bytes()
