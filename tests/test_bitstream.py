"""The .nk container: round trips, atomic writes, fuzzing of the reader, codec checks and bpp."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neckkit.bitstream import container as bitstream
from neckkit.bitstream import nk_format
from neckkit.bitstream.container import (
    FORMAT_VERSION,
    MAGIC,
    NkFile,
    bpp,
    check_codec,
    decode_nk,
    encode_nk,
    read_nk,
    write_nk,
)
from neckkit.bitstream.padding import Padding
from neckkit.errors import NeckkitError

FP = "0123456789abcdef"
# Hypothesis costs a few ms per example here, so each fuzz test pairs ~1000 shrinkable examples with
# thousands of cheap seeded-random cases (the sum keeps the whole file well under a minute).
FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SEEDED_CASES = 5000


def sample(**changes) -> NkFile:
    fields = dict(
        codec="elic",
        fingerprint=FP,
        original_size=(30, 50),
        padding=(7, 7, 17, 17),
        shape=(1, 1),
        streams=[b"\x01\x02\x03\x04", b"", b"zz"],
        options={"quality": 3},
    )
    fields.update(changes)
    return NkFile(**fields)


SMALL = encode_nk(sample())


def assert_one_line_error(data: bytes, source: str | None = None) -> str:
    """decode_nk(data) raises NeckkitError (nothing else) with a one-line message; return it."""
    with pytest.raises(NeckkitError) as caught:
        decode_nk(data, source=source)
    message = str(caught.value)
    assert message and len(message.splitlines()) == 1, message
    return message


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def craft(header: bytes, streams: list[bytes] = (), version: int = FORMAT_VERSION) -> bytes:
    """A structurally valid file (right lengths and CRC) around arbitrary header bytes."""
    body = MAGIC + struct.pack("<HI", version, len(header)) + header + struct.pack("<H", len(streams))
    for stream in streams:
        body += struct.pack("<I", len(stream)) + stream
    return with_crc(body)


def good_header(**changes) -> dict:
    header = {
        "codec": "elic",
        "fingerprint": FP,
        "options": {},
        "original_size": [30, 50],
        "padding": [0, 2, 1, 1],
        "shape": [2, 4],
    }
    header.update(changes)
    return header


def json_bytes(header) -> bytes:
    return json.dumps(header).encode()


# --------------------------------------------------------------------------------------- strategies

names = st.from_regex(r"[a-z0-9]{1,6}(?:[-.][a-z0-9]{1,5}){0,3}", fullmatch=True)
fingerprints = st.text(alphabet="0123456789abcdef", min_size=16, max_size=16)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_leaves,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
options = st.dictionaries(st.text(max_size=10), json_values, max_size=4)
sides = st.integers(1, bitstream.MAX_SIDE)
pads = st.integers(0, bitstream.MAX_SIDE)
nk_files = st.builds(
    NkFile,
    codec=names,
    fingerprint=fingerprints,
    original_size=st.tuples(sides, sides),
    padding=st.tuples(pads, pads, pads, pads),
    shape=st.lists(st.integers(0, bitstream.MAX_SHAPE_VALUE), max_size=bitstream.MAX_SHAPE_DIMS).map(tuple),
    streams=st.lists(st.binary(max_size=64), max_size=4),
    options=options,
)


# --------------------------------------------------------------------------------------- round trip


@settings(max_examples=300, deadline=None)
@given(nk=nk_files)
def test_round_trip(nk: NkFile) -> None:
    data = encode_nk(nk)
    back = decode_nk(data)
    assert back == nk
    assert back.options == nk.options and back.streams == nk.streams
    assert isinstance(back.padding, Padding)
    assert nk.file_bytes == len(data)
    assert nk.payload_bytes == sum(len(stream) for stream in nk.streams)
    assert encode_nk(back) == data  # canonical: re-encoding gives the same bytes


def test_layout_matches_docstring() -> None:
    nk = sample()
    data = encode_nk(nk)
    assert data[:8] == MAGIC == b"\x89NKT\r\n\x1a\n"
    version, header_size = struct.unpack_from("<HI", data, 8)
    assert version == 1
    header = json.loads(data[14 : 14 + header_size])
    assert header == {
        "codec": "elic",
        "fingerprint": FP,
        "options": {"quality": 3},
        "original_size": [30, 50],
        "padding": [7, 7, 17, 17],
        "shape": [1, 1],
    }
    pos = 14 + header_size
    (count,) = struct.unpack_from("<H", data, pos)
    pos += 2
    streams = []
    for _ in range(count):
        (size,) = struct.unpack_from("<I", data, pos)
        streams.append(data[pos + 4 : pos + 4 + size])
        pos += 4 + size
    assert tuple(streams) == nk.streams
    assert struct.unpack_from("<I", data, pos)[0] == zlib.crc32(data[:pos])
    assert pos + 4 == len(data) == nk.file_bytes
    assert nk.payload_bytes == 6


def test_payload_conversion() -> None:
    from neckkit.interfaces.codec import LatentPayload

    payload = LatentPayload(strings=[[b"yy"], [b"z"]], shape=(3, 5))
    nk = NkFile.from_payload(payload, codec="tic", fingerprint=FP, original_size=(40, 60), padding=(1, 2, 3, 4))
    assert nk.streams == (b"yy", b"z") and nk.shape == (3, 5) and nk.options == {}
    assert nk.padding == Padding(1, 2, 3, 4) and nk.padding.top == 3
    back = decode_nk(encode_nk(nk)).to_payload()
    assert back == payload and back.num_bytes == nk.payload_bytes == 3
    with pytest.raises(NeckkitError, match="batch size 2"):
        NkFile.from_payload(
            LatentPayload(strings=[[b"a", b"b"]], shape=(1, 1)),
            codec="tic",
            fingerprint=FP,
            original_size=(4, 4),
            padding=(0, 0, 0, 0),
        )


def test_padding_is_the_padding_helpers_type() -> None:
    nk = sample(padding=(1, 2, 3, 4))
    back = decode_nk(encode_nk(nk)).padding
    assert isinstance(back, Padding) and back == Padding(left=1, right=2, top=3, bottom=4)


def test_name_rule_matches_registry() -> None:
    from neckkit.host.registry import NAME_PATTERN

    assert nk_format._NAME_PATTERN.pattern == NAME_PATTERN.pattern


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"codec": "ELIC"}, "component name"),
        ({"codec": ""}, "component name"),
        ({"fingerprint": "0123"}, "16 lower-case hex"),
        ({"fingerprint": FP.upper()}, "16 lower-case hex"),
        ({"original_size": (0, 5)}, "original_size"),
        ({"original_size": (True, 5)}, "original_size"),
        ({"original_size": (5,)}, "original_size"),
        ({"padding": (-1, 0, 0, 0)}, "padding"),
        ({"shape": (1.5,)}, "shape"),
        ({"shape": (1,) * 9}, "dimensions"),
        ({"streams": ["text"]}, "not bytes"),
        ({"streams": [b""] * 65}, "at most 64"),
        ({"options": {"q": float("nan")}}, "JSON cannot hold"),
        ({"options": {"q": (1, 2)}}, "tuple"),
        ({"options": {1: 2}}, "non-string key"),
        ({"options": {"q": 2**70}}, "64-bit"),
        ({"options": {"q": "x" * 70000}}, "keep codec options small"),
        ({"options": []}, "JSON object"),
    ],
)
def test_invalid_fields_refused(changes: dict, match: str) -> None:
    with pytest.raises(NeckkitError, match=match):
        sample(**changes)


def test_fields_normalised_and_options_copied() -> None:
    opts = {"a": [1, {"b": 2}]}
    nk = sample(streams=[bytearray(b"ab"), memoryview(b"c")], original_size=[3, 4], shape=[5], options=opts)
    opts["a"].append(3)
    assert nk.streams == (b"ab", b"c") and nk.original_size == (3, 4) and nk.shape == (5,)
    assert nk.options == {"a": [1, {"b": 2}]}
    assert hash(nk) == hash(sample(streams=[b"ab", b"c"], original_size=(3, 4), shape=(5,)))


# --------------------------------------------------------------------------------------- files


def test_write_and_read(tmp_path: Path) -> None:
    path = tmp_path / "photo.nk"
    size = write_nk(path, sample())
    assert size == path.stat().st_size == sample().file_bytes
    assert read_nk(path) == sample()
    write_nk(path, sample(codec="tic"))  # overwrite
    assert read_nk(path).codec == "tic"
    assert sorted(os.listdir(tmp_path)) == ["photo.nk"]


def test_write_uses_umask_permissions(tmp_path: Path) -> None:
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    old = os.umask(0o022)
    try:
        write_nk(tmp_path / "a.nk", sample())
    finally:
        os.umask(old)
    assert (tmp_path / "a.nk").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("broken", ["replace", "write", "fsync"])
def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: str) -> None:
    path = tmp_path / "photo.nk"
    write_nk(path, sample())
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if broken == "replace":
        monkeypatch.setattr(os, "replace", boom)
    elif broken == "fsync":
        monkeypatch.setattr(os, "fsync", boom)
    else:
        real_fdopen = os.fdopen

        class HalfWriter:
            def __init__(self, fd, mode):
                self.handle = real_fdopen(fd, mode)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.handle.close()

            def write(self, data):
                self.handle.write(data[: len(data) // 2])
                self.handle.flush()
                raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fdopen", HalfWriter)
    with pytest.raises(NeckkitError, match=r"cannot write .*photo\.nk: No space left on device"):
        write_nk(path, sample(codec="tic", streams=[b"x" * 1000]))
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["photo.nk"]


def test_write_interrupted_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "photo.nk"

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_nk(path, sample())
    assert os.listdir(tmp_path) == []


def test_write_into_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(NeckkitError, match="cannot write .*missing"):
        write_nk(tmp_path / "missing" / "a.nk", sample())


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "photo.nk"
    with pytest.raises(NeckkitError, match=r"photo\.nk does not exist"):
        read_nk(path)
    with pytest.raises(NeckkitError, match="is a folder, not a .nk file"):
        read_nk(tmp_path)
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe.nk")
        with pytest.raises(NeckkitError, match=r"pipe\.nk is not a regular file"):
            read_nk(tmp_path / "pipe.nk")  # must not block waiting for a writer
    if Path("/dev/zero").exists():
        with pytest.raises(NeckkitError, match="is not a regular file"):
            read_nk("/dev/zero")  # must not read forever
    cases = {
        b"": "empty file",
        b"\x89PNG\r\n\x1a\n" + bytes(40): "not a neckkit .nk file",
        SMALL[:-1]: "truncated",
        SMALL + b"\0": "trailing garbage",
        SMALL[:-1] + bytes([SMALL[-1] ^ 1]): "corrupted",
        MAGIC + struct.pack("<H", 2) + SMALL[10:]: "unsupported .nk format version 2",
        craft(b"{not json"): "header not valid",
    }
    for data, expected in cases.items():
        path.write_bytes(data)
        with pytest.raises(NeckkitError) as caught:
            read_nk(path)
        message = str(caught.value)
        assert message.startswith(f"{path}: ") and expected in message and "\n" not in message, message


def test_source_with_newline_stays_one_line() -> None:
    message = assert_one_line_error(b"", source="evil\nname.nk")
    assert "evil\\nname.nk" in message


# --------------------------------------------------------------------------------------- reader errors


def test_specific_messages() -> None:
    assert "empty file" in assert_one_line_error(b"")
    assert "wrong magic" in assert_one_line_error(b"GIF89a" + bytes(30))
    assert "truncated" in assert_one_line_error(MAGIC[:5])
    assert "unsupported .nk format version 0" in assert_one_line_error(MAGIC + bytes(30))
    assert "corrupted" in assert_one_line_error(SMALL[:20] + b"X" + SMALL[21:])
    assert "5 bytes of trailing garbage" in assert_one_line_error(SMALL + b"hello")
    too_many = MAGIC + struct.pack("<HI", 1, 2) + b"{}" + struct.pack("<H", 65) + bytes(65 * 4 + 4)
    assert "unreasonable stream count 65" in assert_one_line_error(too_many)
    assert "unreasonable header length 0" in assert_one_line_error(craft(b""))
    big_header = b" " * (bitstream.MAX_HEADER_BYTES + 1)
    assert "unreasonable header length" in assert_one_line_error(craft(big_header))


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (b"\xff\xfe", "not UTF-8"),
        (b"[" * 5000 + b"]" * 5000, "header not valid"),
        (b"[1, 2]", "expected a JSON object"),
        (b'{"codec": "a", "codec": "b"}', "duplicate key"),
        (json_bytes(good_header(options={"q": 1})).replace(b"1}", b"NaN}"), "NaN"),
        (json_bytes(good_header(options={"q": 1})).replace(b"1}", b"1e999}"), "JSON cannot hold"),
        (json_bytes(good_header(options={"q": 1})).replace(b"1}", b"9" * 5000 + b"}"), "header not valid"),
        (json_bytes({k: v for k, v in good_header().items() if k != "shape"}), "missing shape"),
        (json_bytes(good_header(extra=1)), "unknown 'extra'"),
        (json_bytes(good_header(codec=5)), "component name"),
        (json_bytes(good_header(fingerprint="xyz")), "fingerprint"),
        (json_bytes(good_header(original_size=[30, True])), "original_size"),
        (json_bytes(good_header(original_size=[30.0, 50])), "original_size"),
        (json_bytes(good_header(original_size=[0, 50])), "original_size"),
        (json_bytes(good_header(original_size=[2**40, 50])), "original_size"),
        (json_bytes(good_header(padding=[1, 2, 3])), "padding"),
        (json_bytes(good_header(padding=[1, 2, 3, -4])), "padding"),
        (json_bytes(good_header(shape="ab")), "shape"),
        (json_bytes(good_header(shape=[2**31])), "shape"),
        (json_bytes(good_header(options=[])), "options"),
        (json_bytes(good_header(options={"a": {"b": [[[[[[[[1]]]]]]]]}})), "nested deeper"),
    ],
)
def test_bad_headers_refused(header: bytes, match: str) -> None:
    message = assert_one_line_error(craft(header, [b"abc"]))
    assert "header not valid" in message and match in message, message


def test_crafted_good_header_reads() -> None:
    nk = decode_nk(craft(json_bytes(good_header(options={"tiny": True})), [b"abc", b""]))
    assert nk.options == {"tiny": True} and nk.streams == (b"abc", b"")


def test_truncated_at_every_length() -> None:
    for data in (SMALL, encode_nk(sample(streams=[])), encode_nk(sample(streams=[b"q" * 300, b"r"]))):
        for end in range(len(data)):
            message = assert_one_line_error(data[:end])
            assert ("truncated" in message) or ("empty" in message) or ("unreasonable header length" in message)


def test_every_single_bit_flip_is_refused() -> None:
    data = SMALL
    assert len(data) < 200
    for position in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            assert_one_line_error(bytes(flipped))


def length_field_offsets(data: bytes) -> dict[str, tuple[int, str]]:
    """Offsets and struct formats of every length/count field of a valid file."""
    (header_size,) = struct.unpack_from("<I", data, 10)
    fields = {"header length": (10, "<I"), "stream count": (14 + header_size, "<H")}
    pos = 16 + header_size
    (count,) = struct.unpack_from("<H", data, 14 + header_size)
    for index in range(count):
        fields[f"stream {index} length"] = (pos, "<I")
        pos += 4 + struct.unpack_from("<I", data, pos)[0]
    return fields


@pytest.mark.parametrize("fix_crc", [False, True])
def test_huge_length_fields(fix_crc: bool) -> None:
    for name, (offset, fmt) in length_field_offsets(SMALL).items():
        huge = 0xFFFFFFFF if fmt == "<I" else 0xFFFF
        data = bytearray(SMALL)
        struct.pack_into(fmt, data, offset, huge)
        if fix_crc:
            data = bytearray(with_crc(bytes(data[:-4])))
        message = assert_one_line_error(bytes(data))
        assert "truncated" in message or "unreasonable" in message, (name, message)


def set_length_field(which: int, value: int, fix_crc: bool) -> bytes:
    fields = list(length_field_offsets(SMALL).values())
    offset, fmt = fields[which % len(fields)]
    data = bytearray(SMALL)
    struct.pack_into(fmt, data, offset, value % (1 << (8 * struct.calcsize(fmt))))
    return with_crc(bytes(data[:-4])) if fix_crc else bytes(data)


@settings(max_examples=500, deadline=None)
@given(which=st.integers(0, 4), value=st.integers(0, 0xFFFFFFFF), fix_crc=st.booleans())
def test_random_length_fields(which: int, value: int, fix_crc: bool) -> None:
    data = set_length_field(which, value, fix_crc)
    if data != SMALL:
        assert_one_line_error(data)


def test_random_length_fields_seeded() -> None:
    rng = random.Random(1)
    for _ in range(SEEDED_CASES):
        value = rng.choice([rng.getrandbits(32), rng.getrandbits(8), 0xFFFFFFFF, 0x80000000 + rng.getrandbits(4)])
        data = set_length_field(rng.randrange(5), value, rng.random() < 0.5)
        if data != SMALL:
            assert_one_line_error(data)


def test_huge_header_length_fails_fast_without_allocating() -> None:
    data = MAGIC + struct.pack("<HI", 1, 0xFFFFFFFF) + bytes(26)
    assert len(data) == 40
    tracemalloc.start()
    started = time.perf_counter()
    try:
        message = assert_one_line_error(data)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "truncated" in message and "4294967295" in message
    assert elapsed < 0.5 and peak < 1 << 20, (elapsed, peak)


def test_many_huge_stream_lengths_fail_fast() -> None:
    header = json_bytes(good_header())
    body = MAGIC + struct.pack("<HI", 1, len(header)) + header + struct.pack("<H", 64) + b"\xff" * 300
    tracemalloc.start()
    try:
        assert "truncated" in assert_one_line_error(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


# --------------------------------------------------------------------------------------- fuzzing


@FUZZ
@given(data=st.binary(max_size=200))
def test_random_bytes(data: bytes) -> None:
    assert_one_line_error(data)


def test_random_bytes_seeded() -> None:
    rng = random.Random(0)
    for _ in range(SEEDED_CASES):
        data = rng.randbytes(rng.randrange(300))
        assert_one_line_error(data)
        after_magic = MAGIC + struct.pack("<H", rng.choice([1, 1, 1, 0, 2, 0xFFFF])) + data
        assert_one_line_error(after_magic)
        assert_one_line_error(with_crc(after_magic))


@FUZZ
@given(tail=st.binary(max_size=200), version=st.integers(0, 3))
def test_random_bytes_after_magic(tail: bytes, version: int) -> None:
    data = MAGIC + struct.pack("<H", version) + tail
    assert_one_line_error(data)
    assert_one_line_error(with_crc(data))


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(min_size=1, max_size=100))
def test_appended_garbage(garbage: bytes) -> None:
    assert "trailing garbage" in assert_one_line_error(SMALL + garbage)


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(SMALL)), st.integers(0, 8), st.binary(max_size=8)), min_size=1, max_size=4
    ),
    fix_crc=st.booleans(),
)
def test_random_edits(edits: list[tuple[int, int, bytes]], fix_crc: bool) -> None:
    """Splice random bytes into a valid file; with fix_crc the reader must catch it by structure/header."""
    check_edited(SMALL, edits, fix_crc)


def check_edited(original: bytes, edits: list[tuple[int, int, bytes]], fix_crc: bool) -> None:
    data = bytearray(original)
    for position, cut, insert in edits:
        data[position : position + cut] = insert
    data = bytes(data)
    if fix_crc and len(data) >= 4:
        data = with_crc(data[:-4])
    try:
        nk = decode_nk(data)
    except NeckkitError as error:
        assert len(str(error).splitlines()) == 1
    else:  # a splice that kept the file valid (e.g. only inside a stream, CRC fixed) must decode consistently
        assert decode_nk(encode_nk(nk)) == nk


def test_random_edits_seeded() -> None:
    rng = random.Random(2)
    for _ in range(SEEDED_CASES):
        edits = [
            (rng.randrange(len(SMALL) + 1), rng.randrange(9), rng.randbytes(rng.randrange(9)))
            for _ in range(rng.randrange(1, 5))
        ]
        check_edited(SMALL, edits, rng.random() < 0.5)


@settings(max_examples=500, deadline=None)
@given(header=json_values | st.dictionaries(st.sampled_from(sorted(good_header())), json_values, max_size=6))
def test_random_json_headers(header) -> None:
    data = craft(json_bytes(header), [b"s"])
    try:
        decode_nk(data)
    except NeckkitError as error:
        assert len(str(error).splitlines()) == 1


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(sorted(good_header())), value=json_values)
def test_one_wrong_header_field(key: str, value) -> None:
    data = craft(json_bytes(good_header(**{key: value})), [b"s"])
    try:
        nk = decode_nk(data)
    except NeckkitError as error:
        assert len(str(error).splitlines()) == 1 and "header not valid" in str(error)
    else:
        assert nk.codec and nk.fingerprint


# --------------------------------------------------------------------------------------- codec check, bpp


def test_check_codec() -> None:
    nk = sample(codec="tic", fingerprint="abcd" * 4)
    check_codec(nk, "tic", "abcd" * 4)
    with pytest.raises(NeckkitError) as caught:
        check_codec(nk, "elic", "abcd" * 4, source="photo.nk")
    assert str(caught.value) == "photo.nk was compressed with codec 'tic', not 'elic'"
    with pytest.raises(NeckkitError) as caught:
        check_codec(nk, "tic", "ef01" * 4)
    assert str(caught.value) == (
        "the .nk file: weights fingerprint abcdabcdabcdabcd differs from the loaded codec's ef01ef01ef01ef01; "
        "pass the same --codec-weights / --quality (or --neck) used to compress (a checkpoint's stored "
        "entropy tables count as part of the weights)"
    )


def test_codec_fingerprint_ignores_coder_tables() -> None:
    import torch

    from neckkit.loading.weights import fingerprint

    def make(table_size: int):
        module = torch.nn.Module()
        module.conv = torch.nn.Linear(2, 2)
        module.register_buffer("_quantized_cdf", torch.zeros(table_size))
        with torch.no_grad():
            module.conv.weight.fill_(0.5)
            module.conv.bias.zero_()
        return module

    a, b = make(3), make(7)
    assert fingerprint(a) != fingerprint(b)
    assert bitstream.codec_fingerprint(a) == bitstream.codec_fingerprint(b)
    assert len(bitstream.codec_fingerprint(a)) == 16
    sample(fingerprint=bitstream.codec_fingerprint(a))  # a valid .nk fingerprint


def test_bpp_by_hand() -> None:
    # 30x50 original (padded to 64x64): payload 4+0+2 = 6 bytes.
    nk = sample()
    header = b'{"codec":"elic","fingerprint":"0123456789abcdef","options":{"quality":3},"original_size":[30,50],"padding":[7,7,17,17],"shape":[1,1]}'
    file_bytes = 8 + 2 + 4 + len(header) + 2 + (4 + 4) + (4 + 0) + (4 + 2) + 4
    assert file_bytes == len(SMALL) == 171
    result = bpp(nk)
    assert result.payload_bytes == 6 and result.file_bytes == 171 and result.pixels == 1500
    assert result.payload_bpp == pytest.approx(6 * 8 / 1500) == pytest.approx(0.032)
    assert result.file_bpp == pytest.approx(171 * 8 / 1500) == pytest.approx(0.912)


@pytest.mark.parametrize("module", ["container", "nk_format", "nk_files", "codec_identity", "rate"])
def test_import_is_cheap(module: str) -> None:
    code = (
        f"import sys, neckkit.bitstream.{module}, neckkit.bitstream; "
        "print(sorted(m for m in ('torch', 'pydantic', 'numpy') if m in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_container_and_package_reexport_the_split_modules_names() -> None:
    import neckkit.bitstream
    from neckkit.bitstream import codec_identity, nk_files, rate

    for module in (nk_format, nk_files, codec_identity, rate):
        for name in module.__all__:
            assert getattr(bitstream, name) is getattr(module, name), name
            assert getattr(neckkit.bitstream, name) is getattr(module, name), name
    assert sorted(bitstream.__all__) == sorted(neckkit.bitstream.__all__)
    assert bitstream._NAME_PATTERN is nk_format._NAME_PATTERN  # private names older code reads
