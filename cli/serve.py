"""``neckkit serve``: a long-running HTTP server answering questions about bitstreams, with dynamic batching.

The app is :func:`neckkit.serving.http_app.create_app`, run by uvicorn; the models load once, in the
background, and answer one warm-up request (``/health`` is 503 until then). Entropy decoding runs in
``--decode-workers`` processes, so a bitstream that crashes or hangs the decoder fails only its own
request. One access-log line per request on stderr (``--no-access-log``: none). SIGTERM or Ctrl-C: stop
accepting, finish the requests in flight, exit 0 (an idle server within about half a second).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import typer

from neckkit.cli.components import component_options
from neckkit.cli.report import announce_placeholders
from neckkit.errors import NeckkitError

SERVE_EXTRA = "neckkit serve needs the serve extra: pip install 'neckkit[serve]'"
DEFAULT_DECODE_WORKERS = min(2, os.cpu_count() or 1)


def share_cores(decode_workers: int) -> None:
    """Leave the decode workers their cores: the models get ``cpu count - workers`` torch threads (at least 1).

    Unless ``OMP_NUM_THREADS`` says otherwise. On a small CPU machine, torch's OpenMP threads spinning
    next to busy decode workers made the model calls many times slower.
    """
    if decode_workers and "OMP_NUM_THREADS" not in os.environ:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) - decode_workers))


def serve(
    ctx: typer.Context,
    neck: Path = typer.Option(..., "--neck", help="Neck checkpoint or training run folder."),
    mllm: str = typer.Option(..., "--mllm", "-m", help="Registered MLLM name (see neckkit list-plugins)."),
    tiny: bool = typer.Option(False, "--tiny", help="Tiny random-init MLLM (tests, quick start)."),
    mllm_weights: str | None = typer.Option(None, "--mllm-weights", help="MLLM hub id or local folder."),
    mllm_opt: list[str] | None = typer.Option(None, "--mllm-opt", help="Other MLLM option, e.g. dtype=bfloat16."),
    codec_weights: Path | None = typer.Option(None, "--codec-weights", help="The codec weights the neck was trained on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    max_batch: int = typer.Option(8, "--max-batch", help="Most requests answered together (1: no batching)."),
    max_wait_ms: float = typer.Option(10.0, "--max-wait-ms", help="Longest wait for a batch to fill, in ms."),
    max_body_bytes: int = typer.Option(1 << 20, "--max-body-bytes", help="Largest request body accepted, in bytes."),
    body_timeout: float = typer.Option(30.0, "--body-timeout", help="Seconds a request body may take to arrive (408)."),
    max_uploads: int = typer.Option(64, "--max-uploads", help="Request bodies read at once; more get 503 at once."),
    decode_workers: int = typer.Option(DEFAULT_DECODE_WORKERS, "--decode-workers",
                                       help="Entropy-decoding processes (0: in the server process, unisolated)."),
    decode_timeout: float = typer.Option(30.0, "--decode-timeout",
                                         help="Seconds one entropy decode may take; then its worker is killed."),
    decode_memory_mb: int = typer.Option(2048, "--decode-memory-mb",
                                         help="Memory a decode worker may add after start-up, in MiB (0: no cap)."),
    device: str = typer.Option("auto", "--device", help="Where the MLLM and neck run: auto, cpu, cuda, cuda:1..."),
    warm_up: bool = typer.Option(True, "--warm-up/--no-warm-up",
                                 help="Answer one blank-image request before /health says ready, so the first "
                                      "client's request is as fast as later ones."),
    access_log: bool = typer.Option(True, "--access-log/--no-access-log",
                                    help="One line per request on stderr: method, path, status, ms, bytes, id."),
) -> None:
    """Serve answers about .nk bitstreams over HTTP (POST /v1/ask, /v1/chat/completions; GET /health, /metrics)."""
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn

        try:
            import python_multipart  # noqa: F401  (python-multipart >= 0.0.13)
        except ImportError:
            import multipart  # noqa: F401  (older python-multipart)
    except ImportError:
        raise NeckkitError(SERVE_EXTRA) from None
    from neckkit.serving.access_log import log_access_to_stderr
    from neckkit.serving.answerer import Answerer
    from neckkit.serving.decode_pool import DecodeWorkers
    from neckkit.serving.http_app import ServeSettings, create_app

    if max_batch < 1:
        raise NeckkitError(f"--max-batch must be at least 1, got {max_batch}")
    if max_wait_ms < 0:
        raise NeckkitError(f"--max-wait-ms must be at least 0, got {max_wait_ms}")
    if max_body_bytes < 1024:
        raise NeckkitError(f"--max-body-bytes must be at least 1024, got {max_body_bytes}")
    if not 0 <= port <= 65535:
        raise NeckkitError(f"--port must be from 0 to 65535, got {port}")
    if not body_timeout > 0:
        raise NeckkitError(f"--body-timeout must be positive, got {body_timeout}")
    if max_uploads < 1:
        raise NeckkitError(f"--max-uploads must be at least 1, got {max_uploads}")
    if decode_workers < 0:
        raise NeckkitError(f"--decode-workers must be at least 0, got {decode_workers}")
    if not decode_timeout > 0:
        raise NeckkitError(f"--decode-timeout must be positive, got {decode_timeout}")
    if decode_memory_mb < 0:
        raise NeckkitError(f"--decode-memory-mb must be at least 0, got {decode_memory_mb}")
    if not neck.exists():
        raise NeckkitError(f"neck checkpoint {neck} does not exist")
    options = component_options(mllm_opt, weights=mllm_weights, tiny=tiny)
    neck_device = None
    if device != "auto":
        options.setdefault("device_map", device)
        neck_device = device
    weights = str(codec_weights) if codec_weights is not None else None
    plugin_host = ctx.obj.host

    isolation = DecodeWorkers(decode_workers, timeout=decode_timeout,
                              memory_mb=decode_memory_mb or None) if decode_workers else None

    def load() -> Answerer:
        share_cores(decode_workers)
        answerer = Answerer.load(plugin_host, neck, mllm, options, codec_weights=weights, device=neck_device,
                                 decode_threads=min(max_batch, 4), decode_workers=isolation)
        announce_placeholders()
        return answerer

    failure: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_load_error(error: BaseException) -> None:
        failure.append(error)
        if server is not None:
            server.should_exit = True

    def on_ready(answerer: Answerer) -> None:
        warmed = answerer.load_seconds.get("warm_up")
        typer.echo(f"neckkit serve: ready on http://{host}:{port} ({answerer.mllm_name}, neck {neck.name}, "
                   f"max batch {max_batch}, {decode_workers or 'no'} decode workers"
                   f"{f', warmed up in {warmed:.2f} s' if warmed is not None else ''})", err=True)

    settings = ServeSettings(mllm=mllm, neck=neck.name, max_batch=max_batch, max_wait_ms=max_wait_ms,
                             max_body_bytes=max_body_bytes, body_timeout=body_timeout, max_uploads=max_uploads,
                             warm_up=warm_up, access_log=access_log)
    if access_log:
        log_access_to_stderr()
    app = create_app(settings, load, on_load_error=on_load_error, on_ready=on_ready)
    # uvicorn's own access log stays off (neckkit's AccessLog writes the one line per request); its
    # "warning" level keeps its start-up and shut-down chatter off stderr too.
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=None)
    server = uvicorn.Server(config)
    typer.echo(f"neckkit serve: loading the models; listening on http://{host}:{port}", err=True)
    # uvicorn drains on SIGTERM / SIGINT, then raises the signal again to end the process by it; a
    # handler that ignores that second raise lets a drained server exit 0.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failure:
        raise NeckkitError(f"the models failed to load: {' '.join(str(failure[0]).split())}")
    if not server.started:
        raise NeckkitError(f"could not listen on {host}:{port}")
    typer.echo("neckkit serve: stopped", err=True)
    sys.stdout.flush()
