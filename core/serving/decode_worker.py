"""What runs inside one decode worker process: build the neck's codec once, then turn ``.nk`` files into ``y_hat``.

A client's bitstream is untrusted until decoded: a codec's entropy decoder (CompressAI's C++, or a
third-party plugin's) may crash, hang or allocate without bound on crafted bytes. ``neckkit serve``
therefore decodes in worker processes (:class:`~neckkit.serving.decode_pool.DecodePool`); if one dies,
only the job it held is lost. A worker builds the codec exactly as the
:class:`~neckkit.serving.answerer.Answerer` does (the checkpoint's recorded codec, through the same
plugin modules, checked against the fingerprint in ``meta.json``), decodes a blank image once (so
lazily built tables and compiled kernels are ready before the first timed job), caps the memory it
may add (Linux), then answers jobs over one duplex pipe until the pipe closes.

Messages. Server -> worker, pickled: ``(nk, shown)`` per job, ``None`` to stop. Worker -> server, as
raw bytes that the server parses without unpickling anything (:func:`pack_reply`, :func:`unpack_reply`):
``ready`` (codec name, stream fingerprint) or ``failed`` (a message) once, then per job ``ok`` (the
shape of a float32 ``y_hat`` and its bytes, the synthesis calls) or ``error`` (one line).
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
import warnings
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from neckkit.errors import NeckkitError, describe_error

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from neckkit.bitstream.nk_format import NkFile
    from neckkit.host.manager import PluginHost

__all__ = ["DecoderSpec", "PluginSource", "pack_reply", "plugin_sources", "run_worker", "unpack_reply"]

_HEAD = struct.Struct("<I")  # length of a reply's JSON header
# The forkserver imports this module first: silence what the CLI silences (compressai 1.2.8's import-time warning).
warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)


@dataclass(frozen=True)
class PluginSource:
    """A plugin the server's host registered, as a worker imports and registers it again."""

    name: str
    target: str  # "package.module" or "package.module:attribute"
    version: str
    builtin: bool


@dataclass(frozen=True)
class DecoderSpec:
    """Everything a worker needs to build the codec the server's answerer built (picklable)."""

    checkpoint: str  # the neck checkpoint (or run folder) whose meta.json names the codec
    codec_weights: str | None = None
    plugins: tuple[PluginSource, ...] = ()
    sys_path: tuple[str, ...] = ()  # where the plugin modules were imported from
    memory_mb: int | None = 2048  # address space a worker may add after start-up; None: no cap


def _import_target(plugin: object) -> str | None:
    """How to import ``plugin`` again: its module's name, or ``module:attribute`` for an object in one."""
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    module_name = getattr(plugin, "__module__", None) or type(plugin).__module__
    module = sys.modules.get(module_name)
    for attribute, value in vars(module).items() if module is not None else ():
        if value is plugin:
            return f"{module_name}:{attribute}"
    return None


def plugin_sources(host: PluginHost) -> tuple[PluginSource, ...]:
    """The plugins registered in ``host``, in registration order (so name clashes resolve the same way).

    A plugin that cannot be imported by name (an object built at run time) is left out; a codec it
    provides is then unknown to the workers, which fail to start with that message.
    """
    records = {record.name: record for record in host.plugins()}
    sources = []
    for name, plugin in host.pm.list_name_plugin():
        target = _import_target(plugin)
        record = records.get(name)
        if target is not None and record is not None:
            sources.append(PluginSource(name, target, record.version, record.builtin))
    return tuple(sources)


def pack_reply(kind: str, data: bytes = b"", **fields: Any) -> bytes:
    """One worker -> server message: a JSON header (``kind`` and ``fields``), then raw ``data``."""
    head = json.dumps({"kind": kind, **fields}).encode()
    return _HEAD.pack(len(head)) + head + data


def unpack_reply(message: bytes) -> tuple[dict[str, Any], memoryview]:
    """(header, data) of a :func:`pack_reply` message; a malformed one is a :class:`NeckkitError`."""
    view = memoryview(message)
    try:
        (length,) = _HEAD.unpack_from(view)
        header = json.loads(bytes(view[_HEAD.size : _HEAD.size + length]))
    except (struct.error, ValueError) as error:
        raise NeckkitError(f"a decode worker sent a malformed reply ({describe_error(error)})") from None
    if not isinstance(header, dict) or not isinstance(header.get("kind"), str):
        raise NeckkitError("a decode worker sent a reply without a kind")
    return header, view[_HEAD.size + length :]


