"""Hostile .nk files (valid containers, crafted streams and headers) never crash, hang or fool the decoder.

Each built-in codec family (tiny) compresses a bundled photo; :mod:`neckkit.bitstream.hostile` makes hostile
variants of that file; one :class:`~neckkit.bitstream.fuzz_worker.FuzzWorker` process decodes them all with
``decode_latent``, so a crash (SIGSEGV in an entropy decoder) fails one test instead of ending the run and a
hang is caught by a timeout. Every case must decode to a finite latent of the shape its declared image
implies, or raise one one-line NeckkitError.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from neckkit.bitstream.fuzz_worker import FAILURES, FuzzWorker, Reference, classify
from neckkit.bitstream.hostile import GEOMETRY_KINDS, KINDS, STREAM_KINDS, craft, crafted_files, hostile_files
from neckkit.bitstream.nk_format import NkFile, decode_nk, encode_nk
from neckkit.samples import sample_images

CODECS = ("tic", "elic", "bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor", "mbt2018-mean-vbr", "elic-vbr")
TINY = {"tiny": True}
TIMEOUT = 30.0  # seconds per case; hostile cases decode (or fail) in milliseconds
SEEDED_CASES = len(KINDS) + len(GEOMETRY_KINDS) * len(STREAM_KINDS)  # every kind and every pair, per codec
REPORTED = 3  # stop a test after this many failures: each crash costs a worker restart
# No shrinking: a crash restarts the worker (seconds), and the kind already says what the case is.
HOSTILE = settings(max_examples=60, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
                   suppress_health_check=[HealthCheck.too_slow])
TIC_LIKE = NkFile(codec="tic", fingerprint="0123456789abcdef", original_size=(300, 451), padding=(30, 31, 42, 42),
                  shape=(6, 8), streams=(bytes(range(200)), b"zz" * 40), options=dict(TINY))


@pytest.fixture(scope="module")
def worker() -> Iterator[FuzzWorker]:
    with FuzzWorker() as fuzz_worker:
        yield fuzz_worker


@pytest.fixture(scope="module")
def reference(worker: FuzzWorker) -> Callable[[str], Reference]:
    """A codec's valid file for a bundled photo (chelsea.jpg, 451 x 300), made once per codec in the worker."""
    made: dict[str, Reference] = {}

    def get(codec: str) -> Reference:
        if codec not in made:
            made[codec] = worker.encode(codec, TINY, sample_images()[1])
        return made[codec]

    return get


def describe(kind: str, data: bytes) -> str:
    nk = decode_nk(data)
    return (f"{kind}: {nk.original_size[1]}x{nk.original_size[0]} padding {list(nk.padding)} shape {list(nk.shape)} "
            f"streams {[len(stream) for stream in nk.streams]} bytes")


def failures(worker: FuzzWorker, reference: Reference, cases: Iterator[tuple[str, bytes]]) -> list[str]:
    """Decode each case in the worker; a line per case that was not a correct decode or a clean error."""
    found = []
    for kind, data in cases:
        outcome = worker.decode(reference.codec, reference.options, data, timeout=TIMEOUT)
        category = classify(outcome, data, reference)
        if category in FAILURES:
            found.append(f"{category} ({outcome.detail or outcome.shape}) on {describe(kind, data)}")
            if len(found) == REPORTED:
                break
    return found


# --------------------------------------------------------------------------------------- the crafted files


def test_crafted_files_are_valid_containers_that_keep_the_codec_identity() -> None:
    cases = list(crafted_files(TIC_LIKE, count=SEEDED_CASES + 50, seed=3))
    assert [kind for kind, _ in cases[: len(KINDS)]] == list(KINDS)
    assert {kind for kind, _ in cases} >= {f"{g}+{s}" for g in GEOMETRY_KINDS for s in STREAM_KINDS}
    assert cases == list(crafted_files(TIC_LIKE, count=SEEDED_CASES + 50, seed=3))  # seeded
    for kind, data in cases:
        nk = decode_nk(data)  # right lengths and CRC, every header field in range
        if not {"codec-changed", "fingerprint-changed", "options-changed"} & set(kind.split("+")):
            assert (nk.codec, nk.fingerprint, nk.options) == (TIC_LIKE.codec, TIC_LIKE.fingerprint, TIC_LIKE.options)
    changed = {kind: decode_nk(data) for kind, data in cases[: len(KINDS)]}
    assert changed["truncate-2"].streams != TIC_LIKE.streams and changed["empty-streams"].payload_bytes == 0
    assert changed["fingerprint-changed"].fingerprint != TIC_LIKE.fingerprint
    assert len(changed["extra-stream"].streams) == 3 and len(changed["missing-stream"].streams) < 2


