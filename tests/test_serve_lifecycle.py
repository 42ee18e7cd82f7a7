"""neckkit serve's life: warm before ready, one access-log line per request, a prompt exit on SIGTERM.

One real server (a subprocess on a free loopback port, the tiny models) answers a bounded number of
requests; the access-log middleware and the warm-up are also checked in-process, without models.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from types import SimpleNamespace

import pytest
from test_ask import served  # noqa: F401  (the tiny clip-l-336 neck and a .nk of the coffee photo)
from test_serve import MAX_BODY, PROMPT, TIMEOUT, free_port, metric, post_raw, running_server

from neckkit.errors import NeckkitError

httpx = pytest.importorskip("httpx")
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import PlainTextResponse  # noqa: E402

from neckkit.serving.access_log import AccessLog, access_line  # noqa: E402
from neckkit.serving.batcher import Batcher  # noqa: E402
from neckkit.serving.http_app import warm_up  # noqa: E402
from neckkit.serving.requests import AskRequest, AskResult  # noqa: E402

ACCESS = re.compile(r"^neckkit serve: access method=(\S+) path=(\S+) status=(\d+) ms=([\d.]+) bytes_in=(\d+) "
                    r"bytes_out=(\d+) id=(\S+) client=(\S+)$", re.MULTILINE)
EXIT_BOUND_S = 5.0  # generous: an idle server exits in about half a second on the 2-core test machine


def test_one_access_line_per_request_and_an_idle_server_exits_promptly_on_sigterm(served, tmp_path) -> None:  # noqa: F811
    _runner, _host, neck, nk, _photo = served
    command = [sys.executable, "-m", "neckkit", "serve", "--neck", str(neck), "--mllm", "llava-1.5", "--tiny",
               "--port", str(free_port()), "--decode-workers", "1", "--max-body-bytes", str(MAX_BODY)]
    data = nk.read_bytes()
    with running_server(command, tmp_path / "serve.log") as server:
        probes = len(server.before_ready) + 1  # running_server's /health replies: 503s while loading, then 200
        assert re.search(r"ready on .* warmed up in [\d.]+ s\)", server.output()), server.output()
        assert metric(server, "neckkit_batch_size_count") == 0  # the warm-up answered, but is not a client's batch
        sent = {
            "ask-1": post_raw(server, data, {"prompt": PROMPT, "max_new_tokens": "2"}),
            "ask-2": httpx.post(f"{server.url}/v1/ask", params={"prompt": PROMPT, "max_new_tokens": "2"},
                                content=data, headers={"content-type": "application/x-neckkit-nk",
                                                       "x-request-id": "client-chosen.id_2"}, timeout=TIMEOUT),
            "wrong type": post_raw(server, data, {"prompt": PROMPT}, "text/plain"),
            "too large": post_raw(server, b"\0" * (MAX_BODY + 1), {"prompt": PROMPT}),
            "unknown route": httpx.get(f"{server.url}/nowhere", timeout=TIMEOUT),
        }
        statuses = {name: reply.status_code for name, reply in sent.items()}
        assert statuses == {"ask-1": 200, "ask-2": 200, "wrong type": 415, "too large": 413, "unknown route": 404}
        assert sent["ask-2"].headers["x-request-id"] == "client-chosen.id_2"
        time.sleep(0.5)  # idle: no request in flight, the client's connections closed
        start = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=30)
        exit_seconds = time.monotonic() - start
    output = server.output()
    assert code == 0, output
    assert exit_seconds < EXIT_BOUND_S, (exit_seconds, output)
    assert "neckkit serve: stopped" in output
    lines = ACCESS.findall(output)
    # /metrics was read once above; every request got exactly one line, uvicorn's own access log none
    assert len(lines) == probes + 1 + len(sent), output
    assert "HTTP/1.1" not in output
    by_id = {line[6]: line for line in lines}
    assert len(by_id) == len(lines)  # request ids are unique
    for name, reply in sent.items():
        method, path, status, _ms, bytes_in, bytes_out, _id, client = by_id[reply.headers["x-request-id"]]
        assert (method, path, int(status)) == (reply.request.method, reply.request.url.path, reply.status_code), name
        assert int(bytes_out) == len(reply.content), name
        assert client.startswith("127.0.0.1:"), name
    assert int(by_id[sent["ask-1"].headers["x-request-id"]][4]) == len(data)  # bytes_in: the .nk body
    assert int(by_id[sent["too large"].headers["x-request-id"]][4]) == 0  # refused from Content-Length, unread
    assert "?" not in "".join(line[1] for line in lines)  # no query strings: prompts stay out of the log


def _app_with_access_log(enabled: bool) -> FastAPI:
    app = FastAPI()

    @app.api_route("/{rest:path}", methods=["GET", "POST"])
    async def seven_bytes(request: Request) -> PlainTextResponse:
        await request.body()
        return PlainTextResponse("x" * 7)

    app.add_middleware(AccessLog, enabled=enabled)
    return app


async def _requests(app: FastAPI, *requests: tuple[str, str, dict]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app, client=("10.0.0.7", 4321))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return [await client.request(method, url, **options) for method, url, options in requests]


def test_the_access_line_cannot_be_forged_and_keeps_prompts_out(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="neckkit.serving.access")
    replies = asyncio.run(_requests(
        _app_with_access_log(True),
        ("POST", "/v1/ask?prompt=secret", {"content": b"12345"}),
        ("GET", "/v1/ask%0Aneckkit%20serve:%20access%20status=200", {}),
        ("GET", "/health", {"headers": {"x-request-id": "bad id\twith spaces"}}),
    ))
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    ask, forged, health = (ACCESS.fullmatch(line).groups() for line in lines)
    assert ask[:3] == ("POST", "/v1/ask", "200") and "secret" not in lines[0]
    assert (ask[4], ask[5], ask[7]) == ("5", "7", "10.0.0.7:4321")  # bytes in and out, the client
    assert forged[1] == "/v1/ask%0Aneckkit%20serve:%20access%20status=200"  # the newline cannot start a line
    assert health[6] == replies[2].headers["x-request-id"] != "bad id\twith spaces"  # replaced by a new id
    assert re.fullmatch(r"[0-9a-f]{16}", health[6])


def test_no_access_log_logs_nothing_but_still_gives_request_ids(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="neckkit.serving.access")
    replies = asyncio.run(_requests(_app_with_access_log(False), ("GET", "/health", {})))
    assert caplog.records == [] and replies[0].status_code == 200 and replies[0].headers["x-request-id"]


def test_access_line_format() -> None:
    assert access_line(method="GET", path="/metrics", status=200, seconds=0.0123, bytes_in=0, bytes_out=42,
                       request_id="abc", client="127.0.0.1:5") == (
        "neckkit serve: access method=GET path=/metrics status=200 ms=12.3 bytes_in=0 bytes_out=42 id=abc "
        "client=127.0.0.1:5")


class _FakeAnswerer:
    """What :func:`warm_up` uses of an answerer: its warm-up request and its load_seconds."""

    def __init__(self) -> None:
        self.load_seconds: dict[str, float] = {}

    def warm_up_request(self) -> AskRequest:
        return AskRequest(b"", ["warm-up"], {"max_new_tokens": 2}, name="<warm-up>")


def _answer(items, *, fail: bool):  # noqa: ANN001, ANN202
    if fail:
        return [NeckkitError("<warm-up>: the tiny model is broken")] * len(items)
    return [AskResult(source="<warm-up>", mllm="m", prompts=["warm-up"], path="neck", answers=["ok"],
                      seconds={})] * len(items)


@pytest.mark.parametrize("fail", [False, True])
def test_the_warm_up_goes_through_the_batcher_and_a_failure_is_one_warning(fail: bool, capsys) -> None:
    answered: list[int] = []

    async def scenario() -> dict[str, float]:
        def answer_batch(items):  # noqa: ANN001, ANN202
            answered.append(len(items))
            return _answer(items, fail=fail)

        batcher = Batcher(answer_batch, max_batch=4, max_wait_ms=0)
        batcher.start()
        answerer = _FakeAnswerer()
        await warm_up(answerer, batcher)  # type: ignore[arg-type]
        await batcher.close()
        return answerer.load_seconds

    seconds = asyncio.run(scenario())
    assert answered == [1] and seconds["warm_up"] >= 0
    warning = capsys.readouterr().err
    if fail:
        assert warning.count("\n") == 1 and "warm-up request failed" in warning and "tiny model is broken" in warning
    else:
        assert warning == ""


def test_the_warm_up_request_is_the_codecs_smallest_image() -> None:
    from neckkit.serving.answerer import Answerer

    with_codec = SimpleNamespace(codec=SimpleNamespace(pad_multiple=64), mllm=None)
    request = Answerer.warm_up_request(with_codec, max_new_tokens=2)  # type: ignore[arg-type]
    assert tuple(request.source.shape) == (1, 3, 64, 64) and not request.uncompressed
    assert request.generation == {"max_new_tokens": 2}
    baseline_only = SimpleNamespace(codec=None, mllm=SimpleNamespace(visual_encoder=SimpleNamespace(image_size=224)))
    request = Answerer.warm_up_request(baseline_only)  # type: ignore[arg-type]
    assert tuple(request.source.shape) == (1, 3, 224, 224) and request.uncompressed


class _SlowAnswerer(_FakeAnswerer):
    """What create_app uses of an answerer, with a model call that takes ``model_seconds``."""

    decode_workers = 0
    mllm_name, codec_name = "m", "c"
    checkpoint = SimpleNamespace(meta=SimpleNamespace(encoder=SimpleNamespace(name="e")))

    def __init__(self, model_seconds: float) -> None:
        super().__init__()
        self.model_seconds, self.closed = model_seconds, False

    def prepare(self, request: AskRequest) -> AskRequest:
        return request

    def answer_prepared(self, prepared, return_errors: bool = False):  # noqa: ANN001, ANN201
        time.sleep(self.model_seconds)
        return _answer(prepared, fail=False)

    def decode_stats(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


async def _health(app: FastAPI) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return (await client.get("/health")).status_code


@pytest.mark.parametrize("stop_while_warming", [False, True])
def test_health_is_503_until_the_warm_up_is_answered_and_a_stop_while_warming_is_clean(stop_while_warming: bool) -> None:
    from neckkit.serving.http_app import ServeSettings, create_app

    answerer = _SlowAnswerer(model_seconds=0.5)
    readied: list[object] = []
    failures: list[BaseException] = []
    app = create_app(ServeSettings(mllm="m", max_wait_ms=0), lambda: answerer,  # type: ignore[arg-type, return-value]
                     on_load_error=failures.append, on_ready=readied.append)

    async def scenario() -> list[int]:
        statuses = []
        async with app.router.lifespan_context(app):
            await asyncio.sleep(0.25)  # loaded, warming up: the model call takes 0.5 s
            statuses.append(await _health(app))
            if not stop_while_warming:
                deadline = time.monotonic() + 10
                while statuses[-1] == 503 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                    statuses.append(await _health(app))
        return statuses

    statuses = asyncio.run(scenario())
    assert statuses[0] == 503 and failures == [] and answerer.closed
    if stop_while_warming:
        assert readied == [] and statuses == [503]
    else:
        assert readied == [answerer] and set(statuses) == {503, 200} and statuses[-1] == 200
        assert answerer.load_seconds["warm_up"] >= 0.5
