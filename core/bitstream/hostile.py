"""Hostile ``.nk`` files made from a valid one, to fuzz a codec's entropy decoder, not the container reader.

Flipping bits of a ``.nk`` file only tests the CRC. Every file :func:`crafted_files` yields is a valid
container (right lengths, right CRC, every header field in range) that keeps the valid file's codec,
options and fingerprint unless its kind says otherwise, so it passes the codec identity check and
reaches ``decode_latent`` with damaged streams, a declared image the streams cannot hold, or a shape
that does not match the image. :mod:`neckkit.bitstream.fuzz_worker` decodes such files in a child process,
where a crash or a hang is a result; docs/bitstreams.md shows how to fuzz your own codec.

Geometry kinds read the valid file's grid: the padded image (``original_size`` + ``padding``) and, when
the last two ``shape`` entries divide it by one factor (CompressAI hyper-latents: the padded image / 64),
that factor. A *consistent* resize keeps the valid file's padding, declares a padded image that is a
multiple of ``gcd(padded height, padded width)`` (so of the codec's pad multiple too) and scales the
shape with it, as the codec itself would write it. Pure Python; hypothesis is imported only by
:func:`hostile_files`.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from neckkit.bitstream.nk_format import (
    MAX_LEVEL,
    MAX_SHAPE_DIMS,
    MAX_SHAPE_VALUE,
    MAX_SIDE,
    MAX_STREAMS,
    NkFile,
    encode_nk,
)

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["GEOMETRY_KINDS", "KINDS", "LEVEL_KINDS", "STREAM_KINDS", "craft", "crafted_files", "hostile_files"]

Mutation = Callable[[NkFile, random.Random], NkFile]
_LENGTHS = (1, 2, 3, 4, 5, 7, 8, 9, 16, 64, 256, 1024, 4096)  # random-stream lengths around rANS word sizes
_LARGE_SIDES = (1024, 2048, 4096, 8192, 16384)
_HUGE_SIDES = (16384 + 64, 32768, 65536, 1 << 18, MAX_SIDE)


# --------------------------------------------------------------------------------------- helpers


def _with(nk: NkFile, **changes: Any) -> NkFile:
    return dataclasses.replace(nk, **changes)


def _targets(count: int, rng: random.Random) -> list[int]:
    """Which of ``count`` streams (or shape entries) a mutation touches: one of them, or all."""
    if not count:
        return []
    return list(range(count)) if rng.random() < 0.5 else [rng.randrange(count)]


def _each_stream(change: Callable[[bytes, random.Random], bytes]) -> Mutation:
    def mutate(nk: NkFile, rng: random.Random) -> NkFile:
        streams = list(nk.streams)
        for index in _targets(len(streams), rng):
            streams[index] = change(streams[index], rng)
        return _with(nk, streams=streams)

    return mutate


def _padded(nk: NkFile) -> tuple[int, int]:
    left, right, top, bottom = nk.padding
    return nk.original_size[0] + top + bottom, nk.original_size[1] + left + right


def _shape_factor(nk: NkFile) -> int | None:
    """Pixels per entry of the last two shape entries, when they divide the padded image by one factor."""
    height, width = _padded(nk)
    if len(nk.shape) < 2 or min(nk.shape[-2:]) < 1:
        return None
    rows, cols = nk.shape[-2:]
    if height % rows or width % cols or height // rows != width // cols:
        return None
    return height // rows


def _unit(nk: NkFile) -> tuple[int, int]:
    """The steps (height, width) in which a consistent resize may change the padded image."""
    height, width = _padded(nk)
    factor = _shape_factor(nk)
    if factor is None:
        return height, width  # shape semantics unknown: only whole multiples of the valid image
    unit = math.lcm(math.gcd(height, width), factor)
    return unit, unit


def _resized(nk: NkFile, rows: int, cols: int, *, zero_padding: bool = False) -> NkFile:
    """``nk`` declaring a padded image of ``rows`` x ``cols`` units, shape scaled to match, streams kept."""
    unit_h, unit_w = _unit(nk)
    height, width = rows * unit_h, cols * unit_w
    factor = _shape_factor(nk)
    shape = list(nk.shape)
    if factor is not None:
        shape[-2:] = [height // factor, width // factor]
    elif len(shape) >= 2:
        valid_h, valid_w = _padded(nk)
        shape[-2:] = [shape[-2] * height // valid_h, shape[-1] * width // valid_w]
    left, right, top, bottom = nk.padding
    if zero_padding or top + bottom >= height or left + right >= width:  # an earlier kind's huge padding
        left, right, top, bottom = 0, 0, 0, 0
    return _with(
        nk,
        # within the container's limits whatever kinds came before (a huge padding makes a huge unit)
        original_size=(min(height - top - bottom, MAX_SIDE), min(width - left - right, MAX_SIDE)),
        padding=(left, right, top, bottom),
        shape=tuple(min(dim, MAX_SHAPE_VALUE) for dim in shape),
    )


def _units_for(side: int, unit: int) -> int:
    return max(1, min(side, MAX_SIDE) // unit)


# --------------------------------------------------------------------------------------- stream kinds


def _truncate_to(length: int) -> Mutation:
    return _each_stream(lambda stream, rng: stream[:length])


def _random_bytes(stream: bytes, rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice((*_LENGTHS, len(stream), len(stream) + 1)))


def _filled(value: int) -> Mutation:
    def fill(stream: bytes, rng: random.Random) -> bytes:
        return bytes([value]) * rng.choice((len(stream), len(stream), *_LENGTHS))

    return _each_stream(fill)


def _bit_flips(stream: bytes, rng: random.Random) -> bytes:
    data = bytearray(stream or b"\0")
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def _lengths_swapped(nk: NkFile, rng: random.Random) -> NkFile:
    """The same payload bytes cut at other places: two streams' lengths swapped (or shifted)."""
    lengths = [len(stream) for stream in nk.streams]
    if len(lengths) < 2:
        return _with(nk, streams=[stream + stream[:1] for stream in nk.streams])
    first, second = rng.sample(range(len(lengths)), 2)
    if lengths[first] == lengths[second]:
        moved = rng.randint(1, max(1, lengths[first]))
        lengths[first] += moved
        lengths[second] = max(0, lengths[second] - moved)
    else:
        lengths[first], lengths[second] = lengths[second], lengths[first]
    payload, streams, start = b"".join(nk.streams), [], 0
    for length in lengths:
        streams.append(payload[start : start + length])
        start += length
    return _with(nk, streams=streams)


