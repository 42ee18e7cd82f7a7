"""Decoding untrusted ``.nk`` bytes in a child process, where a crash or a hang is a result, not the end of the caller.

A :class:`FuzzWorker` is one long-lived ``spawn`` process that builds registered codecs (by name and
factory options, through the plugin host, as ``neckkit decompress`` does) and decodes one file per
request the way ``decompress`` does: :func:`~neckkit.bitstream.nk_format.decode_nk`,
:func:`~neckkit.bitstream.codec_identity.check_codec`, then
:func:`~neckkit.bitstream.decoding.decode_latent`. Each answer is an :class:`Outcome`; a worker that dies
(a signal such as SIGSEGV) or does not answer within the timeout is reported as ``crash`` or ``hang`` and
replaced by a fresh one on the next request. The codec is the one named in the request, not one built
from the file's options: the fuzzed file can only change what reaches the decoder.

:func:`classify` judges an outcome against the codec's :class:`Reference` (a valid file and what it
decodes to). tests/test_hostile_bitstreams.py and benchmarks/fuzz_bitstreams.py use this module with
:mod:`neckkit.bitstream.hostile`; docs/bitstreams.md ("Fuzzing a codec") shows it on a plugin's codec.
Importing it does not import torch (the worker does).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import resource
import signal
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from neckkit.bitstream.nk_format import NkFile, decode_nk

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "FAILURES",
    "FuzzWorker",
    "Outcome",
    "Reference",
    "classify",
    "expected_latent_shape",
]

DEFAULT_MEMORY_LIMIT = 8 << 30  # the worker's address space (RLIMIT_AS): torch and five tiny codecs take ~4 GiB
SOURCE = "crafted.nk"  # the file name decode errors name
#: Categories of :func:`classify` that are bugs: anything but a clean one-line error or a correct decode.
FAILURES = frozenset({"crash", "hang", "memory", "other", "bad-decode"})
Decoder = Literal["decode_latent", "unchecked"]


@dataclass(frozen=True)
class Outcome:
    """What decoding one file did.

    ``status``: ``decoded``, ``error`` (a NeckkitError: ``detail`` is its message), ``other`` (another
    exception), ``memory`` (an allocation over the worker's memory limit), ``crash`` (the worker died)
    or ``hang`` (no answer in time; the worker was killed).
    """

    status: str
    detail: str = ""
    shape: tuple[int, ...] = ()  # of the decoded y_hat
    finite: bool = True
    digest: str = ""  # sha256 of the decoded y_hat's bytes
    seconds: float = 0.0
    peak_rss: int = 0  # bytes: the worker's peak resident memory so far (0 when it died)


@dataclass(frozen=True)
class Reference:
    """A codec's valid ``.nk`` file for one image, what decoding it gives, and the encoder's own ``y_hat``."""

    codec: str
    options: dict[str, Any] = field(hash=False)
    data: bytes
    shape: tuple[int, ...]  # y_hat [1, C, h, w] decoded from data
    digest: str  # of that y_hat
    analysis_digest: str  # of analyze(x).y_hat at compress time: what decoding must give bit for bit


def expected_latent_shape(nk: NkFile, reference: Reference) -> tuple[int, ...] | None:
    """The ``y_hat`` shape ``nk``'s declared image implies for the reference's codec; None if none fits.

    The codec's stride is read off the reference (its padded image over its latent's height and width).
    """
    ref = decode_nk(reference.data)
    channels, ref_rows, ref_cols = reference.shape[1], reference.shape[-2], reference.shape[-1]
    strides = (_padded(ref)[0] // ref_rows, _padded(ref)[1] // ref_cols)
    height, width = _padded(nk)
    if height % strides[0] or width % strides[1]:
        return None
    return (1, channels, height // strides[0], width // strides[1])


def _padded(nk: NkFile) -> tuple[int, int]:
    left, right, top, bottom = nk.padding
    return nk.original_size[0] + top + bottom, nk.original_size[1] + left + right


def classify(outcome: Outcome, data: bytes, reference: Reference) -> str:
    """``decoded``, ``clean-error``, or a bug (one of :data:`FAILURES`).

    A decode counts as ``decoded`` only if it is finite and has the shape the file's declared image
    implies (:func:`expected_latent_shape`); an error only if it is one non-empty line.
    """
    if outcome.status == "decoded":
        expected = expected_latent_shape(decode_nk(data), reference)
        return "decoded" if outcome.finite and tuple(outcome.shape) == expected else "bad-decode"
    if outcome.status == "error":
        return "clean-error" if outcome.detail and len(outcome.detail.splitlines()) == 1 else "other"
    return outcome.status


def _signal_name(exitcode: int | None) -> str:
    if exitcode is None:
        return "did not exit"
    if exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


class FuzzWorker:
    """A child process that decodes ``.nk`` bytes with registered codecs; restarted when it dies or hangs.

    ``decoder="unchecked"`` calls the codec's own ``decompress_latent``, without the header and result checks
    of :func:`~neckkit.bitstream.decoding.decode_latent`: what the codec does on its own (the built-in codecs
    still decode with the bounded rANS decoder, which they install when built).
    ``memory_limit`` (bytes, or None) caps the worker's address space, so a file that makes the decoder
    allocate too much fails in the worker instead of exhausting the machine.
    """

    def __init__(self, *, decoder: Decoder = "decode_latent", memory_limit: int | None = DEFAULT_MEMORY_LIMIT,
                 start_timeout: float = 300.0) -> None:
        if decoder not in ("decode_latent", "unchecked"):
            raise ValueError(f"decoder must be 'decode_latent' or 'unchecked', not {decoder!r}")
        self.decoder, self.memory_limit, self.start_timeout = decoder, memory_limit, start_timeout
        self.restarts = 0  # workers lost to a crash or a hang
        self.peak_rss = 0  # bytes, the largest any worker reported
        self._context = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: Any = None
        self._prepared: set[str] = set()

    # ----------------------------------------------------------------------------------- lifecycle

    @property
    def pid(self) -> int | None:
        """The running worker's process id (None before the first request or after a death)."""
        return self._process.pid if self._process is not None and self._process.is_alive() else None

    def start(self) -> None:
        """Start the worker (imports torch and the plugins) unless one is running."""
        if self._process is not None and self._process.is_alive():
            return
        self._discard()
        parent, child = self._context.Pipe()
        process = self._context.Process(target=_serve, args=(child, self.decoder, self.memory_limit),
                                        name="neckkit-fuzz-worker", daemon=True)
        try:
            process.start()
        finally:
            child.close()
        self._process, self._conn = process, parent
        reply = self._receive(self.start_timeout)
        if reply.get("status") != "ready":
            raise RuntimeError(f"the decode worker did not start: {reply.get('detail', reply)}")

    def close(self) -> None:
        """Stop the worker."""
        if self._process is not None and self._process.is_alive():
            try:
                self._conn.send(("close",))
                self._process.join(10)
            except OSError:
                pass
        self._discard()

    def __enter__(self) -> FuzzWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _discard(self) -> None:
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(10)
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = None, None
        self._prepared.clear()

    # ----------------------------------------------------------------------------------- requests

    def _receive(self, timeout: float) -> dict[str, Any]:
        try:
            ready = self._conn.poll(timeout)
        except OSError:
            ready = True
        if not ready:
            self._discard()
            self.restarts += 1
            return {"status": "hang", "detail": f"no answer within {timeout:g} s; the worker was killed"}
        try:
            reply = self._conn.recv()
        except (EOFError, OSError):
            self._process.join(10)
            detail = f"the worker {_signal_name(self._process.exitcode)}"
            self._discard()
            self.restarts += 1
            return {"status": "crash", "detail": detail}
        self.peak_rss = max(self.peak_rss, int(reply.get("peak_rss", 0)))
        return reply

    def _request(self, message: tuple[Any, ...], timeout: float) -> dict[str, Any]:
        self.start()
        try:
            self._conn.send(message)
        except OSError:  # died between requests: report it with this request's answer
            pass
        return self._receive(timeout)

    def _prepare(self, codec: str, options: Mapping[str, Any]) -> dict[str, Any] | None:
        key = _codec_key(codec, options)
        if key in self._prepared and self.pid is not None:
            return None
        reply = self._request(("prepare", codec, dict(options)), self.start_timeout)
        if reply["status"] != "ready":
            return reply
        self._prepared.add(key)
        return None

    def encode(self, codec: str, options: Mapping[str, Any], image: str | Path) -> Reference:
        """Compress ``image`` with the codec into a valid file and decode it: the codec's :class:`Reference`."""
        failed = self._prepare(codec, options)
        reply = failed or self._request(("encode", codec, dict(options), str(image)), self.start_timeout)
        if reply["status"] != "encoded":
            raise RuntimeError(f"{codec}: could not make a reference file: {reply['status']}: {reply.get('detail')}")
        return Reference(codec=codec, options=dict(options), data=reply["data"], shape=tuple(reply["shape"]),
                         digest=reply["digest"], analysis_digest=reply["analysis_digest"])

    def decode(self, codec: str, options: Mapping[str, Any], data: bytes, *, timeout: float = 30.0) -> Outcome:
        """Decode ``data`` with the codec in the worker; never raises for what the file does."""
        reply = self._prepare(codec, options) or self._request(("decode", codec, dict(options), bytes(data)), timeout)
        names = ("status", "detail", "shape", "finite", "digest", "seconds", "peak_rss")
        values = {name: reply[name] for name in names if name in reply}
        values["shape"] = tuple(values.get("shape", ()))
        return Outcome(**values)

    def crash(self) -> Outcome:
        """Make the worker die of SIGSEGV (to test code that relies on crashes being reported)."""
        reply = self._request(("crash",), self.start_timeout)
        return Outcome(status=reply["status"], detail=reply.get("detail", ""))


