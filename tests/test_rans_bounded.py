"""The bounded rANS decoder: CompressAI's symbols for valid streams, one clear error for damaged ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from compressai.ans import RansEncoder
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neckkit.bitstream.rans import (
    BoundedRansDecoder,
    CdfTables,
    RansStreamError,
    bound_entropy_decoding,
    decode_symbols,
)
from neckkit.errors import NeckkitError


def _gaussian() -> GaussianConditional:
    gc = GaussianConditional(None)
    gc.update_scale_table(torch.exp(torch.linspace(np.log(0.11), np.log(256.0), 64)))
    gc.update()
    return gc


GC = _gaussian()
TABLES = (GC._quantized_cdf.tolist(), GC._cdf_length.reshape(-1).int().tolist(), GC._offset.reshape(-1).int().tolist())


def _stream(seed: int, count: int, spread: float, escapes: int) -> tuple[bytes, list[int], list[int]]:
    """A valid stream of ``count`` symbols (``escapes`` of them far outside their table), its indexes and values.

    At least 2 symbols: CompressAI's encoder writes its 8-byte flush into a buffer of one word per symbol.
    """
    generator = torch.Generator().manual_seed(seed)
    y = torch.randn(1, count, generator=generator) * spread
    y[0, :escapes] *= 1e5  # values beyond the table: coded in the bypass (escape) mode
    scales = torch.rand(1, count, generator=generator) * 8
    indexes = GC.build_indexes(scales).int()
    symbols = torch.round(y).int().reshape(-1).tolist()
    encoded = RansEncoder().encode_with_indexes(symbols, indexes.reshape(-1).tolist(), *TABLES)
    return encoded, indexes.reshape(-1).tolist(), symbols


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), count=st.integers(16, 3000), spread=st.sampled_from([0.1, 3.0, 40.0]),
       escapes=st.integers(0, 5))
def test_valid_streams_decode_to_compressais_symbols(seed: int, count: int, spread: float, escapes: int) -> None:
    encoded, indexes, symbols = _stream(seed, count, spread, min(escapes, count))
    decoder = BoundedRansDecoder()
    assert decoder.decode_with_indexes(encoded, indexes, *TABLES) == symbols
    decoder.set_stream(encoded)  # the autoregressive codecs' piecewise API
    pieces = []
    for start in range(0, count, 97):
        pieces += decoder.decode_stream(indexes[start : start + 97], *TABLES)
    assert pieces == symbols


def test_array_path_equals_the_list_path_and_returns_int32() -> None:
    encoded, indexes, symbols = _stream(3, 5000, 20.0, 3)
    tables = CdfTables.from_lists(*TABLES)
    values = decode_symbols(encoded, np.asarray(indexes), tables)
    assert values.dtype == np.int32 and values.tolist() == symbols


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: b"", "cannot hold its"),
        (lambda data: data[:2], "cannot hold its"),
        (lambda data: data[:-4], "ends before all"),
        (lambda data: b"\xff" * len(data), "does not start with a valid rANS state"),
        (lambda data: data + b"\x00" * 4, "does not end where"),
    ],
    ids=["empty", "two-bytes", "truncated", "all-ff", "trailing-word"],
)
def test_damaged_streams_are_one_line_errors(damage, message: str) -> None:
    encoded, indexes, _ = _stream(5, 4000, 20.0, 2)
    with pytest.raises(RansStreamError, match=message) as caught:
        BoundedRansDecoder().decode_with_indexes(damage(encoded), indexes, *TABLES)
    assert "\n" not in str(caught.value) and isinstance(caught.value, NeckkitError)


def test_random_streams_never_read_outside_and_end_in_an_error_or_values() -> None:
    rng = np.random.default_rng(0)
    _, indexes, _ = _stream(1, 2000, 20.0, 0)
    outcomes = set()
    for length in list(range(0, 64)) + [257, 1024, 4096]:
        data = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        try:
            values = BoundedRansDecoder().decode_with_indexes(data, indexes, *TABLES)
            outcomes.add("decoded")
            assert len(values) == len(indexes)
        except RansStreamError as error:
            outcomes.add(str(error).split(" ")[1])
    assert outcomes  # every one returned; a read outside the buffer would have crashed the test run


def test_an_escape_longer_than_32_bits_is_refused() -> None:
    # The start state's low nibbles are all 15: a symbol landing on the escape row reads 15, 15, ...
    tables = CdfTables.from_lists([[0, 1, 1 << 16]], [3], [0])  # row: symbol 0 (p=2**-16), then the escape
    state = (1 << 62) | 0xFFFFFFFF  # cum_freq = 0xFFFF: the escape symbol
    data = state.to_bytes(8, "little") + b"\xff" * 64
    with pytest.raises(RansStreamError, match="escape code longer than 32 bits"):
        decode_symbols(data, np.zeros(1, dtype=np.int32), tables)


def test_a_stream_too_short_for_its_symbols_is_refused_before_decoding() -> None:
    encoded, indexes, _ = _stream(2, 1000, 20.0, 0)
    many = (indexes * 10_000)[:10_000_000]
    with pytest.raises(RansStreamError, match=rf"a {len(encoded)}-byte stream cannot hold its {len(many)} symbols"):
        BoundedRansDecoder().decode_with_indexes(encoded, many, *TABLES)


def test_indexes_outside_the_table_are_refused() -> None:
    encoded, indexes, _ = _stream(2, 100, 20.0, 0)
    with pytest.raises(RansStreamError, match="outside the table"):
        BoundedRansDecoder().decode_with_indexes(encoded, [*indexes[:-1], 64], *TABLES)


@pytest.mark.parametrize(
    "tables",
    [
        ([[0, 5, 3, 1 << 16]], [4], [0]),  # not rising
        ([[1, 5, 1 << 16]], [3], [0]),  # not starting at 0
        ([[0, 5, 60000]], [3], [0]),  # not ending at 2**16
        ([[0, 1 << 16]], [7], [0]),  # length beyond the row
        ([[0, 1 << 16]], [2, 2], [0]),  # lengths and rows disagree
    ],
    ids=["not-rising", "not-from-0", "not-to-2**16", "long-length", "count-mismatch"],
)
def test_broken_tables_are_refused(tables) -> None:
    with pytest.raises(NeckkitError, match="entropy tables"):
        CdfTables.from_lists(*tables)


def test_bound_entropy_decoding_replaces_every_compressai_decoder() -> None:
    import compressai.models.google as google
    from compressai.models import JointAutoregressiveHierarchicalPriors

    torch.manual_seed(0)
    model = JointAutoregressiveHierarchicalPriors(N=8, M=8).eval()
    model.update(force=True)
    x = torch.rand(1, 3, 64, 64)
    out = model.compress(x)
    bound_entropy_decoding(model)
    assert isinstance(model.entropy_bottleneck.entropy_coder._decoder, BoundedRansDecoder)
    assert isinstance(model.gaussian_conditional.entropy_coder._decoder, BoundedRansDecoder)
    assert google.RansDecoder is BoundedRansDecoder  # what _decompress_ar creates for every image
    with torch.no_grad():
        x_hat = model.decompress(out["strings"], out["shape"])["x_hat"]
    assert x_hat.shape == (1, 3, 64, 64)
    with pytest.raises(RansStreamError):
        model.decompress([[b"\xff" * 8], out["strings"][1]], out["shape"])


def test_entropy_bottleneck_round_trip_equals_compressais_decoder() -> None:
    from compressai import ans

    eb = EntropyBottleneck(4)
    eb.update(force=True)
    z = torch.randn(2, 4, 5, 7) * 3
    strings = eb.compress(z)
    indexes = eb._build_indexes(torch.Size((2, 4, 5, 7)))[0].reshape(-1).int().tolist()
    tables = (eb._quantized_cdf.tolist(), eb._cdf_length.reshape(-1).int().tolist(),
              eb._offset.reshape(-1).int().tolist())
    unbounded = getattr(ans, "_neckkit_unbounded_RansDecoder", ans.RansDecoder)()
    bound_entropy_decoding(eb)
    assert isinstance(eb.entropy_coder._decoder, BoundedRansDecoder)
    assert BoundedRansDecoder().decode_with_indexes(strings[0], indexes, *tables) == unbounded.decode_with_indexes(
        strings[0], indexes, *tables)