def _streams_swapped(nk: NkFile, rng: random.Random) -> NkFile:
    streams = list(nk.streams)
    if len(streams) < 2:
        return _with(nk, streams=streams[::-1] + [b""])
    first, second = rng.sample(range(len(streams)), 2)
    streams[first], streams[second] = streams[second], streams[first]
    return _with(nk, streams=streams)


def _extra_stream(nk: NkFile, rng: random.Random) -> NkFile:
    extra = rng.choice([b"", rng.randbytes(rng.choice(_LENGTHS)), *(nk.streams or (b"\0",))])
    streams = list(nk.streams)[: MAX_STREAMS - 1]
    streams.insert(rng.randint(0, len(streams)), extra)
    return _with(nk, streams=streams)


def _missing_stream(nk: NkFile, rng: random.Random) -> NkFile:
    streams = list(nk.streams)
    if streams:
        del streams[rng.randrange(len(streams))]
    return _with(nk, streams=streams if rng.random() < 0.8 else [])


STREAM_KINDS: dict[str, Mutation] = {
    "truncate-0": _truncate_to(0),
    "truncate-1": _truncate_to(1),
    "truncate-2": _truncate_to(2),
    "truncate-3": _truncate_to(3),
    "truncate-random": _each_stream(lambda stream, rng: stream[: rng.randrange(len(stream))] if stream else stream),
    "empty-streams": lambda nk, rng: _with(nk, streams=[b""] * len(nk.streams)),
    "random-bytes": _each_stream(_random_bytes),
    "all-ff": _filled(0xFF),
    "all-00": _filled(0x00),
    "bit-flips": _each_stream(_bit_flips),
    "lengths-swapped": _lengths_swapped,
    "streams-swapped": _streams_swapped,
    "extra-stream": _extra_stream,
    "missing-stream": _missing_stream,
}


