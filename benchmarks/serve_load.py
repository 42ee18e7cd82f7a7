"""A bounded load test of ``neckkit serve`` on 127.0.0.1, then a storm of malformed requests.

    python benchmarks/serve_load.py [--requests 48] [--malformed 1000] [--crafted 300] [--out serve_load.json]
    python benchmarks/serve_load.py --neck runs/neck336 --nk photo.nk     # your own tiny neck and bitstream
    python benchmarks/serve_load.py --decode-workers 0                    # entropy decoding in the server process
    python benchmarks/serve_load.py --no-warm-up                          # what the first request costs cold

Everything stays on the loopback interface and stops by itself. Without ``--neck`` it trains a tiny
clip-l-336 neck on tiny ``--codec`` (default ELIC, the README's quick-start codec; 2 steps) and
compresses a bundled photo with it, in a temporary folder. Then, for batching on (``--max-batch 16``)
and off (``--max-batch 1``), it starts ``neckkit serve --tiny`` on a free port, waits for ``/health``,
times the first request (what the warm-up is for), sends ``--requests`` ``POST /v1/ask`` requests from
1, 4 and 16 concurrent clients (greedy, ``--max-new-tokens``), and stops the server with SIGTERM, timing
how long the idle server takes to exit. It times
``--cli-runs`` runs of one ``neckkit ask`` process per question (what a question cost before the
server), and fires ``--malformed`` bad requests (random bytes, truncated and bit-flipped ``.nk``,
a huge declared Content-Length, bad JSON, wrong content types, missing prompts, ...) at a batched
server, counting crashes (5xx or connection errors), hangs (no reply within ``--timeout``) and any
reply that is not a 4xx; ``/health`` must still answer 200 afterwards. Then it sends ``--crafted``
hostile ``.nk`` files (valid containers with damaged streams or implausible geometry, from
:func:`neckkit.bitstream.hostile.crafted_files`), one good request after every 20 of them, and checks
that every good answer equals the one before the storm, that no reply is a 5xx, and how many decode
workers crashed or hung (``/metrics``). Both servers run with ``--decode-workers`` (default: the
server's own default). Prints a table; ``--out`` writes the same figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

HOST = "127.0.0.1"
NECKKIT = [sys.executable, "-m", "neckkit"]


def neckkit_command() -> list[str]:
    """``neckkit`` from this interpreter's environment (the console script next to it, else ``-m``)."""
    script = Path(sys.executable).with_name("neckkit")
    return [str(script)] if script.exists() else NECKKIT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def run_cli(*args: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run([*neckkit_command(), *args], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"neckkit {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return time.perf_counter() - start


class Server:
    """``neckkit serve --tiny`` on a free loopback port; ``stop`` sends SIGTERM and times the exit."""

    def __init__(self, neck: Path, mllm: str, max_batch: int, max_wait_ms: float, env: dict[str, str],
                 log: Path, extra: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log = log.open("w")
        command = [*neckkit_command(), "serve", "--neck", str(neck), "--mllm", mllm, "--tiny", "--host", HOST,
                   "--port", str(self.port), "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms),
                   *(extra or [])]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.exit_seconds: float | None = None  # from SIGTERM to exit, once stopped

    def wait_ready(self, limit: float = 300.0) -> float:
        start = time.perf_counter()
        while time.perf_counter() - start < limit:
            if self.process.poll() is not None:
                raise SystemExit(f"neckkit serve exited with {self.process.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                    return time.perf_counter() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise SystemExit(f"neckkit serve was not ready within {limit:g} s; see {self.log.name}")

    def stop(self) -> int | None:
        if self.process.poll() is None:
            start = time.perf_counter()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
                self.exit_seconds = time.perf_counter() - start
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


# -- load -------------------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def load(url: str, nk: bytes, clients: int, requests: int, max_new_tokens: int, timeout: float) -> dict[str, Any]:
    """``requests`` asks from ``clients`` threads, each with its own connection; latency per request."""
    counter = iter(range(requests))
    lock = threading.Lock()
    latencies: list[float] = []
    batch_sizes: list[int] = []
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=url, timeout=timeout) as http:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                start = time.perf_counter()
                try:
                    reply = http.post("/v1/ask", params={"prompt": f"What is in picture {index % 4}?",
                                                         "max_new_tokens": max_new_tokens},
                                      content=nk, headers={"content-type": "application/x-neckkit-nk"})
                    seconds = time.perf_counter() - start
                    if reply.status_code != 200:
                        failures.append(f"HTTP {reply.status_code}: {reply.text[:200]}")
                        continue
                    with lock:
                        latencies.append(seconds)
                        batch_sizes.append(int(reply.json().get("batch_size", 1)))
                except httpx.HTTPError as error:
                    failures.append(f"{type(error).__name__}: {error}")

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    wall = time.perf_counter() - start
    return {"clients": clients, "requests": requests, "ok": len(latencies), "failures": len(failures),
            "first_failures": failures[:3], "seconds": round(wall, 3),
            "requests_per_s": round(len(latencies) / wall, 3) if wall else None,
            "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
            "p99_ms": round(1000 * percentile(latencies, 0.99), 1) if latencies else None,
            "mean_batch_size": round(statistics.mean(batch_sizes), 2) if batch_sizes else None}


# -- malformed requests -------------------------------------------------------------------------------


def raw_request(port: int, head: str, body: bytes, timeout: float) -> int | str:
    """One HTTP/1.1 request over a plain socket (for lies httpx will not tell): the status, or an outcome."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(head.encode("latin-1") + body)
            received = b""
            while b"\r\n" not in received:
                chunk = sock.recv(4096)
                if not chunk:
                    return "connection"
                received += chunk
            return int(received.split(b" ", 2)[1])
    except TimeoutError:
        return "hang"
    except (OSError, ValueError, IndexError):
        return "connection"


def malformed_cases(nk: bytes, count: int, max_body: int, seed: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """``count`` bad requests, cycling through the kinds; each is (kind, how to send it)."""
    rng = random.Random(seed)
    nk_type = {"content-type": "application/x-neckkit-nk"}
    prompt = {"prompt": "What is this?", "max_new_tokens": 2}

    def flipped() -> bytes:
        data = bytearray(nk)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)

    def chat(url: str, **extra: Any) -> dict[str, Any]:
        body = {"model": "x", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": url}}]}],
            "max_tokens": 2}
        body.update(extra)
        return body

    import base64

    b64 = base64.b64encode(nk).decode()
    kinds = [
        ("random_bytes", lambda: {"params": prompt, "content": rng.randbytes(rng.randint(0, 4096)), "headers": nk_type}),
        ("truncated_nk", lambda: {"params": prompt, "content": nk[: rng.randrange(len(nk))], "headers": nk_type}),
        ("bitflipped_nk", lambda: {"params": prompt, "content": flipped(), "headers": nk_type}),
        ("bitflipped_nk_multipart", lambda: {"data": prompt, "files": {"file": ("x.nk", flipped(), "application/x-neckkit-nk")}}),
        ("truncated_nk_multipart", lambda: {"data": prompt, "files": {"file": ("x.nk", nk[: rng.randrange(len(nk))], "application/octet-stream")}}),
        ("missing_prompt", lambda: {"content": nk, "headers": nk_type}),
        ("missing_prompt_multipart", lambda: {"files": {"file": ("x.nk", nk, "application/x-neckkit-nk")}}),
        ("missing_file_multipart", lambda: {"data": prompt, "files": {"other": ("x.txt", b"hello", "text/plain")}}),
        ("wrong_content_type", lambda: {"params": prompt, "content": nk,
                                        "headers": {"content-type": rng.choice(["text/plain", "image/png", "application/xml"])}}),
        ("bad_option", lambda: {"params": {**prompt, "max_new_tokens": rng.choice(["abc", "-5", "1e99", "10000000"])},
                                "content": nk, "headers": nk_type}),
        ("oversized_body", lambda: {"params": prompt, "content": rng.randbytes(max_body + 1 + rng.randint(0, 1024)),
                                    "headers": nk_type}),
        ("huge_content_length", "raw"),
        ("bad_json", lambda: {"route": "/v1/chat/completions", "content": rng.choice([b"{", b"[1,2", b"\xff\xfe", b"null", b'{"messages": 5}']),
                              "headers": {"content-type": "application/json"}}),
        ("chat_bad_base64", lambda: {"route": "/v1/chat/completions",
                                     "json": chat("data:application/x-neckkit-nk;base64," + "!@#" * rng.randint(1, 50))}),
        ("chat_bitflipped_nk", lambda: {"route": "/v1/chat/completions",
                                        "json": chat("data:application/x-neckkit-nk;base64," + base64.b64encode(flipped()).decode())}),
        ("chat_http_url", lambda: {"route": "/v1/chat/completions", "json": chat("http://127.0.0.1:1/x.png")}),
        ("chat_stream", lambda: {"route": "/v1/chat/completions", "json": chat("data:application/x-neckkit-nk;base64," + b64, stream=True)}),
        ("chat_no_image", lambda: {"route": "/v1/chat/completions", "json": {"model": "x", "messages": [{"role": "user", "content": "hi"}]}}),
        ("chat_file_url", lambda: {"route": "/v1/chat/completions", "json": chat("file:///etc/passwd")}),
        ("chat_bad_image", lambda: {"route": "/v1/chat/completions",
                                    "json": chat("data:image/png;base64," + base64.b64encode(rng.randbytes(200)).decode())}),
    ]
    cases = []
    for index in range(count):
        kind, make = kinds[index % len(kinds)]
        cases.append((kind, {"raw": True} if make == "raw" else make()))
    return cases


def fire_malformed(url: str, port: int, nk: bytes, count: int, max_body: int, clients: int,
                   timeout: float) -> dict[str, Any]:
    cases = malformed_cases(nk, count, max_body)
    outcomes: dict[str, dict[str, int]] = {}
    lock = threading.Lock()
    local = threading.local()

    def send(case: tuple[str, dict[str, Any]]) -> None:
        kind, spec = case
        if spec.get("raw"):
            declared = random.choice([10**12, 2**63 - 1, max_body * 1000])
            head = (f"POST /v1/ask?prompt=x HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/x-neckkit-nk\r\n"
                    f"Content-Length: {declared}\r\nConnection: close\r\n\r\n")
            outcome: int | str = raw_request(port, head, nk[:64], min(timeout, 15.0))
        else:
            if not hasattr(local, "client"):
                local.client = httpx.Client(base_url=url, timeout=timeout)
            spec = dict(spec)
            route = spec.pop("route", "/v1/ask")
            try:
                outcome = local.client.post(route, **spec).status_code
            except httpx.TimeoutException:
                outcome = "hang"
            except httpx.HTTPError:
                outcome = "connection"
        key = str(outcome)
        with lock:
            outcomes.setdefault(kind, {}).setdefault(key, 0)
            outcomes[kind][key] += 1

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, cases))
    seconds = time.perf_counter() - start
    crashes = hangs = not_4xx = 0
    for by_outcome in outcomes.values():
        for outcome, n in by_outcome.items():
            if outcome == "hang":
                hangs += n
            elif outcome == "connection" or (outcome.isdigit() and int(outcome) >= 500):
                crashes += n
            if not (outcome.isdigit() and 400 <= int(outcome) < 500):
                not_4xx += n
    return {"requests": count, "seconds": round(seconds, 2), "crashes": crashes, "hangs": hangs,
            "not_4xx": not_4xx, "by_kind": outcomes}


# -- crafted .nk files ---------------------------------------------------------------------------------


def metric(url: str, name: str) -> float | None:
    """One unlabelled value from ``/metrics``."""
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return None


def fire_crafted(url: str, nk: bytes, count: int, clients: int, max_new_tokens: int,
                 timeout: float) -> dict[str, Any]:
    """``count`` hostile .nk files, a good request after every 20; do the good answers stay the same?"""
    from neckkit.bitstream import decode_nk
    from neckkit.bitstream.hostile import crafted_files

    crafted = list(crafted_files(decode_nk(nk), count=count, seed=18))
    prompt = {"prompt": "What is in the picture?", "max_new_tokens": max_new_tokens}
    nk_type = {"content-type": "application/x-neckkit-nk"}
    before = {name: metric(url, name) for name in ("neckkit_decode_worker_crashes_total",
                                                   "neckkit_decode_timeouts_total")}
    outcomes: dict[str, dict[str, int]] = {}
    lock = threading.Lock()
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=timeout)
        return local.client

    def send(item: tuple[str, bytes]) -> None:
        kind, data = item
        try:
            outcome = str(client().post("/v1/ask", params={**prompt, "max_new_tokens": 2}, content=data,
                                        headers=nk_type).status_code)
        except httpx.TimeoutException:
            outcome = "hang"
        except httpx.HTTPError:
            outcome = "connection"
        with lock:
            by_outcome = outcomes.setdefault(kind.split("+")[0], {})
            by_outcome[outcome] = by_outcome.get(outcome, 0) + 1

    def good_answer() -> list[str] | str:
        reply = httpx.post(f"{url}/v1/ask", params=prompt, content=nk, headers=nk_type, timeout=timeout)
        return reply.json()["answers"] if reply.status_code == 200 else f"HTTP {reply.status_code}"

    expected = good_answer()
    good: list[list[str] | str] = []
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for first in range(0, len(crafted), 20):
            list(pool.map(send, crafted[first : first + 20]))
            good.append(good_answer())
    seconds = time.perf_counter() - start
    totals: dict[str, int] = {}
    for by_outcome in outcomes.values():
        for outcome, n in by_outcome.items():
            totals[outcome] = totals.get(outcome, 0) + n
    after = {name: metric(url, name) for name in before}
    return {"requests": len(crafted), "good_requests": len(good), "seconds": round(seconds, 2),
            "outcomes": totals, "by_kind": outcomes,
            "good_answers_unchanged": all(answer == expected for answer in good),
            "server_errors": sum(n for outcome, n in totals.items() if not outcome.startswith(("2", "4"))),
            "worker_crashes": (after["neckkit_decode_worker_crashes_total"] or 0)
            - (before["neckkit_decode_worker_crashes_total"] or 0),
            "decode_timeouts": (after["neckkit_decode_timeouts_total"] or 0)
            - (before["neckkit_decode_timeouts_total"] or 0)}


# -- main --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--neck", type=Path, help="a tiny neck for --mllm's encoder (default: train one, 2 steps)")
    parser.add_argument("--nk", type=Path, help="a .nk compressed with the neck's codec (default: a bundled photo)")
    parser.add_argument("--mllm", default="llava-1.5")
    parser.add_argument("--codec", default="elic", help="the tiny codec of the neck trained without --neck")
    parser.add_argument("--requests", type=int, default=48, help="requests per concurrency level")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--cli-runs", type=int, default=3)
    parser.add_argument("--malformed", type=int, default=1000)
    parser.add_argument("--malformed-clients", type=int, default=8)
    parser.add_argument("--crafted", type=int, default=300, help="hostile .nk files sent to the batched server")
    parser.add_argument("--decode-workers", type=int, help="neckkit serve --decode-workers (default: its default)")
    parser.add_argument("--no-warm-up", action="store_true", help="neckkit serve --no-warm-up (the first request cold)")
    parser.add_argument("--max-body-bytes", type=int, default=1 << 20, help="the server's default limit")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a request counts as a hang")
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="neckkit-serve-load-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NECKKIT_CACHE_DIR": str(work / "cache")}
    figures: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "platform": platform.platform()},
                               "settings": {key: str(value) if isinstance(value, Path) else value
                                            for key, value in vars(args).items()}}
    try:
        neck, nk_path = args.neck, args.nk
        if neck is None:
            neck = work / "neck"
            print(f"training a tiny clip-l-336 neck on tiny {args.codec} (2 steps) ...", flush=True)
            run_cli("train", "--codec", args.codec, "--encoder", "clip-l-336", "--tiny", "--max-steps", "2",
                    "--out", str(neck), "--no-progress", env=env)
        if nk_path is None:
            from neckkit.samples import sample_images

            nk_path = work / "photo.nk"
            run_cli("compress", str(sample_images()[2]), "--codec", args.codec, "--tiny", "-o", str(nk_path),
                    env=env)
        nk = nk_path.read_bytes()

        print(f"timing {args.cli_runs} runs of one `neckkit ask` process per question ...", flush=True)
        cli_seconds = [run_cli("ask", str(nk_path), "--neck", str(neck), "--mllm", args.mllm, "--tiny",
                               "--prompt", "What is this?", "--max-new-tokens", str(args.max_new_tokens), env=env)
                       for _ in range(args.cli_runs)]
        figures["cli_ask_seconds"] = [round(s, 3) for s in cli_seconds]

        figures["load"] = {}
        for label, max_batch in (("batched", 16), ("unbatched", 1)):
            extra = ["--decode-workers", str(args.decode_workers)] if args.decode_workers is not None else []
            extra += ["--no-warm-up"] if args.no_warm_up else []
            server = Server(neck, args.mllm, max_batch, args.max_wait_ms, env, work / f"serve-{label}.log", extra)
            try:
                ready = server.wait_ready()
                first = load(server.url, nk, 1, 1, args.max_new_tokens, args.timeout)["p50_ms"]
                print(f"{label} server (--max-batch {max_batch}) ready in {ready:.1f} s; first request {first} ms",
                      flush=True)
                load(server.url, nk, 2, 4, args.max_new_tokens, args.timeout)  # the clients' warm-up, not counted
                rows = []
                for clients in args.clients:
                    row = load(server.url, nk, clients, args.requests, args.max_new_tokens, args.timeout)
                    print(f"  {clients:>2} clients: {row['requests_per_s']} req/s, p50 {row['p50_ms']} ms, "
                          f"p99 {row['p99_ms']} ms, mean batch {row['mean_batch_size']}, failures {row['failures']}",
                          flush=True)
                    rows.append(row)
                figures["load"][label] = {"max_batch": max_batch, "ready_seconds": round(ready, 2),
                                          "first_request_ms": first, "levels": rows}
                if label == "batched" and args.malformed:
                    print(f"firing {args.malformed} malformed requests ...", flush=True)
                    bad = fire_malformed(server.url, server.port, nk, args.malformed, args.max_body_bytes,
                                         args.malformed_clients, args.timeout)
                    try:
                        health = httpx.get(f"{server.url}/health", timeout=10).status_code
                    except httpx.HTTPError as error:
                        health = f"{type(error).__name__}"
                    bad["health_after"] = health
                    after = load(server.url, nk, 1, 2, args.max_new_tokens, args.timeout)
                    bad["answers_after"] = after["ok"]
                    figures["malformed"] = bad
                if label == "batched" and args.crafted:
                    print(f"sending {args.crafted} crafted .nk files between good requests ...", flush=True)
                    crafted = fire_crafted(server.url, nk, args.crafted, args.malformed_clients, args.max_new_tokens,
                                           args.timeout)
                    crafted["health_after"] = httpx.get(f"{server.url}/health", timeout=10).status_code
                    figures["crafted"] = crafted
            finally:
                block = figures["load"].setdefault(label, {})
                block["exit_code"] = server.stop()
                block["sigterm_exit_seconds"] = round(server.exit_seconds, 2) if server.exit_seconds else None

        top = max(args.clients)
        rps = {label: next((row["requests_per_s"] for row in figures["load"][label]["levels"]
                            if row["clients"] == top), None) for label in ("batched", "unbatched")}
        if rps["batched"] and rps["unbatched"]:
            figures[f"batched_over_unbatched_at_{top}"] = round(rps["batched"] / rps["unbatched"], 2)
        cli_median = statistics.median(cli_seconds)
        single = next(row for row in figures["load"]["batched"]["levels"] if row["clients"] == min(args.clients))
        figures["per_request_seconds"] = {
            "cli_process": round(cli_median, 3),
            "server_latency_1_client": round(single["p50_ms"] / 1000, 4),
            f"server_throughput_{top}_clients": round(1 / rps["batched"], 4) if rps["batched"] else None,
        }
        figures["saving_vs_cli"] = {
            "latency_1_client": round(cli_median / (single["p50_ms"] / 1000), 1),
            f"throughput_{top}_clients": round(cli_median * rps["batched"], 1) if rps["batched"] else None,
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print_table(figures, args)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.out}")


def print_table(figures: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print("| server | clients | req/s | p50 ms | p99 ms | mean batch | failures |")
    print("|---|---|---|---|---|---|---|")
    for label, block in figures["load"].items():
        for row in block.get("levels", []):
            print(f"| {label} (--max-batch {block['max_batch']}) | {row['clients']} | {row['requests_per_s']} | "
                  f"{row['p50_ms']} | {row['p99_ms']} | {row['mean_batch_size']} | {row['failures']} |")
    top = max(args.clients)
    print(f"\nbatched / unbatched at {top} clients: {figures.get(f'batched_over_unbatched_at_{top}')}x")
    print(f"one `neckkit ask` process per question: {figures['cli_ask_seconds']} s "
          f"(per-request: {figures['per_request_seconds']}; saving: {figures['saving_vs_cli']})")
    bad = figures.get("malformed")
    if bad:
        print(f"malformed: {bad['requests']} requests in {bad['seconds']} s: {bad['crashes']} crashes, "
              f"{bad['hangs']} hangs, {bad['not_4xx']} not 4xx; /health after: {bad['health_after']}; "
              f"good answers after: {bad['answers_after']}")
        for kind, outcomes in sorted(bad["by_kind"].items()):
            print(f"  {kind}: {outcomes}")
    crafted = figures.get("crafted")
    if crafted:
        print(f"crafted .nk: {crafted['requests']} files in {crafted['seconds']} s: replies {crafted['outcomes']}, "
              f"{crafted['server_errors']} 5xx or connection errors, {crafted['worker_crashes']:g} worker crashes, "
              f"{crafted['decode_timeouts']:g} decode timeouts; {crafted['good_requests']} good requests between "
              f"them, answers unchanged: {crafted['good_answers_unchanged']}; /health after: "
              f"{crafted['health_after']}")
    print("first request after ready (ms):",
          {label: block.get("first_request_ms") for label, block in figures["load"].items()})
    print("SIGTERM exit codes:", {label: block.get("exit_code") for label, block in figures["load"].items()},
          "seconds to exit:", {label: block.get("sigterm_exit_seconds") for label, block in figures["load"].items()})


if __name__ == "__main__":
    main()