def _codec_key(codec: str, options: Mapping[str, Any]) -> str:
    return json.dumps([codec, options], sort_keys=True)


# --------------------------------------------------------------------------------------- the child process


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _digest(tensor: Any) -> str:
    return hashlib.sha256(tensor.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def _out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` (or what it was raised from) is a failed allocation."""
    seen: BaseException | None = error
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, MemoryError) or "can't allocate memory" in str(seen) or "bad_alloc" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class _Codecs:
    """The worker's codecs, built once per (name, options) through the plugin host."""

    def __init__(self) -> None:
        from neckkit.host.manager import get_host

        self.host = get_host()
        self.built: dict[str, tuple[str, Any, str]] = {}

    def get(self, codec: str, options: dict[str, Any]) -> tuple[str, Any, str]:
        key = _codec_key(codec, options)
        if key not in self.built:
            from neckkit.bitstream.codec_identity import stream_fingerprint
            from neckkit.host.options import build_component

            name, model = build_component(self.host, "codec", codec, options)
            model.eval()
            self.built[key] = (name, model, stream_fingerprint(model))
        return self.built[key]


def _decode_y(model: Any, nk: NkFile, decoder: Decoder) -> Any:
    import torch

    with torch.no_grad():
        if decoder == "unchecked":
            from neckkit.interfaces.codec import at_level, is_variable_rate

            level = nk.level if is_variable_rate(model) else None  # the codec's own check of the level
            with at_level(model, level):
                return model.decompress_latent(nk.to_payload())
        from neckkit.bitstream.decoding import decode_latent

        return decode_latent(model, nk, source=SOURCE)


def _encode(codecs: _Codecs, decoder: Decoder, codec: str, options: dict[str, Any], image: str) -> dict[str, Any]:
    import torch

    from neckkit.bitstream.images import load_image
    from neckkit.bitstream.nk_format import encode_nk
    from neckkit.bitstream.padding import pad_to_multiple
    from neckkit.interfaces.codec import at_level

    name, model, fingerprint = codecs.get(codec, options)
    stored = {key: value for key, value in options.items() if key != "weights"}  # as neckkit compress: no paths
    x = load_image(image)  # [1, 3, H, W]
    padded, padding = pad_to_multiple(x, model.pad_multiple)
    with torch.no_grad(), at_level(model, None) as level:  # a variable-rate codec: its default level
        payload = model.compress(padded)
        y_analysis = model.analyze(padded).y_hat
    nk = NkFile.from_payload(payload, codec=name, fingerprint=fingerprint, original_size=tuple(x.shape[-2:]),
                             padding=padding, options=stored, level=level)
    data = encode_nk(nk)
    y_hat = _decode_y(model, decode_nk(data), decoder)
    return {"status": "encoded", "data": data, "shape": list(y_hat.shape), "digest": _digest(y_hat),
            "analysis_digest": _digest(y_analysis)}


def _decode(codecs: _Codecs, decoder: Decoder, codec: str, options: dict[str, Any], data: bytes) -> dict[str, Any]:
    import time

    import torch

    from neckkit.bitstream.codec_identity import check_codec
    from neckkit.errors import NeckkitError, describe_error

    start = time.perf_counter()
    try:
        name, model, fingerprint = codecs.get(codec, options)
        nk = decode_nk(data, source=SOURCE)
        check_codec(nk, name, fingerprint, source=SOURCE)
        y_hat = _decode_y(model, nk, decoder)
    except NeckkitError as error:
        status = "memory" if _out_of_memory(error) else "error"
        return {"status": status, "detail": str(error), "seconds": time.perf_counter() - start}
    except Exception as error:  # a bug: say where
        status = "memory" if _out_of_memory(error) else "other"
        where = traceback.extract_tb(error.__traceback__)[-1]
        detail = f"{describe_error(error)} at {Path(where.filename).name}:{where.lineno}"
        return {"status": status, "detail": detail, "seconds": time.perf_counter() - start}
    seconds = time.perf_counter() - start
    if not isinstance(y_hat, torch.Tensor):
        return {"status": "other", "detail": f"decoded a {type(y_hat).__name__}, not a tensor", "seconds": seconds}
    return {"status": "decoded", "shape": list(y_hat.shape), "finite": bool(torch.isfinite(y_hat).all()),
            "digest": _digest(y_hat), "seconds": seconds}


def _serve(conn: Any, decoder: Decoder, memory_limit: int | None) -> None:
    """The worker's loop: answer requests until ``close`` or the parent goes away."""
    if memory_limit is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    import warnings

    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
    import torch

    torch.set_num_threads(1)  # workers run side by side, one per core
    codecs = _Codecs()
    conn.send({"status": "ready", "peak_rss": _peak_rss()})
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        op, args = request[0], request[1:]
        if op == "close":
            return
        if op == "crash":
            import faulthandler

            faulthandler.disable()
            faulthandler._sigsegv()
        try:
            if op == "prepare":
                codecs.get(*args)
                reply = {"status": "ready"}
            elif op == "encode":
                reply = _encode(codecs, decoder, *args)
            else:
                reply = _decode(codecs, decoder, *args)
        except Exception as error:  # building or encoding failed: the caller's problem, reported
            reply = {"status": "other", "detail": f"{type(error).__name__}: {error}"}
        reply["peak_rss"] = _peak_rss()
        conn.send(reply)