# --------------------------------------------------------------------------------------- geometry kinds


def _larger_image(nk: NkFile, rng: random.Random, sides: Sequence[int] = _LARGE_SIDES) -> NkFile:
    """A larger declared image with a consistent shape (1024 .. 16384 pixels a side, or beyond)."""
    unit_h, unit_w = _unit(nk)
    height, width = _padded(nk)
    # Doubling stays within the container's limit: a second kind applied after this one may double again.
    rows = _units_for(rng.choice(sides) if rng.random() < 0.8 else 2 * height, unit_h)
    cols = _units_for(rng.choice(sides) if rng.random() < 0.8 else 2 * width, unit_w)
    return _resized(nk, rows, cols, zero_padding=rng.random() < 0.5)


def _smaller_image(nk: NkFile, rng: random.Random) -> NkFile:
    unit_h, unit_w = _unit(nk)
    height, width = _padded(nk)
    rows, cols = max(1, height // unit_h), max(1, width // unit_w)
    return _resized(nk, rng.randint(1, max(1, rows - 1)), rng.randint(1, max(1, cols - 1)),
                    zero_padding=rng.random() < 0.5)


def _tiny_image(nk: NkFile, rng: random.Random) -> NkFile:
    """A 1 x 1 .. 3 x 3 original image: padded to one unit (consistent when the unit is the pad multiple)."""
    if rng.random() < 0.3:  # only original_size shrinks: padding and shape no longer fit
        return _with(nk, original_size=(rng.randint(1, 3), rng.randint(1, 3)))
    unit_h, unit_w = _unit(nk)
    size = (min(rng.randint(1, 3), unit_h), min(rng.randint(1, 3), unit_w))  # a unit may be 1 or 2 pixels
    resized = _resized(nk, 1, 1, zero_padding=True)
    extra_h, extra_w = unit_h - size[0], unit_w - size[1]
    padding = (extra_w // 2, extra_w - extra_w // 2, extra_h // 2, extra_h - extra_h // 2)  # as compute_padding
    return _with(resized, original_size=size, padding=padding)


def _zero_shape(nk: NkFile, rng: random.Random) -> NkFile:
    shape = list(nk.shape) or [0]
    if rng.random() < 0.5:
        shape = [0] * len(shape)
    else:
        shape[rng.randrange(len(shape))] = 0
    return _with(nk, shape=shape)


def _huge_shape(nk: NkFile, rng: random.Random) -> NkFile:
    shape = list(nk.shape) or [1]
    huge = rng.choice((1 << 12, 1 << 16, 1 << 20, 1 << 24, MAX_SHAPE_VALUE))
    for index in _targets(len(shape), rng):
        shape[index] = huge
    return _with(nk, shape=shape)


def _inconsistent_shape(nk: NkFile, rng: random.Random) -> NkFile:
    """A shape that does not match the declared image: off by a little, transposed, or random."""
    shape = list(nk.shape) or [1, 1]
    choice = rng.randrange(3)
    if choice == 0:
        index = rng.randrange(len(shape))
        shape[index] = min(MAX_SHAPE_VALUE, max(1, shape[index] + rng.choice((-2, -1, 1, 2))))
    elif choice == 1 and len(shape) >= 2 and shape[-1] != shape[-2]:
        shape[-2], shape[-1] = shape[-1], shape[-2]
    else:
        shape = [rng.randint(1, 64) for _ in shape]
    if tuple(shape) == nk.shape:
        shape[0] += 1 if shape[0] < MAX_SHAPE_VALUE else -1
    return _with(nk, shape=shape)


def _shape_dims(nk: NkFile, rng: random.Random) -> NkFile:
    """A shape with the wrong number of entries."""
    shape = list(nk.shape)
    options = [[], shape[:1], [*shape, 1], [1, *shape], [1] * MAX_SHAPE_DIMS]
    # Applied twice (a pair of kinds), an 8-entry shape would grow past what a .nk header may hold.
    fitting = [option for option in options if option != shape and len(option) <= MAX_SHAPE_DIMS]
    return _with(nk, shape=rng.choice(fitting or [[]]))


def _padding_out_of_range(nk: NkFile, rng: random.Random) -> NkFile:
    """One padding entry as large as a pad multiple or more; the padded image kept when possible."""
    padding = list(nk.padding)
    side = rng.randrange(4)
    padding[side] = rng.choice((64, 127, 128, 255, 4096, MAX_SIDE))
    height, width = _padded(nk)
    size = (height - padding[2] - padding[3], width - padding[0] - padding[1])
    if min(size) < 1 or max(size) > MAX_SIDE or rng.random() < 0.3:
        size = nk.original_size
    return _with(nk, original_size=size, padding=padding)


def _padding_inconsistent(nk: NkFile, rng: random.Random) -> NkFile:
    """Padding that no longer reaches a multiple: one side off by one or a few pixels."""
    padding = list(nk.padding)
    side = rng.randrange(4)
    padding[side] = min(MAX_SIDE, max(0, padding[side] + rng.choice((-3, -1, 1, 3))))
    if tuple(padding) == tuple(nk.padding):
        padding[side] += 1 if padding[side] < MAX_SIDE else -1
    return _with(nk, padding=padding)


def _size_mismatch(nk: NkFile, rng: random.Random) -> NkFile:
    """original_size changed, padding and shape kept."""
    height, width = nk.original_size
    delta = rng.choice((-100, -7, -1, 1, 7, 100, 1000))
    if rng.random() < 0.5:
        height = min(MAX_SIDE, max(1, height + delta))
    else:
        width = min(MAX_SIDE, max(1, width + delta))
    return _with(nk, original_size=(height, width))


GEOMETRY_KINDS: dict[str, Mutation] = {
    "larger-image": _larger_image,
    "huge-image": lambda nk, rng: _larger_image(nk, rng, _HUGE_SIDES),
    "smaller-image": _smaller_image,
    "tiny-image": _tiny_image,
    "zero-shape": _zero_shape,
    "huge-shape": _huge_shape,
    "inconsistent-shape": _inconsistent_shape,
    "shape-dims": _shape_dims,
    "padding-out-of-range": _padding_out_of_range,
    "padding-inconsistent": _padding_inconsistent,
    "size-mismatch": _size_mismatch,
}


# --------------------------------------------------------------------------------------- identity kinds


def _fingerprint_changed(nk: NkFile, rng: random.Random) -> NkFile:
    index = rng.randrange(len(nk.fingerprint))
    digit = "0123456789abcdef"[(int(nk.fingerprint[index], 16) + rng.randint(1, 15)) % 16]
    return _with(nk, fingerprint=nk.fingerprint[:index] + digit + nk.fingerprint[index + 1 :])


def _options_changed(nk: NkFile, rng: random.Random) -> NkFile:
    options = rng.choice(({}, {**nk.options, "tiny": False}, {**nk.options, "quality": 99}, {**nk.options, "x": [1]}))
    return _with(nk, options=options)


def _codec_changed(nk: NkFile, rng: random.Random) -> NkFile:
    others = [name for name in ("tic", "elic", "bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor", "no-such")
              if name != nk.codec]
    return _with(nk, codec=rng.choice(others))


IDENTITY_KINDS: dict[str, Mutation] = {
    "fingerprint-changed": _fingerprint_changed,
    "options-changed": _options_changed,
    "codec-changed": _codec_changed,
}

# --------------------------------------------------------------------------------------- level kinds

# Levels a file may claim: trained ones, a fraction, and ones no codec has (all inside the format's 0..65535).
_CLAIMED_LEVELS = (0, 1, 2.5, 7, 8, 255, 9999, MAX_LEVEL)


def _level_changed(nk: NkFile, rng: random.Random) -> NkFile:
    """Another rate level, claimed by any file (a fixed-rate codec's file gains one)."""
    return _with(nk, level=rng.choice([level for level in _CLAIMED_LEVELS if level != nk.level]))


LEVEL_KINDS: dict[str, Mutation] = {
    "level-changed": _level_changed,
    "level-dropped": lambda nk, rng: _with(nk, level=None),
}

KINDS: dict[str, Mutation] = {**STREAM_KINDS, **GEOMETRY_KINDS, **IDENTITY_KINDS, **LEVEL_KINDS}


# --------------------------------------------------------------------------------------- public API


def craft(valid: NkFile, kinds: str | Sequence[str], rng: random.Random) -> NkFile:
    """``valid`` with the mutations ``kinds`` (names in :data:`KINDS`, or one ``"a+b"`` string) applied in order."""
    names = kinds.split("+") if isinstance(kinds, str) else list(kinds)
    nk = valid
    for name in names:
        nk = KINDS[name](nk, rng)
    return nk


def _schedule(rng: random.Random) -> Iterator[str]:
    """Every kind once, every geometry kind with every stream kind, then random singles and pairs."""
    yield from KINDS
    for geometry in GEOMETRY_KINDS:
        for stream in STREAM_KINDS:
            yield f"{geometry}+{stream}"
    names = list(KINDS)
    while True:
        if rng.random() < 0.6:
            yield rng.choice(names)
        else:
            yield f"{rng.choice(list(GEOMETRY_KINDS))}+{rng.choice(list(STREAM_KINDS))}"


def crafted_files(valid: NkFile, *, count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """``count`` hostile ``.nk`` files made from ``valid``: ``(kind, bytes)``, each a valid container.

    The same ``valid`` and ``seed`` give the same files. The first ``len(KINDS)`` are one of each kind,
    the next every geometry kind combined with every stream kind (e.g. ``"larger-image+truncate-2"``:
    a 1024 x 1024 image declared over 2-byte streams), the rest random singles and pairs.
    """
    rng = random.Random(seed)
    schedule = _schedule(random.Random(seed + 1))
    for _ in range(count):
        kind = next(schedule)
        yield kind, encode_nk(craft(valid, kind, rng))


def hostile_files(valid: NkFile, kinds: Sequence[str] | None = None) -> SearchStrategy[tuple[str, bytes]]:
    """A hypothesis strategy of ``(kind, bytes)``: one or two of ``kinds`` (default all) applied to ``valid``.

    The randomness inside each mutation comes from hypothesis (``st.randoms``), so failures shrink
    and replay. Needs hypothesis installed (neckkit itself does not).
    """
    from hypothesis import strategies as st

    names = sorted(kinds or KINDS)
    unknown = sorted(set(names) - set(KINDS))
    if unknown:
        raise ValueError(f"unknown hostile kinds: {', '.join(unknown)}")

    def build(chosen: list[str], rng: random.Random) -> tuple[str, bytes]:
        kind = "+".join(chosen)
        return kind, encode_nk(craft(valid, chosen, rng))

    return st.builds(build, st.lists(st.sampled_from(names), min_size=1, max_size=2),
                     st.randoms(use_true_random=False))
