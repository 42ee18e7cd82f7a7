"""neckkit serve: the real server (uvicorn on a free loopback port, a subprocess) called with a real HTTP client."""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import dataclasses
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_ask import ask, served  # noqa: F401  (the tiny clip-l-336 neck and a .nk of the coffee photo)

from neckkit.bitstream import decode_nk, encode_nk

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

PROMPT = "What is this?"
TIMEOUT = httpx.Timeout(60.0, connect=5.0)
MAX_BODY = 1 << 20  # neckkit serve --max-body-bytes (the default); a PNG of the photo is ~550 kB


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclasses.dataclass
class Server:
    process: subprocess.Popen
    url: str
    log: Path
    before_ready: list[tuple[int, dict]] = dataclasses.field(default_factory=list)  # /health replies while loading

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def running_server(command: list[str], log: Path, ready_within: float = 90.0) -> Iterator[Server]:
    """``command`` (a ``neckkit serve``) in a subprocess, once ``/health`` is 200; terminated afterwards."""
    port = int(command[command.index("--port") + 1])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    with open(log, "wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    started = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        deadline, status = time.monotonic() + ready_within, None
        while time.monotonic() < deadline:
            assert process.poll() is None, f"the server exited with {process.returncode}: {started.output()}"
            try:
                reply = httpx.get(f"{started.url}/health", timeout=2.0)
            except httpx.TransportError:
                status = None
            else:
                status = reply.status_code
                if status == 200:
                    break
                started.before_ready.append((status, reply.json()))
            assert status in (None, 503), status
            time.sleep(0.2)
        assert status == 200, f"not ready in {ready_within:g} s: {started.output()}"
        yield started
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(served, tmp_path_factory: pytest.TempPathFactory):  # noqa: F811
    """``neckkit serve`` in a subprocess, with batches of up to 8 collected within 150 ms, and no access log."""
    _runner, _host, neck, *_ = served
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [sys.executable, "-m", "neckkit", "serve", "--neck", str(neck), "--mllm", "llava-1.5", "--tiny",
               "--port", str(free_port()), "--max-batch", "8", "--max-wait-ms", "150",
               "--max-body-bytes", str(MAX_BODY), "--no-access-log"]
    with running_server(command, log) as started:
        yield started


def post_nk(server: Server, data: bytes, *prompts: str, **options) -> httpx.Response:
    fields: dict[str, str | list[str]] = {key: str(value) for key, value in options.items()}
    if prompts:
        fields["prompt"] = list(prompts)
    return httpx.post(f"{server.url}/v1/ask", files={"file": ("photo.nk", data)}, data=fields, timeout=TIMEOUT)


def post_raw(server: Server, data: bytes, params: dict | list, content_type="application/x-neckkit-nk"):
    return httpx.post(f"{server.url}/v1/ask", content=data, params=params, headers={"content-type": content_type},
                      timeout=TIMEOUT)


def chat(server: Server, url: str, text: str = PROMPT, **extra) -> httpx.Response:
    body = {"model": "llava-1.5", "messages": [{"role": "user", "content": [
        {"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": url}}]}],
        "max_tokens": 4, "temperature": 0, **extra}
    return httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=TIMEOUT)


def data_url(media: str, data: bytes) -> str:
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


def metric(server: Server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=TIMEOUT).text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_health_is_503_while_loading_then_200(server: Server) -> None:
    assert (503, {"status": "loading"}) in server.before_ready, server.before_ready
    health = httpx.get(f"{server.url}/health", timeout=TIMEOUT)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "mllm": "llava-1.5", "codec": "tic", "encoder": "clip-l-336",
                             "neck": "neck"}
    models = httpx.get(f"{server.url}/v1/models", timeout=TIMEOUT).json()
    assert models == {"object": "list", "data": [{"id": "llava-1.5", "object": "model", "owned_by": "neckkit"}]}


def test_an_answer_from_a_nk_equals_that_of_ask_json(server: Server, served) -> None:  # noqa: F811
    *_, nk, _photo = served
    code, output = ask(served, str(nk), "--mllm", "llava-1.5", "--prompt", PROMPT, "--json")
    assert code == 0, output
    local = json.loads(output)
    multipart = post_nk(server, nk.read_bytes(), PROMPT, max_new_tokens=4)
    raw = post_raw(server, nk.read_bytes(), {"prompt": PROMPT, "max_new_tokens": "4"})
    for reply in (multipart, raw):
        assert reply.status_code == 200, reply.text
        report = reply.json()
        assert set(report) == set(local) | {"batch_size"}
        same = ("mllm", "prompts", "path", "codec", "bpp", "payload_bpp", "latent_shape", "synthesis_calls",
                "answers", "answer")
        assert {key: report[key] for key in same} == {key: local[key] for key in same}
        assert {"read", "entropy_decode", "neck", "mllm"} <= set(report["seconds"])
        assert report["batch_size"] == 1
    assert multipart.json()["source"] == "photo.nk" and raw.json()["source"] == "<bytes>"


