"""neckkit serve's isolation: a decoder that crashes or hangs, a bad prompt, slow or too many uploads and hostile
``.nk`` files each fail only their own request (a real server on a loopback port, a real HTTP client)."""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import dataclasses
import json
import shutil
import socket
import sys
import time
from pathlib import Path

import pytest
from test_ask import served  # noqa: F401  (the tiny clip-l-336 neck and a .nk of the coffee photo)
from test_serve import TIMEOUT, Server, free_port, metric, running_server

from neckkit.bitstream import NkFile, decode_nk, encode_nk
from neckkit.errors import NeckkitError
from neckkit.serving.requests import AskRequest

httpx = pytest.importorskip("httpx")

SAMPLE_PLUGINS = Path(__file__).parent / "sample_plugins"
sys.path.insert(0, str(SAMPLE_PLUGINS))
import crashing_codec  # noqa: E402  (a sample plugin: tiny TIC that crashes or hangs on a marker stream)

# `neckkit serve` with the crashing codec plugin registered the way a test registers plugins; the
# decode workers import the same plugin modules, from the same sys.path.
LAUNCHER = f"""
import sys
sys.path.insert(0, {str(SAMPLE_PLUGINS)!r})
import crashing_codec
from neckkit.cli import main
from neckkit.host.manager import get_host
get_host().register(crashing_codec, "crashing-codec", "0.1.0")
main(sys.argv[1:])
"""
PROMPTS = ["What is in the cup?", "Describe the picture.", "What colour is the table?"]
BODY_TIMEOUT = 3.0
DECODE_TIMEOUT = 3.0
MAX_UPLOADS = 4


@pytest.fixture(scope="module")
def crashing_neck(served, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, NkFile]:  # noqa: F811
    """The tiny neck, its meta.json naming codec 'crashing-tic' (the same weights), and the photo's .nk for it."""
    _runner, _host, neck, nk, _photo = served
    checkpoint = tmp_path_factory.mktemp("crashing") / "neck"
    shutil.copytree(neck / "best", checkpoint)
    meta = json.loads((checkpoint / "meta.json").read_text())
    meta["codec"]["name"] = "crashing-tic"
    (checkpoint / "meta.json").write_text(json.dumps(meta))
    return checkpoint, dataclasses.replace(decode_nk(nk.read_bytes()), codec="crashing-tic")


@pytest.fixture(scope="module")
def server(crashing_neck, tmp_path_factory: pytest.TempPathFactory):
    """Batches of 4 (what the tests send at once), 2 decode workers, short timeouts, at most 4 uploads at once."""
    checkpoint, _valid = crashing_neck
    log = tmp_path_factory.mktemp("serve-isolation") / "serve.log"
    command = [sys.executable, "-c", LAUNCHER, "serve", "--neck", str(checkpoint), "--mllm", "llava-1.5", "--tiny",
               "--port", str(free_port()), "--max-batch", "4", "--max-wait-ms", "300", "--decode-workers", "2",
               "--decode-timeout", str(DECODE_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT),
               "--max-uploads", str(MAX_UPLOADS)]
    with running_server(command, log, ready_within=120) as started:
        yield started


def marked(valid: NkFile, marker: bytes) -> bytes:
    """``valid`` whose first stream starts with ``marker`` (the crashing codec's cue), lengths kept."""
    first = valid.streams[0]
    return encode_nk(dataclasses.replace(valid, streams=(marker + first[len(marker):], *valid.streams[1:])))


def ask(server: Server, data: bytes, prompt: str, name: str = "photo.nk", tokens: int = 4) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/ask", files={"file": (name, data)},
                      data={"prompt": prompt, "max_new_tokens": str(tokens)}, timeout=TIMEOUT)