@pytest.mark.parametrize("kind", ["larger-image", "smaller-image", "larger-image+truncate-2"])
def test_resized_images_keep_the_codec_geometry(kind: str) -> None:
    # TIC pads to multiples of 128 and its shape is the padded image / 64: a resize keeps both true.
    rng = random.Random(0)
    for _ in range(50):
        nk = craft(TIC_LIKE, kind, rng)
        padded = (nk.original_size[0] + nk.padding.top + nk.padding.bottom,
                  nk.original_size[1] + nk.padding.left + nk.padding.right)
        assert padded[0] % 128 == 0 and padded[1] % 128 == 0 and max(nk.padding) < 128
        assert nk.shape == (padded[0] // 64, padded[1] // 64)
        assert (padded != (384, 512)) and ((max(padded) >= 1024) == kind.startswith("larger"))
        if kind.endswith("truncate-2"):
            assert {len(stream) for stream in nk.streams} <= {2, len(TIC_LIKE.streams[0]), len(TIC_LIKE.streams[1])}


@settings(max_examples=200, deadline=None)
@given(case=hostile_files(TIC_LIKE))
def test_hostile_strategy_draws_valid_containers(case: tuple[str, bytes]) -> None:
    kind, data = case
    assert all(name in KINDS for name in kind.split("+")) and 1 <= len(kind.split("+")) <= 2
    assert decode_nk(data).codec in {*CODECS, "no-such"}


ELIC_LIKE = NkFile(codec="elic", fingerprint="0123456789abcdef", original_size=(300, 451), padding=(0, 61, 0, 20),
                   shape=(1, 320, 20, 32), streams=(bytes(range(200)),) * 5, options={})


@pytest.mark.parametrize("valid", [TIC_LIKE, ELIC_LIKE], ids=["tic", "elic"])
def test_any_chain_of_kinds_stays_within_the_containers_limits(valid: NkFile) -> None:
    """Kinds applied one after another (repeats included) never make a header NkFile refuses: a case that
    cannot be built is a fuzzer bug, not a finding (the hypothesis strategy once failed on such a pair)."""
    names = sorted(KINDS)
    for seed in range(3000):
        rng = random.Random(seed)
        chain = rng.choices(names, k=rng.choice((1, 2, 3, 4)))
        encode_nk(craft(valid, chain, rng))  # raises on a header outside the limits


def test_hostile_strategy_refuses_unknown_kinds() -> None:
    with pytest.raises(ValueError, match="no-such-kind"):
        hostile_files(TIC_LIKE, ["truncate-2", "no-such-kind"])


# --------------------------------------------------------------------------------------- decoding them


@pytest.mark.parametrize("codec", CODECS)
def test_valid_file_decodes_bit_exactly(codec: str, worker: FuzzWorker, reference: Callable[[str], Reference]) -> None:
    ref = reference(codec)
    assert ref.digest == ref.analysis_digest  # decode_latent gives the encoder's y_hat, bit for bit
    again = encode_nk(decode_nk(ref.data))
    outcome = worker.decode(codec, TINY, again, timeout=TIMEOUT)
    assert (outcome.status, outcome.digest, outcome.shape) == ("decoded", ref.digest, ref.shape)
    assert ref.shape[-2:] == ((24, 32) if codec == "tic" else (20, 32))  # 451 x 300 padded to 128 (TIC) or 64, / 16


@pytest.mark.parametrize("codec", CODECS)
def test_seeded_crafted_files_decode_or_fail_cleanly(
    codec: str, worker: FuzzWorker, reference: Callable[[str], Reference]
) -> None:
    ref = reference(codec)
    cases = crafted_files(decode_nk(ref.data), count=SEEDED_CASES, seed=CODECS.index(codec))
    assert failures(worker, ref, cases) == []


@pytest.mark.parametrize("codec", CODECS)
@HOSTILE
@given(data=st.data())
def test_hypothesis_hostile_files_decode_or_fail_cleanly(
    codec: str, worker: FuzzWorker, reference: Callable[[str], Reference], data: st.DataObject
) -> None:
    ref = reference(codec)
    kind, blob = data.draw(hostile_files(decode_nk(ref.data)), label="case")
    assert failures(worker, ref, iter([(kind, blob)])) == []


def test_worker_reports_a_crash_and_a_hang_then_restarts(reference: Callable[[str], Reference]) -> None:
    ref = reference("bmshj2018-hyperprior")
    with FuzzWorker() as worker:
        crashed = worker.crash()
        assert (crashed.status, crashed.detail) == ("crash", "the worker was killed by SIGSEGV")
        hung = worker.decode(ref.codec, TINY, ref.data, timeout=1e-4)  # nothing answers within 0.1 ms
        assert hung.status == "hang" and "no answer within" in hung.detail
        assert classify(crashed, ref.data, ref) == "crash" and classify(hung, ref.data, ref) == "hang"
        again = worker.decode(ref.codec, TINY, ref.data, timeout=TIMEOUT)
        assert (again.status, again.digest) == ("decoded", ref.digest)
        assert worker.restarts == 2 and worker.peak_rss > 0


# --------------------------------------------------------------------------------------- the real CLI


def test_cli_refuses_a_1024px_tic_file_over_2_byte_streams(
    reference: Callable[[str], Reference], tmp_path: Path
) -> None:
    """Issue 18's file: CompressAI's rANS decoder read past its 2-byte streams and the process died (exit 139)."""
    valid = decode_nk(reference("tic").data)
    nk = NkFile(codec="tic", fingerprint=valid.fingerprint, options=valid.options, original_size=(1024, 1024),
                padding=(0, 0, 0, 0), shape=(16, 16), streams=[stream[:2] for stream in valid.streams])
    path = tmp_path / "hostile.nk"
    path.write_bytes(encode_nk(nk))
    assert path.stat().st_size < 200  # the file was 166 bytes
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "neckkit", "decompress", str(path), "--latent-only"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
    assert result.stderr.startswith(f"Error: {path}: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