def test_concurrent_requests_are_batched_and_answer_as_alone(server: Server, served) -> None:  # noqa: F811
    *_, nk, _photo = served
    data = nk.read_bytes()
    prompts = [f"Question {index}: what is in the picture?" for index in range(8)]
    alone = []
    for prompt in prompts[:4]:  # one at a time: each request is a batch of one
        reply = post_nk(server, data, prompt, max_new_tokens=4)
        assert reply.status_code == 200, reply.text
        alone.append(reply.json())
    assert all(report["batch_size"] == 1 for report in alone)
    batches_before = metric(server, "neckkit_batch_size_count")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda prompt: post_nk(server, data, prompt, max_new_tokens=4), prompts))
    assert all(reply.status_code == 200 for reply in replies), [reply.text for reply in replies]
    together = [reply.json() for reply in replies]
    assert max(report["batch_size"] for report in together) > 1
    assert [report["answers"] for report in together[:4]] == [report["answers"] for report in alone]
    assert [report["prompts"] for report in together] == [[prompt] for prompt in prompts]
    # /metrics: fewer answer_batch calls than requests, so at least one batch held several.
    batches = metric(server, "neckkit_batch_size_count") - batches_before
    assert batches < 8 and metric(server, 'neckkit_batch_size_bucket{le="1.0"}') < metric(
        server, "neckkit_batch_size_count")
    assert metric(server, 'neckkit_requests_total{route="ask"}') >= 12


def test_the_openai_route_with_a_nk_and_with_a_png(server: Server, served) -> None:  # noqa: F811
    from PIL import Image

    *_, nk, photo = served
    expected = post_nk(server, nk.read_bytes(), PROMPT, max_new_tokens=4).json()
    reply = chat(server, data_url("application/x-neckkit-nk", nk.read_bytes()))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-") and body["model"] == "llava-1.5"
    assert body["choices"] == [{"index": 0, "message": {"role": "assistant", "content": expected["answer"]},
                                "finish_reason": "stop"}]
    assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    extra = body["neckkit"]
    assert extra["compressed_here"] is False and extra["bpp"] == pytest.approx(expected["bpp"])
    assert extra["latent_shape"] == expected["latent_shape"] and "entropy_decode" in extra["seconds"]
    assert (extra["codec"], extra["synthesis_calls"]) == (expected["codec"], expected["synthesis_calls"])
    png = io.BytesIO()
    with Image.open(photo) as image:
        image.convert("RGB").save(png, format="PNG")
    reply = chat(server, data_url("image/png", png.getvalue()))
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["neckkit"]["compressed_here"] is True and "compress" in body["neckkit"]["seconds"]
    assert body["choices"][0]["message"]["content"] == expected["answer"]
    assert body["neckkit"]["latent_shape"] == expected["latent_shape"]