def wait_for(server: Server, name: str, value: float, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while metric(server, name) != value:
        assert time.monotonic() < deadline, f"{name} is {metric(server, name)}, not {value}, after {within:g} s"
        time.sleep(0.1)


def alone(server: Server, data: bytes, prompts: list[str]) -> list[list[str]]:
    """Each prompt's answers when it is the server's only request."""
    replies = [ask(server, data, prompt) for prompt in prompts]
    assert all(reply.status_code == 200 for reply in replies), [reply.text for reply in replies]
    return [reply.json()["answers"] for reply in replies]


def raw_upload(port: int, declared: int, sent: bytes) -> socket.socket:
    """A connection that declares a ``declared``-byte .nk body and sends only ``sent``."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"POST /v1/ask?prompt=x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-neckkit-nk\r\n"
                 f"Content-Length: {declared}\r\n\r\n".encode() + sent)
    return sock


def read_reply(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """Status, headers and JSON body of the one reply on ``sock``, read until the server closes it."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


def test_a_decoder_crash_fails_only_its_request(server: Server, crashing_neck) -> None:
    _checkpoint, valid = crashing_neck
    good = encode_nk(valid)
    expected = alone(server, good, PROMPTS)
    batches_before = metric(server, "neckkit_batch_size_count")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(ask, server, good, prompt) for prompt in PROMPTS]
        crashed = pool.submit(ask, server, marked(valid, crashing_codec.CRASH), "What is this?", "crash.nk")
        replies = [future.result() for future in futures]
    assert crashed.result().status_code == 422, crashed.result().text
    error = crashed.result().json()["error"]
    assert error["type"] == "damaged_bitstream" and "crash.nk" in error["message"] and "SIGSEGV" in error["message"]
    assert [reply.status_code for reply in replies] == [200] * 3, [reply.text for reply in replies]
    assert [reply.json()["answers"] for reply in replies] == expected
    assert max(reply.json()["batch_size"] for reply in replies) > 1  # they shared a batch with the crash
    assert metric(server, "neckkit_batch_size_count") - batches_before <= 2
    assert httpx.get(f"{server.url}/health", timeout=TIMEOUT).status_code == 200
    assert metric(server, "neckkit_decode_worker_crashes_total") == 1
    assert metric(server, 'neckkit_errors_total{kind="damaged_bitstream"}') == 1
    wait_for(server, "neckkit_decode_worker_restarts_total", 1)
    wait_for(server, "neckkit_decode_workers", 2)
    assert alone(server, good, PROMPTS[:1]) == expected[:1]
    assert "killed by SIGSEGV while decoding crash.nk" in server.output()


def test_a_hung_decoder_is_killed_after_the_timeout(server: Server, crashing_neck) -> None:
    _checkpoint, valid = crashing_neck
    start = time.monotonic()
    reply = ask(server, marked(valid, crashing_codec.HANG), "What is this?", "hang.nk")
    assert DECODE_TIMEOUT <= time.monotonic() - start < DECODE_TIMEOUT + 10
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["type"] == "damaged_bitstream" and "hang.nk" in error["message"]
    assert "longer than 3 s" in error["message"]
    assert metric(server, "neckkit_decode_timeouts_total") == 1
    wait_for(server, "neckkit_decode_workers", 2)
    assert ask(server, encode_nk(valid), PROMPTS[0]).status_code == 200


def test_a_prompt_that_is_not_unicode_fails_alone_in_its_batch(server: Server, crashing_neck) -> None:
    _checkpoint, valid = crashing_neck
    good = encode_nk(valid)
    expected = alone(server, good, PROMPTS)
    url = "data:application/x-neckkit-nk;base64," + base64.b64encode(good).decode()
    body = {"model": "llava-1.5", "max_tokens": 4, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is \ud800 this?"}, {"type": "image_url", "image_url": {"url": url}}]}]}
    content = json.dumps(body).encode()  # ASCII: the lone surrogate travels as the JSON escape \ud800

    def chat() -> httpx.Response:
        return httpx.post(f"{server.url}/v1/chat/completions", content=content,
                          headers={"content-type": "application/json"}, timeout=TIMEOUT)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(ask, server, good, prompt) for prompt in PROMPTS]
        bad = pool.submit(chat)
        replies = [future.result() for future in futures]
    assert bad.result().status_code == 400, bad.result().text
    assert bad.result().json()["error"]["type"] == "bad_request"
    assert "not valid Unicode" in bad.result().json()["error"]["message"]
    assert [reply.status_code for reply in replies] == [200] * 3, [reply.text for reply in replies]
    assert [reply.json()["answers"] for reply in replies] == expected


def test_a_slow_body_gets_408_and_its_connection_closed(server: Server, crashing_neck) -> None:
    _checkpoint, valid = crashing_neck
    good = encode_nk(valid)
    port = int(server.url.rsplit(":", 1)[1])
    start = time.monotonic()
    with raw_upload(port, len(good), good[:10]) as sock:
        status, headers, body = read_reply(sock)  # returns only once the server has closed the connection
    assert BODY_TIMEOUT <= time.monotonic() - start < BODY_TIMEOUT + 5
    assert status == 408 and headers["connection"] == "close"
    assert body["error"]["type"] == "body_timeout" and "--body-timeout" in body["error"]["message"]
    assert metric(server, 'neckkit_errors_total{kind="body_timeout"}') >= 1
    assert ask(server, good, PROMPTS[0]).status_code == 200


def test_uploads_over_the_bound_get_503_at_once(server: Server, crashing_neck) -> None:
    _checkpoint, valid = crashing_neck
    good = encode_nk(valid)
    port = int(server.url.rsplit(":", 1)[1])
    slow = [raw_upload(port, len(good), good[:10]) for _ in range(MAX_UPLOADS)]
    try:
        wait_for(server, "neckkit_uploads_in_progress", MAX_UPLOADS, within=BODY_TIMEOUT / 2)
        start = time.monotonic()
        refused = ask(server, good, PROMPTS[0])
        assert time.monotonic() - start < 1.0
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["type"] == "busy" and "--max-uploads" in refused.json()["error"]["message"]
        assert [read_reply(sock)[0] for sock in slow] == [408] * MAX_UPLOADS
    finally:
        for sock in slow:
            sock.close()
    wait_for(server, "neckkit_uploads_in_progress", 0, within=5)
    assert ask(server, good, PROMPTS[0]).status_code == 200
    assert metric(server, 'neckkit_errors_total{kind="busy"}') >= 1


