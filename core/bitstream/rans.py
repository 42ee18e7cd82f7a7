"""A rANS decoder that cannot read outside its stream: CompressAI's ``RansDecoder``, bounds-checked.

CompressAI's C++ ``RansDecoder`` (``decode_with_indexes``, ``set_stream`` / ``decode_stream``) trusts
its input: it reads 32-bit words past the end of a stream that is shorter than the symbols it is asked
to decode, and its escape ("bypass") loop reads as many words as the stream's nibbles ask for, so a
crafted stream makes it read arbitrary memory and crash. :class:`BoundedRansDecoder` is the same
decoder (Rans64, 16-bit CDF precision, 4-bit bypass coding, the same symbol search and dequantisation
of escapes), compiled with numba, with three differences that only damaged streams can see:

- every word read is checked against the stream's length; a read past the end is an error, not a
  read of whatever lies behind the buffer (a valid stream never needs one: rANS decoding reads
  exactly the words the encoder wrote);
- an escape longer than 8 nibbles (a value beyond 32 bits, which CompressAI's encoder never writes)
  is an error, so the bypass loop does at most 8 reads per symbol;
- the start state must be one the encoder can flush (``2**31 <= x < 2**63``); after
  :meth:`~BoundedRansDecoder.decode_with_indexes` the stream must be used up and the state back at
  the encoder's initial state, or the stream is damaged.

The work is therefore ``O(symbols + stream words)`` and no read leaves the buffer. Valid streams
decode to exactly CompressAI's symbols (the codecs' round-trip and parity tests check it), and the
kernel releases the GIL. Tables are validated once (strictly increasing, 0 to 2**16, as
``pmf_to_quantized_cdf`` writes them), so the binary search equals CompressAI's linear one.

:func:`bound_entropy_decoding` installs the decoder into a model's CompressAI entropy models and into
the modules that decode with ``RansDecoder`` directly (CompressAI's autoregressive and raster-scan
code, and the codec's own modules); :func:`neckkit.bitstream.decoding.decode_latent` calls it
before every decode.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from neckkit.errors import NeckkitError

__all__ = [
    "WORK_MARGIN",
    "BoundedRansDecoder",
    "CdfTables",
    "RansStreamError",
    "bound_entropy_decoding",
    "decode_symbols",
]

PRECISION = 16  # CompressAI's CDF precision (bits)
BYPASS_PRECISION = 4  # bits per escape nibble
MAX_BYPASS_NIBBLES = 8  # an escape value has at most 32 bits
WORK_MARGIN = 2.0  # a stream may declare this many times the symbols its bytes can carry at best
_RANS64_L = 1 << 31  # lower bound of the normalised state
_MAX_STATE = 1 << 63

_OK, _END, _BAD_START, _BAD_INDEX, _LONG_ESCAPE = 0, 1, 2, 3, 4
_PROBLEMS = {
    _END: "the stream ends before all {total} symbols are decoded (at symbol {done})",
    _BAD_START: "the stream does not start with a valid rANS state",
    _BAD_INDEX: "symbol {done} asks for CDF table row outside the table",
    _LONG_ESCAPE: "symbol {done} has an escape code longer than 32 bits",
}


class RansStreamError(NeckkitError, ValueError):
    """A damaged rANS stream (a :class:`NeckkitError`, and a ``ValueError`` as CompressAI's checks raise)."""


@njit(cache=True, nogil=True)
def _read_word(words: np.ndarray, pos: int, state: int) -> tuple[int, int, bool]:
    """Renormalise ``state`` with the next word if it fell below 2**31; False when the stream is used up."""
    if state < _RANS64_L:
        if pos >= words.shape[0]:
            return state, pos, False
        state = (state << 32) | np.int64(words[pos])
        pos += 1
    return state, pos, True


@njit(cache=True, nogil=True)
def _decode(words: np.ndarray, pos: int, state: int, indexes: np.ndarray, cdfs: np.ndarray,
            sizes: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> tuple[int, int, int, int]:
    """Decode ``len(indexes)`` symbols into ``out``; return (status, symbols done, pos, state)."""
    mask = (1 << PRECISION) - 1
    rows = cdfs.shape[0]
    for i in range(indexes.shape[0]):
        row = indexes[i]
        if row < 0 or row >= rows:
            return _BAD_INDEX, i, pos, state
        size = sizes[row]
        max_value = size - 2
        cum = state & mask
        lo, hi = 0, size - 1  # the last s with cdfs[row, s] <= cum: tables rise strictly from 0 to 2**16
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if cdfs[row, mid] <= cum:
                lo = mid
            else:
                hi = mid
        s = lo
        start = np.int64(cdfs[row, s])
        freq = np.int64(cdfs[row, s + 1]) - start
        state = freq * (state >> PRECISION) + cum - start
        state, pos, ok = _read_word(words, pos, state)
        if not ok:
            return _END, i, pos, state
        value = s
        if value == max_value:  # escape: the value follows in 4-bit groups
            val = state & 15
            state, pos, ok = _read_word(words, pos, state >> BYPASS_PRECISION)
            if not ok:
                return _END, i, pos, state
            count = val
            while val == 15:
                val = state & 15
                state, pos, ok = _read_word(words, pos, state >> BYPASS_PRECISION)
                if not ok:
                    return _END, i, pos, state
                count += val
                if count > MAX_BYPASS_NIBBLES:
                    return _LONG_ESCAPE, i, pos, state
            if count > MAX_BYPASS_NIBBLES:
                return _LONG_ESCAPE, i, pos, state
            raw = 0
            for j in range(count):
                val = state & 15
                state, pos, ok = _read_word(words, pos, state >> BYPASS_PRECISION)
                if not ok:
                    return _END, i, pos, state
                raw |= val << (j * BYPASS_PRECISION)
            if raw >= 1 << 31:  # CompressAI keeps it in an int32
                raw -= 1 << 32
            value = raw >> 1
            if raw & 1:
                value = -value - 1
            else:
                value += max_value
        result = (value + offsets[row]) & 0xFFFFFFFF  # int32 wrap-around, as in C++
        out[i] = result - (1 << 32) if result >= 1 << 31 else result
    return _OK, indexes.shape[0], pos, state


def row_min_bits(cdfs: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """[rows] float64: the fewest bits one symbol of each CDF row costs, ``log2(2**16 / its top frequency)``
    (``inf`` for a row without a symbol of positive frequency)."""
    cdfs = np.asarray(cdfs, dtype=np.int64)  # [rows, width]
    inside = np.arange(cdfs.shape[1] - 1)[None, :] < (np.asarray(sizes).reshape(-1, 1) - 1)  # [rows, width - 1]
    top = np.where(inside, np.diff(cdfs, axis=1), 0).max(axis=1, initial=0)  # [rows]
    with np.errstate(divide="ignore"):
        return np.where(top > 0, np.log2((1 << PRECISION) / np.maximum(top, 1)), np.inf)


def _words(encoded: bytes | bytearray | memoryview) -> np.ndarray:
    """The stream as little-endian 32-bit words (a trailing partial word is zero-filled)."""
    data = bytes(encoded)
    if len(data) % 4:
        data += bytes(4 - len(data) % 4)
    return np.frombuffer(data, dtype="<u4")


@dataclass(frozen=True)
class CdfTables:
    """Quantised CDF rows (padded to one width), their lengths and offsets, checked once for the decoder."""

    cdfs: np.ndarray  # [rows, width] int32
    sizes: np.ndarray  # [rows] int32
    offsets: np.ndarray  # [rows] int32
    min_bits: np.ndarray  # [rows] float64: the fewest bits one symbol of the row costs, log2(2**16 / top freq)

    @classmethod
    def from_lists(cls, cdfs: Sequence[Sequence[int]], sizes: Sequence[int], offsets: Sequence[int]) -> CdfTables:
        """Tables as CompressAI's decoder takes them (lists, or anything numpy reads), validated."""
        rows = len(cdfs)
        if len(sizes) != rows or len(offsets) != rows:
            raise NeckkitError(f"entropy tables disagree: {rows} CDF rows, {len(sizes)} lengths, {len(offsets)} offsets")
        size_array = np.asarray(sizes, dtype=np.int64).reshape(-1)
        width = int(max((len(row) for row in cdfs), default=0))
        table = np.zeros((rows, max(width, 2)), dtype=np.int64)
        for index, row in enumerate(cdfs):
            table[index, : len(row)] = np.asarray(row, dtype=np.int64)
        return cls.from_arrays(table, size_array, np.asarray(offsets, dtype=np.int64).reshape(-1))

    @classmethod
    def from_arrays(cls, cdfs: np.ndarray, sizes: np.ndarray, offsets: np.ndarray) -> CdfTables:
        """Tables from arrays ([rows, width], [rows], [rows]), validated as the bounded search needs."""
        cdfs, sizes, offsets = np.asarray(cdfs), np.asarray(sizes).reshape(-1), np.asarray(offsets).reshape(-1)
        if cdfs.ndim != 2 or sizes.shape[0] != cdfs.shape[0] or offsets.shape[0] != cdfs.shape[0]:
            raise NeckkitError(f"entropy tables disagree: CDF {list(cdfs.shape)}, lengths {list(sizes.shape)}, "
                               f"offsets {list(offsets.shape)}")
        if cdfs.shape[0] and (sizes.min() < 2 or sizes.max() > cdfs.shape[1]):
            raise NeckkitError(f"entropy tables broken: CDF lengths outside 2..{cdfs.shape[1]}")
        columns = np.arange(cdfs.shape[1])
        inside = columns[None, :] < sizes[:, None]  # [rows, width]
        rising = np.diff(cdfs.astype(np.int64), axis=1) > 0
        last = cdfs[np.arange(cdfs.shape[0]), sizes - 1] if cdfs.shape[0] else np.zeros(0)
        if cdfs.shape[0] and (
            (cdfs[:, 0] != 0).any() or (last != 1 << PRECISION).any() or (~rising & inside[:, 1:]).any()
        ):
            raise NeckkitError("entropy tables broken: a CDF row does not rise strictly from 0 to 2**16")
        min_bits = row_min_bits(cdfs, sizes)
        return cls(np.ascontiguousarray(cdfs, dtype=np.int32), np.ascontiguousarray(sizes, dtype=np.int32),
                   np.ascontiguousarray(offsets, dtype=np.int32), min_bits)


def _fail(status: int, done: int, total: int) -> RansStreamError:
    return RansStreamError(_PROBLEMS[status].format(done=done, total=total))


def decode_symbols(encoded: bytes, indexes: np.ndarray, tables: CdfTables) -> np.ndarray:
    """All symbols of one stream ([N] int32, CompressAI's ``decode_with_indexes``), or a RansStreamError.

    Before decoding, the stream must be long enough for its symbols: each costs at least its row's
    ``min_bits``, and a stream of ``S`` bytes holds at most ``8 S + 64`` bits of them (the encoder's
    state starts at 2**31 and ends below 2**63); :data:`WORK_MARGIN` times that is allowed.
    """
    words = _words(encoded)
    indexes = np.ascontiguousarray(indexes, dtype=np.int32).reshape(-1)
    rows = tables.cdfs.shape[0]
    if indexes.shape[0] and (indexes.min() < 0 or indexes.max() >= rows):
        raise _fail(_BAD_INDEX, int(np.argmax((indexes < 0) | (indexes >= rows))), indexes.shape[0])
    needed = float(tables.min_bits[indexes].sum()) if indexes.shape[0] else 0.0
    if needed > WORK_MARGIN * (8 * len(encoded) + 64):
        raise RansStreamError(f"a {len(encoded)}-byte stream cannot hold its {indexes.shape[0]} symbols "
                              f"(at least {math.ceil(needed / 8 / WORK_MARGIN)} bytes are needed)")
    out = np.empty(indexes.shape[0], dtype=np.int32)
    if words.shape[0] < 2:
        raise _fail(_END, 0, indexes.shape[0])
    state = int(words[0]) | int(words[1]) << 32
    if not _RANS64_L <= state < _MAX_STATE:
        raise _fail(_BAD_START, 0, indexes.shape[0])
    status, done, pos, state = _decode(words, 2, state, indexes, tables.cdfs, tables.sizes, tables.offsets, out)
    if status != _OK:
        raise _fail(status, done, indexes.shape[0])
    if pos != words.shape[0] or state != _RANS64_L:
        raise RansStreamError(f"the stream does not end where its {indexes.shape[0]} symbols end "
                              f"({4 * (words.shape[0] - pos)} bytes left over)")
    return out


class BoundedRansDecoder:
    """Drop-in for ``compressai.ans.RansDecoder``: same methods, same symbols, no reads outside the stream."""

    def __init__(self) -> None:
        self._words = np.zeros(0, dtype="<u4")
        self._pos = 0
        self._state = 0
        self._tables_key: tuple[Any, ...] | None = None
        self._tables: CdfTables | None = None

    def _tables_for(self, cdfs: Any, sizes: Any, offsets: Any) -> CdfTables:
        # CompressAI's autoregressive loops pass the same lists on every call: convert them once.
        key = (cdfs, sizes, offsets)
        if self._tables_key is not None and all(a is b for a, b in zip(self._tables_key, key, strict=True)):
            assert self._tables is not None
            return self._tables
        self._tables = CdfTables.from_lists(cdfs, sizes, offsets)
        self._tables_key = key
        return self._tables

    def decode_with_indexes(self, encoded: bytes, indexes: Sequence[int], cdfs: Sequence[Sequence[int]],
                            cdfs_sizes: Sequence[int], offsets: Sequence[int]) -> list[int]:
        """Decode one whole stream (CompressAI's signature)."""
        tables = self._tables_for(cdfs, cdfs_sizes, offsets)
        return decode_symbols(encoded, np.asarray(indexes, dtype=np.int32), tables).tolist()

    def set_stream(self, encoded: bytes) -> None:
        """Start decoding ``encoded`` piece by piece with :meth:`decode_stream`."""
        self._words = _words(encoded)
        self._pos, self._state = 2, 0
        if self._words.shape[0] >= 2:
            self._state = int(self._words[0]) | int(self._words[1]) << 32

    def decode_stream(self, indexes: Sequence[int], cdfs: Sequence[Sequence[int]], cdfs_sizes: Sequence[int],
                      offsets: Sequence[int]) -> list[int]:
        """The next ``len(indexes)`` symbols of the stream given to :meth:`set_stream`."""
        tables = self._tables_for(cdfs, cdfs_sizes, offsets)
        index_array = np.ascontiguousarray(np.asarray(indexes, dtype=np.int32).reshape(-1))
        if self._words.shape[0] < 2:
            raise _fail(_END, 0, index_array.shape[0])
        if not _RANS64_L <= self._state < _MAX_STATE:
            raise _fail(_BAD_START, 0, index_array.shape[0])
        out = np.empty(index_array.shape[0], dtype=np.int32)
        status, done, self._pos, self._state = _decode(self._words, self._pos, self._state, index_array,
                                                       tables.cdfs, tables.sizes, tables.offsets, out)
        if status != _OK:
            raise _fail(status, done, index_array.shape[0])
        return out.tolist()


_UNBOUNDED: tuple[type, ...] = ()


def _unbounded_classes() -> tuple[type, ...]:
    """CompressAI's own decoder class (cached), the thing to replace."""
    global _UNBOUNDED
    if not _UNBOUNDED:
        from compressai import ans

        original = ans.__dict__.get("_neckkit_unbounded_RansDecoder", ans.RansDecoder)
        ans._neckkit_unbounded_RansDecoder = original  # type: ignore[attr-defined]
        _UNBOUNDED = (original,)
    return _UNBOUNDED


_BOUND_MODULES: set[str] = set()  # modules whose globals were already rebound


def _bound_module_globals(module_names: set[str]) -> None:
    unbounded = _unbounded_classes()
    for name in module_names - _BOUND_MODULES:
        module = sys.modules.get(name)
        if module is None:
            continue
        _BOUND_MODULES.add(name)
        namespace = getattr(module, "__dict__", {})
        for attribute, value in list(namespace.items()):
            if isinstance(value, type) and value in unbounded:
                namespace[attribute] = BoundedRansDecoder


def bound_entropy_decoding(model: Any) -> None:
    """Make every rANS decode in ``model`` (an ``nn.Module``) go through :class:`BoundedRansDecoder`.

    Replaces the decoder of each CompressAI entropy model (``entropy_coder._decoder``) and the name
    ``RansDecoder`` in CompressAI's modules and in the modules that define the model's classes, where
    autoregressive codecs create their own decoders. Idempotent and cheap to call before every decode.
    """
    unbounded = _unbounded_classes()
    modules = {name for name in sys.modules if name == "compressai" or name.startswith("compressai.")}
    for module in model.modules() if hasattr(model, "modules") else ():
        modules.add(type(module).__module__)
        coder = module.__dict__.get("entropy_coder")
        decoder = getattr(coder, "_decoder", None)
        if decoder is not None and isinstance(decoder, unbounded):
            coder._decoder = BoundedRansDecoder()
    for cls in type(model).__mro__:
        modules.add(cls.__module__)
    _bound_module_globals(modules)