class _WorkerDecoder:
    """The codec as the worker holds it, with the checks and counting the answerer does in-process."""

    def __init__(self, spec: DecoderSpec) -> None:
        import importlib

        import torch

        from neckkit.bitstream import stream_fingerprint
        from neckkit.host.manager import PluginHost
        from neckkit.neck.checkpoint import load_checkpoint
        from neckkit.serving.machine_path import SynthesisCounter, codec_for_checkpoint

        torch.set_num_threads(1)  # one decode per process; the server's cores go to the workers and the models
        host = PluginHost(env={})
        for source in spec.plugins:
            module_name, _, attribute = source.target.partition(":")
            plugin: Any = importlib.import_module(module_name)
            if attribute:
                plugin = getattr(plugin, attribute)
            host.register(plugin, source.name, source.version, builtin=source.builtin)
        self.checkpoint = load_checkpoint(spec.checkpoint)
        self.codec_name, self.codec = codec_for_checkpoint(host, self.checkpoint, spec.codec_weights)
        self.fingerprint = stream_fingerprint(self.codec)
        self._synthesis = SynthesisCounter(self.codec)

    def warm_up(self) -> None:
        """Code and decode a blank image once: tables and compiled kernels are built before the first job."""
        import torch

        from neckkit.bitstream import NkFile

        side = self.codec.pad_multiple
        with torch.no_grad():
            payload = self.codec.compress(torch.zeros(1, 3, side, side))
        nk = NkFile.from_payload(payload, codec=self.codec_name, fingerprint=self.fingerprint,
                                 original_size=(side, side), padding=(0, 0, 0, 0),
                                 options=self.checkpoint.meta.codec.options)
        self.decode(nk, "<warm-up>")

    def decode(self, nk: NkFile, shown: str) -> bytes:
        """The reply to one job: ``ok`` with ``y_hat`` [1, C, h, w] as float32 bytes, or ``error``."""
        import torch

        from neckkit.bitstream import check_codec
        from neckkit.bitstream.decoding import decode_latent

        try:
            check_codec(nk, self.codec_name, self.fingerprint, source=shown)
            before = self._synthesis.calls
            with torch.no_grad():
                y_hat = decode_latent(self.codec, nk, source=shown)
            y_hat = y_hat.detach().to("cpu", torch.float32).contiguous()
            return pack_reply("ok", y_hat.numpy().tobytes(), shape=list(y_hat.shape),
                              synthesis_calls=self._synthesis.calls - before)
        except NeckkitError as error:
            return pack_reply("error", message=" ".join(str(error).split()))
        except Exception as error:  # noqa: BLE001  (a damaged stream: the decoder's own exception, one line)
            return pack_reply("error", message=f"{shown}: entropy decoding failed ({describe_error(error)})")


def cap_memory(extra_mb: int | None) -> None:
    """Let this process map at most ``extra_mb`` MiB more than now (Linux; elsewhere nothing happens).

    An allocation over the cap fails (``MemoryError`` or the library's own error) in this worker
    instead of pushing the machine into swap or the OOM killer's hands.
    """
    if extra_mb is None:
        return
    try:
        import resource

        with open("/proc/self/statm") as statm:
            mapped = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = mapped + (extra_mb << 20)
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError):
        return


def run_worker(spec: DecoderSpec, conn: Connection) -> None:
    """A worker process's main: build the codec, report ``ready`` (or ``failed``), answer jobs until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the server stops us
    sys.path[:0] = [path for path in spec.sys_path if path not in sys.path]
    try:
        decoder = _WorkerDecoder(spec)
    except BaseException as error:  # noqa: BLE001  (reported to the server, which refuses to start)
        conn.send_bytes(pack_reply("failed", message=" ".join(str(error).split()) or type(error).__name__))
        return
    try:
        decoder.warm_up()
    except Exception:  # noqa: BLE001  (only a head start: the first job pays for what it would have built)
        pass
    cap_memory(spec.memory_mb)
    conn.send_bytes(pack_reply("ready", codec=decoder.codec_name, fingerprint=decoder.fingerprint))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):  # the server went away
            return
        if job is None:
            return
        conn.send_bytes(decoder.decode(*job))
