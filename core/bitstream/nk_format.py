"""The ``.nk`` byte format and :class:`NkFile`: one compressed image, as a phone sends it.

A ``.nk`` file holds the entropy-coded byte strings of one image together with everything needed
to decode them with the right codec: the codec's registered name and options, a fingerprint of its
weights, the original image size and the padding added before coding, and the latent shape the
codec's decoder starts from.

Byte layout (all integers little-endian)::

    offset        size  type        field
    ------------  ----  ----------  ------------------------------------------------------------
    0             8     bytes       magic b"\\x89NKT\\r\\n\\x1a\\n"
    8             2     u16         format version (1)
    10            4     u32         header length H (1 .. 65536)
    14            H     UTF-8 JSON  header object (below)
    14+H          2     u16         stream count N (0 .. 64)
    16+H          4     u32         length L0 of stream 0 (0 .. 2**32-1)
    20+H          L0    bytes       stream 0 (entropy-coded bytes, e.g. y)
    ...                             u32 length and bytes of streams 1 .. N-1, in order
    end-4         4     u32         CRC-32 (zlib.crc32) of every byte before it

The header is one JSON object with exactly these keys (written compact, keys sorted, ASCII)::

    codec          str    registered codec name, e.g. "elic" (lower-case words, '-' and '.')
    fingerprint    str    16 lower-case hex digits: neckkit.loading.weights.fingerprint of the codec's
                          weights without its entropy-coder tables (codec_fingerprint), or with
                          them when they are a file's and differ from a rebuild (stream_fingerprint)
    options        object codec factory options, e.g. {"quality": 3}; may be {}. JSON values
                          only: null, booleans, 64-bit integers, finite numbers, strings,
                          lists, objects; nested at most 8 levels
    original_size  [int, int]            image height, width before padding (1 .. 1048576)
    padding        [int, int, int, int]  left, right, top, bottom pixels added (0 .. 1048576)
    shape          [int, ...]            LatentPayload.shape (0 .. 8 ints, each 0 .. 2**31-1)

and, only in files of a variable-rate codec (:class:`~neckkit.interfaces.codec.VariableRateCodec`), one more::

    level          number  the rate level the streams were coded at (0 .. 65535; an integer for a trained
                           level, a fraction between two trained levels where the codec allows it)

A file without ``level`` is a fixed-rate codec's; files written before the key existed read unchanged,
and a fixed-rate codec's files are byte-identical to what earlier versions wrote.

Payload bytes are the sum of the stream lengths; file bytes are the whole file. Reading checks,
in order: not empty, the magic, the version, every length against the bytes that remain (before
slicing anything: "truncated"), the header length (1 .. 65536) and stream count (0 .. 64) against
their limits ("unreasonable"), no bytes after the CRC ("trailing garbage"), the CRC ("corrupted"),
then the header's JSON and every field's type and range ("header not valid"). Each problem is one
:class:`~neckkit.errors.NeckkitError` line; nothing is allocated from a length that was not checked,
and data over 1 GiB are refused (:func:`~neckkit.bitstream.nk_files.read_nk` refuses such a file unread).
This module imports torch only inside :meth:`NkFile.to_payload`.
"""

from __future__ import annotations

import json
import numbers
import operator
import re
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from neckkit.bitstream.padding import Padding
from neckkit.errors import NeckkitError

if TYPE_CHECKING:
    from neckkit.interfaces.codec import LatentPayload

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_FILE_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_LEVEL",
    "MAX_OPTION_DEPTH",
    "MAX_OPTION_INT",
    "MAX_SHAPE_DIMS",
    "MAX_SHAPE_VALUE",
    "MAX_SIDE",
    "MAX_STREAMS",
    "MAX_STREAM_BYTES",
    "NkFile",
    "decode_nk",
    "encode_nk",
]

MAGIC = b"\x89NKT\r\n\x1a\n"  # PNG-style: the high byte and CR LF / SUB catch text-mode mangling
FORMAT_VERSION = 1

MAX_HEADER_BYTES = 1 << 16
MAX_STREAMS = 64
MAX_STREAM_BYTES = (1 << 32) - 1
MAX_FILE_BYTES = 1 << 30  # a compressed image is kilobytes; refuse to read anything near this
MAX_SIDE = 1 << 20  # image height / width and padding
MAX_SHAPE_DIMS = 8
MAX_SHAPE_VALUE = (1 << 31) - 1
MAX_OPTION_DEPTH = 8
MAX_OPTION_INT = 1 << 63
MAX_LEVEL = (1 << 16) - 1