def test_every_bad_input_gets_its_4xx_and_the_server_keeps_serving(server: Server, served, tmp_path) -> None:  # noqa: F811
    runner, host, _neck, nk, photo = served
    from conftest import invoke

    good = nk.read_bytes()
    elic = tmp_path / "elic.nk"
    assert invoke(runner, host, "compress", str(photo), "--codec", "elic", "--tiny", "-o", str(elic)).exit_code == 0
    other_weights = encode_nk(dataclasses.replace(decode_nk(good), fingerprint="0123456789abcdef"))
    params = {"prompt": PROMPT, "max_new_tokens": "2"}
    too_big = b"\0" * (MAX_BODY + 1)

    def chunked():
        for _ in range(MAX_BODY // 4096 + 2):
            yield b"\0" * 4096

    cases = {
        "random bytes": (post_raw(server, os.urandom(3000), params), 400, "bad_bitstream"),
        "truncated": (post_raw(server, good[: len(good) // 2], params), 400, "bad_bitstream"),
        "empty": (post_raw(server, b"", params), 400, "bad_bitstream"),
        "another codec": (post_raw(server, elic.read_bytes(), params), 400, "bad_bitstream"),
        "other weights": (post_nk(server, other_weights, PROMPT), 400, "bad_bitstream"),
        "declared too large": (post_raw(server, too_big, params), 413, "too_large"),
        "chunked too large": (post_raw(server, chunked(), params), 413, "too_large"),
        "no prompt (raw)": (post_raw(server, good, {"max_new_tokens": "2"}), 422, "missing_prompt"),
        "no prompt (multipart)": (post_nk(server, good), 422, "missing_prompt"),
        "blank prompt": (post_raw(server, good, {"prompt": "  "}), 422, "missing_prompt"),
        "wrong content type": (post_raw(server, good, params, "text/plain"), 415, "unsupported_media_type"),
        "no content type": (httpx.post(f"{server.url}/v1/ask", content=good, timeout=TIMEOUT), 415,
                            "unsupported_media_type"),
        "no file part": (httpx.post(f"{server.url}/v1/ask", data={"prompt": PROMPT}, files={"x": ("a", b"1")},
                                    timeout=TIMEOUT), 400, "bad_request"),
        "bad option": (post_raw(server, good, {"prompt": PROMPT, "max_new_tokens": "lots"}), 400, "bad_request"),
        "huge option": (post_raw(server, good, {"prompt": PROMPT, "max_new_tokens": "99999999"}), 400, "bad_request"),
        "bad JSON": (httpx.post(f"{server.url}/v1/chat/completions", content=b"{not json",
                                headers={"content-type": "application/json"}, timeout=TIMEOUT), 400, "bad_request"),
        "chat as text": (httpx.post(f"{server.url}/v1/chat/completions", content=b"{}",
                                    headers={"content-type": "text/plain"}, timeout=TIMEOUT), 415,
                         "unsupported_media_type"),
        "streaming": (chat(server, data_url("application/x-neckkit-nk", good), stream=True), 400, "bad_request"),
        "two choices": (chat(server, data_url("application/x-neckkit-nk", good), n=2), 400, "bad_request"),
        "http image URL": (chat(server, "https://example.com/cat.png"), 400, "bad_request"),
        "gif data URL": (chat(server, data_url("image/gif", b"GIF89a")), 415, "unsupported_media_type"),
        "bad base64": (chat(server, "data:image/png;base64,@@@@"), 400, "bad_request"),
        "broken PNG": (chat(server, data_url("image/png", b"\x89PNG\r\n\x1a\nbroken")), 400, "bad_request"),
        "chat damaged nk": (chat(server, data_url("application/x-neckkit-nk", good[:40])), 400, "bad_bitstream"),
        "chat no text": (chat(server, data_url("application/x-neckkit-nk", good), text=""), 422, "missing_prompt"),
        "chat no messages": (httpx.post(f"{server.url}/v1/chat/completions", json={"messages": []}, timeout=TIMEOUT),
                             400, "bad_request"),
    }
    for name, (reply, status, kind) in cases.items():
        assert reply.status_code == status, (name, reply.status_code, reply.text)
        error = reply.json()["error"]
        assert error["type"] == kind, (name, error)
        assert isinstance(error["message"], str) and error["message"] and "\n" not in error["message"], name
    assert "streaming is not supported" in cases["streaming"][0].json()["error"]["message"]
    assert cases["two choices"][0].json()["error"]["message"].startswith("n must be 1 (one choice per request), got 2")
    assert chat(server, data_url("application/x-neckkit-nk", good), n=1).status_code == 200
    assert "codec 'elic'" in cases["another codec"][0].json()["error"]["message"]
    assert httpx.get(f"{server.url}/health", timeout=TIMEOUT).status_code == 200
    assert post_nk(server, good, PROMPT, max_new_tokens=2).status_code == 200
    assert metric(server, 'neckkit_errors_total{kind="bad_bitstream"}') >= 6
    assert metric(server, 'neckkit_errors_total{kind="too_large"}') >= 2


def test_no_access_log_keeps_every_request_out_of_the_log(server: Server, served) -> None:  # noqa: F811
    *_, nk, _photo = served
    reply = post_nk(server, nk.read_bytes(), PROMPT, max_new_tokens=2)
    assert reply.status_code == 200 and reply.headers["x-request-id"]
    assert httpx.get(f"{server.url}/nowhere", timeout=TIMEOUT).status_code == 404
    output = server.output()
    assert "ready on" in output and "access method=" not in output and "HTTP/1.1" not in output, output


def test_sigterm_finishes_the_request_in_flight_then_exits_0(server: Server, served) -> None:  # noqa: F811
    """The last test of the module: it stops the module's server."""
    *_, nk, _photo = served
    replies: list[httpx.Response] = []
    client = threading.Thread(target=lambda: replies.append(post_nk(server, nk.read_bytes(), PROMPT,
                                                                    max_new_tokens=48)))
    client.start()
    time.sleep(0.5)  # the request has arrived; its 48 tokens take longer than that on the tiny LLM
    server.process.send_signal(signal.SIGTERM)
    client.join(timeout=60)
    assert replies and replies[0].status_code == 200, (replies, server.output())
    assert len(replies[0].json()["answers"][0]) > 0
    assert server.process.wait(timeout=30) == 0, server.output()
    assert "stopped" in server.output()


def test_without_the_serve_extra_one_line_error(served, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    runner, host, neck, *_ = served
    from conftest import invoke

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn raises ImportError
    result = invoke(runner, host, "serve", "--neck", str(neck), "--mllm", "llava-1.5", "--tiny")
    assert result.exit_code == 1
    assert result.output.strip() == "Error: neckkit serve needs the serve extra: pip install 'neckkit[serve]'"
