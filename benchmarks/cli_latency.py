"""Wall time of the CLI's bad-input errors and of a tiny ``compress``, and where its imports go.

    python benchmarks/cli_latency.py [--repeats 3] [--top 12] [--json]

Each case runs ``python -m neckkit ...`` in a fresh process (what a user waits for, interpreter start-up
included) ``--repeats`` times and reports the median and fastest wall time, the median CPU time of the
process (user + system: less sensitive than wall time to other work on a shared machine), the exit code
and the first line of stderr. The bad-input cases fail before torch, CompressAI or any model is imported
(docs/cli.md, "Errors"); the tiny ``compress`` of the smallest bundled photo pays for the imports and one
small encode. Then ``python -X importtime`` of that ``compress`` shows where its start-up goes: the heaviest
imports of one package by another (who pulled in what), and self time summed by top-level package.

On a busy 2-core machine torch's second OpenMP thread spin-waits for a core and inflates the encode many
times over; ``OMP_NUM_THREADS=1 python benchmarks/cli_latency.py`` keeps the process on one thread, and its
CPU column then approximates what an idle machine's wall clock shows.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from neckkit.samples import sample_images


def smallest_photo() -> str:
    """The bundled photo with the fewest pixels (chelsea.jpg, 451 x 300)."""
    def pixels(path: Path) -> int:
        with Image.open(path) as image:
            return image.width * image.height

    return str(min(sample_images(), key=pixels))


PHOTO = smallest_photo()


def cases(work: Path) -> dict[str, list[str]]:
    """Case name -> neckkit arguments; ``tiny compress`` runs first and writes the ``.nk`` later cases read."""
    nk, missing_run = str(work / "tiny.nk"), str(work / "no-run")
    return {
        "tiny compress": ["compress", PHOTO, "--codec", "tic", "--tiny", "-o", nk],
        "unknown --codec": ["compress", PHOTO, "--codec", "tikc", "--tiny", "-o", str(work / "a.nk")],
        "missing image": ["compress", str(work / "missing.jpg"), "--codec", "tic", "--tiny", "-o", str(work / "b.nk")],
        "missing --neck": ["compress", PHOTO, "--neck", missing_run, "-o", str(work / "c.nk")],
        ".nk given to compress": ["compress", nk, "--codec", "tic", "--tiny", "-o", str(work / "d.nk")],
        "JPEG given to decompress": ["decompress", PHOTO, "-o", str(work / "e.png")],
        "ask, missing --neck": ["ask", nk, "--neck", missing_run, "--mllm", "llava-1.5", "--tiny", "--prompt", "What?"],
        "train, unknown --encoder": ["train", "--codec", "tic", "--encoder", "clip-x", "--tiny", "--out", missing_run],
        "ELIC without weights": ["compress", PHOTO, "--codec", "elic", "-o", str(work / "f.nk")],
    }


@dataclass
class Run:
    seconds: float
    cpu_seconds: float
    exit_code: int
    stderr: str

    @property
    def message(self) -> str:
        """The first line of stderr that is not ``-X importtime`` output."""
        lines = [line for line in self.stderr.splitlines() if line.strip() and not line.startswith("import time:")]
        return lines[0] if lines else ""


def run_once(args: list[str], cwd: Path, python_flags: tuple[str, ...] = ()) -> Run:
    """One ``python -m neckkit`` process: wall and CPU seconds, exit code, stderr."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *python_flags, "-m", "neckkit", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(seconds, cpu, done.returncode, done.stderr)


def measure(name: str, args: list[str], cwd: Path, repeats: int) -> dict[str, object]:
    runs = [run_once(args, cwd) for _ in range(repeats)]
    return {"case": name, "command": "neckkit " + " ".join(args),
            "median_seconds": statistics.median(run.seconds for run in runs),
            "min_seconds": min(run.seconds for run in runs),
            "median_cpu_seconds": statistics.median(run.cpu_seconds for run in runs),
            "exit_code": runs[-1].exit_code, "message": runs[-1].message}


@dataclass
class Import:
    """One line of ``-X importtime``: the module, the module whose import ran it, and its seconds."""

    module: str
    importer: str | None
    self_seconds: float
    cumulative_seconds: float


def import_tree(stderr: str) -> list[Import]:
    """``-X importtime`` lines with their importers (children are printed before their parents)."""
    imports: list[Import] = []
    waiting: list[tuple[int, Import]] = []  # (depth, import) whose importer is not printed yet
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:"):].split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        entry = Import(name.strip(), None, int(self_us) / 1e6, int(cumulative_us) / 1e6)
        while waiting and waiting[-1][0] > depth:
            waiting.pop()[1].importer = entry.module
        waiting.append((depth, entry))
        imports.append(entry)
    return imports


def _package(module: str) -> str:
    return module.split(".")[0]


def heaviest_crossings(imports: list[Import], top: int) -> list[Import]:
    """The heaviest imports of one package by another (or by the command itself): who pulled in what."""
    crossings = [entry for entry in imports if entry.importer is None or _package(entry.importer) != _package(entry.module)]
    return sorted(crossings, key=lambda entry: entry.cumulative_seconds, reverse=True)[:top]


def self_seconds_by_package(imports: list[Import], top: int) -> list[tuple[str, float]]:
    totals: dict[str, float] = defaultdict(float)
    for entry in imports:
        totals[_package(entry.module)] += entry.self_seconds
    return sorted(totals.items(), key=lambda item: item[1], reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (the median is reported)")
    parser.add_argument("--top", type=int, default=12, help="rows of each -X importtime table")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="neckkit-latency-") as folder:
        work = Path(folder)
        results = [measure(name, command, work, args.repeats) for name, command in cases(work).items()]
        imports = import_tree(run_once(cases(work)["tiny compress"], work, ("-X", "importtime")).stderr)
    crossings, by_package = heaviest_crossings(imports, args.top), self_seconds_by_package(imports, args.top)
    machine = {"machine": platform.machine(), "cores": os.cpu_count(), "python": platform.python_version(),
               "load_average": [round(load, 2) for load in os.getloadavg()]}
    if args.json:
        print(json.dumps({**machine, "repeats": args.repeats, "photo": PHOTO, "cases": results,
                          "heaviest_imports": [asdict(entry) for entry in crossings],
                          "import_self_seconds_by_package": dict(by_package)}, indent=2))
        return
    print(f"{machine['machine']}, {machine['cores']} cores, Python {machine['python']}, "
          f"load average {machine['load_average']} at the end, median of {args.repeats} runs, photo {Path(PHOTO).name}")
    print("| case | median s | min s | CPU s | exit | first line of stderr |")
    print("|---|---|---|---|---|---|")
    for row in results:
        message = str(row["message"]).replace("|", "\\|")
        print(f"| {row['case']} | {row['median_seconds']:.2f} | {row['min_seconds']:.2f} | "
              f"{row['median_cpu_seconds']:.2f} | {row['exit_code']} | {message[:100]} |")
    print("\n`python -X importtime` of the tiny compress: the heaviest imports of one package by another "
          "(cumulative seconds, what they import included)")
    print("| module | imported by | cumulative s |")
    print("|---|---|---|")
    for entry in crossings:
        print(f"| {entry.module} | {entry.importer or '(the command)'} | {entry.cumulative_seconds:.2f} |")
    print("\nSelf time summed by top-level package:")
    print("| package | self s |")
    print("|---|---|")
    for package, seconds in by_package:
        print(f"| {package} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