_PREFIX = struct.Struct("<8sHI")  # magic, version, header length
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_HEADER_KEYS = frozenset({"codec", "fingerprint", "options", "original_size", "padding", "shape"})
_OPTIONAL_KEYS = frozenset({"level"})
# Same rule as neckkit.host.registry.NAME_PATTERN (not imported: that module pulls in pydantic).
_NAME_PATTERN = re.compile(r"^[a-z0-9]+(?:[-.][a-z0-9]+)*$")
_MAX_NAME_CHARS = 128
_FINGERPRINT_PATTERN = re.compile(r"^[0-9a-f]{16}$")


def _one_line(text: str) -> str:
    """``text`` with control and other non-printable characters escaped, so messages stay one line."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _short(value: Any, limit: int = 60) -> str:
    text = _one_line(repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ints(value: Any, count: int | None, lo: int, hi: int, what: str, expected: str) -> tuple[int, ...]:
    """``value`` as a tuple of ints in ``lo..hi`` (``count`` of them if given), else a NeckkitError."""
    problem = f"{what} must be {expected}, got {_short(value)}"
    if not isinstance(value, (list, tuple)) or (count is not None and len(value) != count):
        raise NeckkitError(problem)
    result = []
    for item in value:
        if isinstance(item, bool):
            raise NeckkitError(problem)
        try:
            number = operator.index(item)
        except TypeError:
            raise NeckkitError(problem) from None
        if not lo <= number <= hi:
            raise NeckkitError(problem)
        result.append(number)
    return tuple(result)


def _json_value(value: Any, where: str, depth: int) -> Any:
    """A validated deep copy of one option value (JSON types only, finite, bounded)."""
    if depth > MAX_OPTION_DEPTH:
        raise NeckkitError(f"{where} is nested deeper than {MAX_OPTION_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if not -MAX_OPTION_INT <= value < MAX_OPTION_INT:
            raise NeckkitError(f"{where} is an integer outside the 64-bit range")
        return int(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise NeckkitError(f"{where} is {value}, which JSON cannot hold")
        return float(value)
    if isinstance(value, list):
        return [_json_value(item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value)]
    if isinstance(value, dict):
        copy = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NeckkitError(f"{where} has a non-string key {_short(key)}")
            copy[key] = _json_value(item, f"{where}[{_short(key, 30)}]", depth + 1)
        return copy
    raise NeckkitError(f"{where} is a {type(value).__name__}; options must be JSON values")


def _level(value: Any) -> int | float | None:
    """A validated rate level: None, or a finite real number in 0..MAX_LEVEL (an int when it is whole)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise NeckkitError(f"level must be a number in 0..{MAX_LEVEL}, got {_short(value)}")
    number = float(value)
    if not 0 <= number <= MAX_LEVEL:  # also False for NaN
        raise NeckkitError(f"level must be a number in 0..{MAX_LEVEL}, got {_short(value)}")
    return int(number) if number.is_integer() else number