def test_hundreds_of_crafted_uploads_leave_the_good_answers_unchanged(server: Server, crashing_neck) -> None:
    from neckkit.bitstream.hostile import crafted_files

    _checkpoint, valid = crashing_neck
    good = encode_nk(valid)
    expected = alone(server, good, PROMPTS[:1])[0]
    crafted = list(crafted_files(valid, count=200, seed=18))
    for index in (50, 100, 150, 199):  # and four that kill their decode worker, as a crafted stream may
        crafted[index] = ("worker-crash", marked(valid, crashing_codec.CRASH))
    crashes_before = metric(server, "neckkit_decode_worker_crashes_total")
    outcomes: collections.Counter[str] = collections.Counter()
    good_answers = []

    def send(item: tuple[str, bytes]) -> tuple[str, str]:
        kind, data = item
        try:
            return kind, str(ask(server, data, "What is this?", f"{kind}.nk", tokens=2).status_code)
        except httpx.HTTPError as error:
            return kind, type(error).__name__

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for start in range(0, len(crafted), 20):
            for kind, outcome in pool.map(send, crafted[start : start + 20]):
                outcomes[outcome] += 1
                if not outcome.startswith(("2", "4")):
                    pytest.fail(f"crafted {kind}: {outcome}\n{server.output()[-3000:]}")
            reply = ask(server, good, PROMPTS[0])
            assert reply.status_code == 200, reply.text
            good_answers.append(reply.json()["answers"])
    assert good_answers == [expected] * 10, outcomes
    assert sum(outcomes.values()) == 200 and outcomes["400"] + outcomes["422"] > 100, outcomes
    assert outcomes["422"] >= 4 and metric(server, "neckkit_decode_worker_crashes_total") == crashes_before + 4
    assert server.process.poll() is None and httpx.get(f"{server.url}/health", timeout=TIMEOUT).status_code == 200
    wait_for(server, "neckkit_decode_workers", 2)


def test_the_batcher_answers_each_request_alone_when_a_batch_raises() -> None:
    from neckkit.serving.batcher import Batcher

    calls: list[list[str]] = []

    def answer_batch(requests):
        prompts = [request.prompts[0] for request in requests]
        calls.append(prompts)
        if "boom" in prompts:
            raise TypeError("the whole batch failed")
        return [f"answer to {prompt}" for prompt in prompts]

    async def run() -> list[object]:
        batcher = Batcher(answer_batch, max_batch=4, max_wait_ms=50)
        submitted = [batcher.submit(AskRequest(b"nk", [prompt])) for prompt in ("a", "boom", "c")]
        results = await asyncio.gather(*submitted, return_exceptions=True)
        await batcher.close()
        return results

    first, failed, third = asyncio.run(run())
    assert (first, third) == ("answer to a", "answer to c")
    assert isinstance(failed, TypeError)
    assert calls == [["a", "boom", "c"], ["a"], ["boom"], ["c"]]


def test_a_malformed_worker_reply_is_refused() -> None:
    from neckkit.serving.decode_pool import _latent
    from neckkit.serving.decode_worker import pack_reply, unpack_reply

    header, data = unpack_reply(pack_reply("ok", b"\0" * 24, shape=[1, 2, 3, 1], synthesis_calls=0))
    y_hat, calls = _latent(header, data, "x.nk")
    assert list(y_hat.shape) == [1, 2, 3, 1] and calls == 0
    for bad in (pack_reply("ok", b"\0" * 20, shape=[1, 2, 3, 1], synthesis_calls=0),
                pack_reply("ok", b"\0" * 24, shape=[2, 1, 3, 1], synthesis_calls=0),
                pack_reply("ok", b"", shape="[1]")):
        with pytest.raises(NeckkitError, match="does not hold"):
            _latent(*unpack_reply(bad), "x.nk")
    with pytest.raises(NeckkitError, match="malformed"):
        unpack_reply(b"\xff\xff\xff\xff{")
    with pytest.raises(NeckkitError, match="damaged"):
        _latent(*unpack_reply(pack_reply("error", message="x.nk: damaged")), "x.nk")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the memory cap is Linux's RLIMIT_AS")
def test_a_decode_worker_cannot_map_more_than_its_cap() -> None:
    import subprocess

    code = ("from neckkit.serving.decode_worker import cap_memory\n"
            "cap_memory({cap})\n"
            "try:\n    data = bytearray(256 << 20)\nexcept MemoryError:\n    print('refused')\nelse:\n    print('mapped')\n")
    results = [subprocess.run([sys.executable, "-c", code.format(cap=cap)], capture_output=True, text=True,
                              timeout=60).stdout.strip() for cap in (64, 1024)]
    assert results == ["refused", "mapped"]
