"""neckkit ask --server: the client of a real `neckkit serve` subprocess on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cli_workspace, invoke
from neckkit.samples import sample_images

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """A tiny clip-l-336 neck, a photo and its .nk, and `neckkit serve` answering with them."""
    with cli_workspace(tmp_path_factory, "ask-client") as (runner, host, folder):
        neck, nk, photo = folder / "neck", folder / "photo.nk", sample_images()[2]
        trained = invoke(runner, host, "train", "--codec", "tic", "--encoder", "clip-l-336", "--tiny", "--max-steps",
                         "2", "--out", str(neck), "--no-progress")
        assert trained.exit_code == 0, trained.output
        compressed = invoke(runner, host, "compress", str(photo), "--codec", "tic", "--tiny", "-o", str(nk))
        assert compressed.exit_code == 0, compressed.output
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        log = (folder / "serve.log").open("w")
        process = subprocess.Popen([sys.executable, "-m", "neckkit", "serve", "--neck", str(neck), "--mllm",
                                    "llava-1.5", "--tiny", "--host", "127.0.0.1", "--port", str(port),
                                    "--max-batch", "4"], stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 240
            while True:
                assert process.poll() is None, (folder / "serve.log").read_text()
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "the server was not ready in 240 s"
                time.sleep(0.3)
            yield runner, host, neck, nk, photo, url, folder
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            log.close()


def ask(served, *args: str, server: bool = True) -> tuple[int, str]:
    runner, host, neck, _nk, _photo, url, _folder = served
    where = ["--server", url] if server else ["--neck", str(neck), "--mllm", "llava-1.5", "--tiny"]
    result = invoke(runner, host, "ask", *args, *where, "--max-new-tokens", "4")
    # stdout holds the answers; stderr the error line, or the tiny models' placeholder notice on success
    return result.exit_code, result.stdout if result.exit_code == 0 else result.stderr


def test_a_bitstream_answered_by_the_server_prints_what_the_local_ask_prints(served) -> None:
    nk = served[3]
    local_code, local = ask(served, str(nk), "--prompt", "What is this?", "--prompt", "Colour?", "--json", server=False)
    code, remote = ask(served, str(nk), "--prompt", "What is this?", "--prompt", "Colour?", "--json")
    assert local_code == 0 and code == 0, remote
    local_report, remote_report = json.loads(local), json.loads(remote)
    assert list(remote_report) == list(local_report)  # the same fields, in the same order
    seconds = remote_report.pop("seconds")
    local_report.pop("seconds")
    assert remote_report == local_report  # answers, bpp, latent shape, codec, source: all equal
    assert {"read", "entropy_decode", "neck", "mllm"} <= set(seconds) and "load_mllm" not in seconds
    assert ask(served, str(nk), "--prompt", "What is this?") == ask(served, str(nk), "--prompt", "What is this?",
                                                                    server=False)


def test_an_image_goes_through_the_chat_route_and_gives_the_local_answer(served) -> None:
    photo = served[4]
    local = json.loads(ask(served, str(photo), "--prompt", "Describe it.", "--json", server=False)[1])
    code, output = ask(served, str(photo), "--prompt", "Describe it.", "--json")
    assert code == 0, output
    remote = json.loads(output)
    assert list(remote) == list(local) and remote["answers"] == local["answers"] and remote["source"] == str(photo)
    assert remote["codec"] == local["codec"] == "tic" and remote["synthesis_calls"] == 0
    assert remote["bpp"] == pytest.approx(local["bpp"]) and remote["latent_shape"] == local["latent_shape"]


def test_server_errors_are_one_line(served, tmp_path: Path) -> None:
    nk = served[3]
    damaged = tmp_path / "damaged.nk"
    data = bytearray(nk.read_bytes())
    data[len(data) // 2] ^= 0x40
    damaged.write_bytes(bytes(data))
    code, output = ask(served, str(damaged), "--prompt", "x")
    assert code == 1 and output.startswith("Error: ") and "HTTP 400" in output
    assert len(output.strip().splitlines()) == 1
    code, output = ask(served, str(nk), "--prompt", "x", "--uncompressed")
    assert code == 2 and "--uncompressed is not served" in output  # usage errors exit 2


def test_without_server_neck_and_mllm_are_required_and_an_unreachable_server_is_one_line(served) -> None:
    runner, host, neck, nk, *_ = served
    result = invoke(runner, host, "ask", str(nk), "--prompt", "x", "--mllm", "llava-1.5")
    assert result.exit_code == 2 and "--neck required" in result.output  # usage errors exit 2
    result = invoke(runner, host, "ask", str(nk), "--prompt", "x", "--server", f"http://127.0.0.1:{_free_port()}")
    assert result.exit_code == 1 and result.output.startswith("Error: cannot reach the server")
    assert len(result.output.strip().splitlines()) == 1
    result = invoke(runner, host, "ask", str(nk), "--prompt", "x", "--server", "http://127.0.0.1:1", "--neck", str(neck))
    assert result.exit_code == 2 and "--neck: local model options" in result.output