def _options(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise NeckkitError(f"options must be a JSON object (dict), got {_short(value)}")
    return _json_value(value, "options", 1)


@dataclass(frozen=True, kw_only=True)
class NkFile:
    """The contents of one ``.nk`` file: one image's entropy-coded streams and how to decode them.

    Every field is validated (and normalised: lists become tuples, options a deep copy) on
    construction; an invalid value raises :class:`NeckkitError`.
    """

    codec: str
    fingerprint: str
    original_size: tuple[int, int]  # (height, width) before padding
    padding: Padding
    shape: tuple[int, ...]  # LatentPayload.shape
    streams: tuple[bytes, ...]  # one entropy-coded byte string per stream, for this one image
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    level: int | float | None = None  # the rate level of a variable-rate codec's file; None: fixed-rate

    def __post_init__(self) -> None:
        codec = self.codec
        if not isinstance(codec, str) or len(codec) > _MAX_NAME_CHARS or not _NAME_PATTERN.match(codec):
            raise NeckkitError(
                f"codec name {_short(codec)} is not a component name (lower-case letters, digits, '-' and '.')"
            )
        if not isinstance(self.fingerprint, str) or not _FINGERPRINT_PATTERN.match(self.fingerprint):
            raise NeckkitError(f"fingerprint must be 16 lower-case hex digits, got {_short(self.fingerprint)}")
        size = _ints(self.original_size, 2, 1, MAX_SIDE, "original_size", f"[height, width] in 1..{MAX_SIDE}")
        padding = _ints(self.padding, 4, 0, MAX_SIDE, "padding", f"[left, right, top, bottom] in 0..{MAX_SIDE}")
        shape = _ints(self.shape, None, 0, MAX_SHAPE_VALUE, "shape", f"a list of integers in 0..{MAX_SHAPE_VALUE}")
        if len(shape) > MAX_SHAPE_DIMS:
            raise NeckkitError(f"shape has {len(shape)} dimensions; at most {MAX_SHAPE_DIMS} are allowed")
        if not isinstance(self.streams, (list, tuple)):
            raise NeckkitError(f"streams must be a list of byte strings, got {type(self.streams).__name__}")
        if len(self.streams) > MAX_STREAMS:
            raise NeckkitError(f"{len(self.streams)} streams; a .nk file holds at most {MAX_STREAMS}")
        streams = []
        for index, stream in enumerate(self.streams):
            if not isinstance(stream, (bytes, bytearray, memoryview)):
                raise NeckkitError(f"stream {index} is a {type(stream).__name__}, not bytes")
            stream = bytes(stream)
            if len(stream) > MAX_STREAM_BYTES:
                raise NeckkitError(f"stream {index} has {len(stream)} bytes; at most {MAX_STREAM_BYTES} fit")
            streams.append(stream)
        options = _options(self.options)
        object.__setattr__(self, "level", _level(self.level))
        object.__setattr__(self, "original_size", size)
        object.__setattr__(self, "padding", Padding(*padding))
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "streams", tuple(streams))
        object.__setattr__(self, "options", options)
        header = self._header_json()
        if len(header) > MAX_HEADER_BYTES:
            raise NeckkitError(f"header is {len(header)} bytes, more than {MAX_HEADER_BYTES}: keep codec options small")

    def _header_json(self) -> bytes:
        header = {
            "codec": self.codec,
            "fingerprint": self.fingerprint,
            "options": self.options,
            "original_size": list(self.original_size),
            "padding": list(self.padding),
            "shape": list(self.shape),
        }
        if self.level is not None:
            header["level"] = self.level
        return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode(
            "ascii"
        )

    @classmethod
    def from_payload(
        cls,
        payload: LatentPayload,
        *,
        codec: str,
        fingerprint: str,
        original_size: tuple[int, int],
        padding: Sequence[int],
        options: Mapping[str, Any] | None = None,
        level: float | None = None,
    ) -> NkFile:
        """The file for a :class:`~neckkit.interfaces.codec.LatentPayload` of exactly one image."""
        strings = payload.strings
        for index, stream in enumerate(strings):
            if len(stream) != 1:
                raise NeckkitError(
                    f"a .nk file holds one image, but stream {index} of the payload has batch size {len(stream)}"
                )
        return cls(
            codec=codec,
            fingerprint=fingerprint,
            original_size=original_size,
            padding=padding,
            shape=tuple(payload.shape),
            streams=tuple(stream[0] for stream in strings),
            options=dict(options or {}),
            level=level,
        )

    def to_payload(self) -> LatentPayload:
        """The streams as a batch-of-one :class:`~neckkit.interfaces.codec.LatentPayload` (imports torch)."""
        from neckkit.interfaces.codec import LatentPayload

        return LatentPayload(strings=[[stream] for stream in self.streams], shape=tuple(self.shape))

    @property
    def payload_bytes(self) -> int:
        """Entropy-coded bytes only: the sum of the stream lengths."""
        return sum(len(stream) for stream in self.streams)

    @property
    def file_bytes(self) -> int:
        """Bytes of the whole ``.nk`` file (what :func:`encode_nk` returns), container included."""
        return (
            _PREFIX.size
            + len(self._header_json())
            + _U16.size
            + sum(_U32.size + len(stream) for stream in self.streams)
            + _U32.size
        )


def encode_nk(nk: NkFile) -> bytes:
    """The ``.nk`` bytes of ``nk`` (layout in the module docstring)."""
    header = nk._header_json()
    parts = [_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)), header, _U16.pack(len(nk.streams))]
    for stream in nk.streams:
        parts += [_U32.pack(len(stream)), stream]
    body = b"".join(parts)
    return body + _U32.pack(zlib.crc32(body))


