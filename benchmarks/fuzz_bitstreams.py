"""Fuzz every built-in codec's decoder with crafted .nk files in child processes; count crashes, hangs and errors.

    python benchmarks/fuzz_bitstreams.py [--cases 10000] [--jobs 2] [--timeout 20] [--json]
    python benchmarks/fuzz_bitstreams.py --codecs my-codec --codec-opt tiny=true --cases 2000

Each codec family (tiny, seeded random weights, unless --codec-opt says otherwise) compresses a bundled
photo; neckkit.bitstream.hostile makes hostile variants of that file (valid containers: damaged streams,
declared images the streams cannot hold, wrong shapes and padding, changed identities), and --jobs
FuzzWorker processes decode them as ``neckkit decompress`` does (decode_nk, check_codec, decode_latent),
each case under --timeout seconds. Reports crashes (a worker died), hangs (timeouts), allocations over the
worker's memory limit, other exceptions and bad decodes (wrong shape or non-finite): the bugs; then clean
errors grouped by their first words, correct decodes, cases/s and the workers' peak RSS. Exits 1 if any
case was a bug. ``--decoder unchecked`` calls the codecs' own decompress_latent instead of decode_latent
(no header or result checks).
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neckkit.bitstream.fuzz_worker import DEFAULT_MEMORY_LIMIT, FAILURES, SOURCE, FuzzWorker, Reference, classify
from neckkit.bitstream.hostile import crafted_files
from neckkit.bitstream.nk_format import decode_nk
from neckkit.samples import sample_images

CODECS = ("tic", "elic", "bmshj2018-hyperprior", "mbt2018-mean", "cheng2020-anchor")
TINY = {"tiny": True}
CHUNK = 500  # cases per work unit; each unit is seeded on its own and starts with every kind and pair
LISTED = 20  # bug cases listed in full


def error_group(message: str, words: int = 5) -> str:
    """The first ``words`` words of a NeckkitError, to group alike errors: the file name dropped, words with
    digits (sizes, fingerprints) as one N."""
    text = message[len(SOURCE) + 2 :] if message.startswith(f"{SOURCE}: ") else message
    return " ".join(re.sub(r"N(?: N)+", "N", re.sub(r"\S*\d\S*", "N", text)).split()[:words])


@dataclass
class Tally:
    """What the cases did, for the whole run and per codec."""

    categories: Counter[str] = field(default_factory=Counter)
    per_codec: dict[str, Counter[str]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    bug_kinds: Counter[str] = field(default_factory=Counter)  # "category codec kind"
    bugs: list[dict[str, Any]] = field(default_factory=list)
    slowest: list[tuple[float, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def progress(self) -> str:
        with self.lock:
            bugs = sum(self.categories[name] for name in FAILURES)
            return f"{sum(self.categories.values())} done, {bugs} bugs ({', '.join(sorted(self.bug_categories()))})"

    def bug_categories(self) -> list[str]:
        return [f"{name} {self.categories[name]}" for name in FAILURES if self.categories[name]]

    def add(self, codec: str, kind: str, category: str, detail: str, seconds: float, data: bytes,
            save: Path | None) -> None:
        with self.lock:
            self.categories[category] += 1
            self.per_codec.setdefault(codec, Counter())[category] += 1
            self.slowest = sorted([*self.slowest, (seconds, codec, kind)], reverse=True)[:5]
            if category == "clean-error":
                self.errors[error_group(detail)] += 1
            elif category in FAILURES:
                self.bug_kinds[f"{category} {codec} {kind}"] += 1
                if len(self.bugs) < LISTED:
                    self.bugs.append({"codec": codec, "kind": kind, "category": category, "detail": detail})
                if save is not None:
                    save.mkdir(parents=True, exist_ok=True)
                    name = f"{category}-{codec}-{kind}-{sum(self.categories.values())}.nk"
                    (save / name).write_bytes(data)


def run_worker(units: queue.Queue, args: argparse.Namespace, tally: Tally, peaks: list[int],
               restarts: list[int], problems: list[BaseException]) -> None:
    """One FuzzWorker draining work units ``(codec, unit seed, count)``; what stops it goes to ``problems``."""
    try:
        drain(units, args, tally, peaks, restarts)
    except BaseException as error:  # e.g. a codec that cannot make its reference file: the run is void
        problems.append(error)


def drain(units: queue.Queue, args: argparse.Namespace, tally: Tally, peaks: list[int], restarts: list[int]) -> None:
    image = args.image or sample_images()[1]
    references: dict[str, Reference] = {}
    limit = args.memory_limit_gib << 30 if args.memory_limit_gib else None
    with FuzzWorker(decoder=args.decoder, memory_limit=limit) as worker:
        while True:
            try:
                codec, seed, count = units.get_nowait()
            except queue.Empty:
                break
            if codec not in references:
                references[codec] = worker.encode(codec, args.options, image)
            reference = references[codec]
            for kind, data in crafted_files(decode_nk(reference.data), count=count, seed=seed):
                outcome = worker.decode(codec, args.options, data, timeout=args.timeout)
                category = classify(outcome, data, reference)
                detail = outcome.detail or f"shape {list(outcome.shape)}, finite {outcome.finite}"
                tally.add(codec, kind, category, detail, outcome.seconds, data, args.save_bugs)
            if not args.quiet:
                print(f"{codec}: {count} more cases; {tally.progress()}", file=sys.stderr, flush=True)
        peaks.append(worker.peak_rss)
        restarts.append(worker.restarts)


def fuzz(args: argparse.Namespace) -> dict[str, Any]:
    """Run the cases; the report as a JSON-ready dict."""
    units: queue.Queue = queue.Queue()
    per_codec = [args.cases // len(args.codecs) + (index < args.cases % len(args.codecs))
                 for index in range(len(args.codecs))]
    for index, (codec, total) in enumerate(zip(args.codecs, per_codec, strict=True)):
        for chunk, start in enumerate(range(0, total, CHUNK)):
            units.put((codec, args.seed * 1_000_003 + index * 10_007 + chunk, min(CHUNK, total - start)))
    tally, peaks, restarts, problems = Tally(), [], [], []
    started = time.perf_counter()
    threads = [threading.Thread(target=run_worker, args=(units, args, tally, peaks, restarts, problems))
               for _ in range(args.jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if problems:
        raise problems[0]
    seconds = time.perf_counter() - started
    done = sum(tally.categories.values())
    bugs = sum(tally.categories[name] for name in FAILURES)
    return {
        "cases": done,
        "codecs": list(args.codecs),
        "decoder": args.decoder,
        "codec_options": args.options,
        "seed": args.seed,
        "jobs": args.jobs,
        "timeout_s": args.timeout,
        "memory_limit_gib": args.memory_limit_gib,
        "crashes": tally.categories["crash"],
        "hangs": tally.categories["hang"],
        "memory": tally.categories["memory"],
        "other_exceptions": tally.categories["other"],
        "bad_decodes": tally.categories["bad-decode"],
        "clean_errors": tally.categories["clean-error"],
        "decodes": tally.categories["decoded"],
        "bugs": bugs,
        "clean_errors_by_message": dict(tally.errors.most_common()),
        "per_codec": {codec: dict(counts) for codec, counts in tally.per_codec.items()},
        "bugs_by_kind": dict(tally.bug_kinds.most_common()),
        "bug_cases": tally.bugs,
        "slowest_cases": [{"seconds": round(s, 3), "codec": codec, "kind": kind} for s, codec, kind in tally.slowest],
        "worker_restarts": sum(restarts),
        "seconds": round(seconds, 1),
        "cases_per_second": round(done / seconds, 1) if seconds else 0.0,
        "peak_worker_rss_mib": round(max(peaks, default=0) / (1 << 20)),
    }


def print_report(report: dict[str, Any]) -> None:
    print(f"{report['cases']} crafted files, {len(report['codecs'])} codecs, decoder {report['decoder']}, "
          f"{report['jobs']} workers: {report['seconds']} s, {report['cases_per_second']} cases/s, "
          f"peak worker RSS {report['peak_worker_rss_mib']} MiB, {report['worker_restarts']} worker restarts")
    print("| outcome | cases |\n|---|---|")
    for key in ("crashes", "hangs", "memory", "other_exceptions", "bad_decodes", "clean_errors", "decodes"):
        print(f"| {key.replace('_', ' ')} | {report[key]} |")
    print("\n| clean error (first words) | cases |\n|---|---|")
    for message, count in report["clean_errors_by_message"].items():
        print(f"| {message} | {count} |")
    if report["bugs_by_kind"]:
        print("\n| bug (category, codec, kind) | cases |\n|---|---|")
        for name, count in report["bugs_by_kind"].items():
            print(f"| {name} | {count} |")
        for case in report["bug_cases"]:
            print(f"- {case['category']} {case['codec']} {case['kind']}: {case['detail'][:200]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="crafted files in all, spread over the codecs")
    parser.add_argument("--codecs", nargs="+", default=list(CODECS), help="registered codecs (built with tiny=True)")
    parser.add_argument("--codec-opt", action="append", default=[],
                        help="factory option name=value for every codec, replacing the default tiny=true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one torch thread each)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--memory-limit-gib", type=int, default=DEFAULT_MEMORY_LIMIT >> 30,
                        help="each worker's address-space limit; 0 for none")
    parser.add_argument("--decoder", choices=["decode_latent", "unchecked"], default="decode_latent")
    parser.add_argument("--image", help="the image each codec compresses (default: the bundled chelsea.jpg)")
    parser.add_argument("--save-bugs", type=Path, help="write every case that was a bug into this folder")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args()
    if args.codec_opt:
        from neckkit.cli.components import parse_component_options  # imports torch: only when needed

        args.options = parse_component_options(args.codec_opt)
    else:
        args.options = dict(TINY)
    report = fuzz(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    sys.exit(1 if report["bugs"] else 0)


if __name__ == "__main__":
    main()