class _Reader:
    """Reads fields from ``data`` front to back, checking each length against what remains."""

    def __init__(self, data: bytes, fail: Callable[[str], NoReturn]) -> None:
        self.data = data
        self.pos = 0
        self.fail = fail

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def skip(self, size: int, what: str) -> int:
        """Step over ``size`` bytes; return where they start."""
        if size > self.remaining:
            self.fail(
                f"truncated: {what} needs {size} bytes at offset {self.pos}, "
                f"but only {self.remaining} of the file's {len(self.data)} bytes remain"
            )
        start = self.pos
        self.pos += size
        return start

    def unpack(self, fmt: struct.Struct, what: str) -> int:
        start = self.skip(fmt.size, what)
        return fmt.unpack_from(self.data, start)[0]


def _parse_header(raw: bytes, fail: Callable[[str], NoReturn]) -> dict[str, Any]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise ValueError(f"duplicate key {_short(key, 30)}")
            result[key] = value
        return result

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    problem = None
    try:
        text = raw.decode("utf-8")
        header = json.loads(text, object_pairs_hook=no_duplicates, parse_constant=no_constants)
    except UnicodeDecodeError:
        problem = "it is not UTF-8 text"
    except RecursionError:
        problem = "JSON nested too deeply"
    except ValueError as error:  # JSONDecodeError, duplicate keys, NaN, integers too long to parse
        problem = _one_line(str(error))[:120]
    if problem is not None:
        fail(f"header not valid: {problem}")
    if not isinstance(header, dict):
        fail(f"header not valid: expected a JSON object, got {type(header).__name__}")
    missing = sorted(_HEADER_KEYS - header.keys())
    unknown = sorted(header.keys() - _HEADER_KEYS - _OPTIONAL_KEYS)
    if missing or unknown:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(_short(key, 30) for key in unknown[:3])}"] if unknown else []
        )
        fail(f"header not valid: {'; '.join(problems)}")
    return header


def decode_nk(data: bytes | bytearray | memoryview, source: str | None = None) -> NkFile:
    """Parse ``.nk`` bytes; any problem is one :class:`NeckkitError` line naming ``source`` if given."""
    data = bytes(data)
    prefix = f"{_one_line(source)}: " if source else ""

    def fail(problem: str) -> NoReturn:
        raise NeckkitError(prefix + problem)

    if not data:
        fail("empty file (0 bytes), not a neckkit .nk file")
    if not data[: len(MAGIC)] == MAGIC[: min(len(data), len(MAGIC))]:
        fail("not a neckkit .nk file (wrong magic bytes)")
    if len(data) > MAX_FILE_BYTES:
        fail(f"{len(data)} bytes is unreasonably large for a .nk file (at most {MAX_FILE_BYTES})")
    reader = _Reader(data, fail)
    reader.skip(len(MAGIC), "the magic number")
    version = reader.unpack(_U16, "the format version")
    if version != FORMAT_VERSION:
        fail(f"unsupported .nk format version {version} (this neckkit reads version {FORMAT_VERSION})")
    header_size = reader.unpack(_U32, "the header length")
    header_start = reader.skip(header_size, "the header")
    if header_size == 0 or header_size > MAX_HEADER_BYTES:
        fail(f"unreasonable header length {header_size} (expected 1..{MAX_HEADER_BYTES})")
    count = reader.unpack(_U16, "the stream count")
    if count > MAX_STREAMS:
        fail(f"unreasonable stream count {count} (at most {MAX_STREAMS})")
    spans = []
    for index in range(count):
        size = reader.unpack(_U32, f"the length of stream {index}")
        spans.append((reader.skip(size, f"stream {index}"), size))
    body_end = reader.pos
    reader.unpack(_U32, "the CRC-32")
    if reader.remaining:
        fail(f"{reader.remaining} bytes of trailing garbage after the end of the .nk data")
    stored = _U32.unpack_from(data, body_end)[0]
    actual = zlib.crc32(memoryview(data)[:body_end])
    if stored != actual:
        fail(f"corrupted: CRC-32 mismatch (stored {stored:08x}, computed {actual:08x})")
    header = _parse_header(data[header_start : header_start + header_size], fail)
    try:
        return NkFile(
            codec=header["codec"],
            fingerprint=header["fingerprint"],
            original_size=header["original_size"],
            padding=header["padding"],
            shape=header["shape"],
            streams=tuple(data[start : start + size] for start, size in spans),
            options=header["options"],
            level=header.get("level"),
        )
    except NeckkitError as error:
        problem = str(error)
    fail(f"header not valid: {problem}")
