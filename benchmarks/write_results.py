"""Run ``neckkit bench`` and the d1 training-throughput benchmark, and write the results into docs/benchmarks.md.

    python benchmarks/write_results.py [--codecs elic tic] [--encoder clip-l] [--threads 1] [--repeats 5]
        [--train-steps 4] [--train-batch 4] [--tiny] [--doc docs/benchmarks.md] [--json OUT] [--dry-run]

Every measurement runs in its own process (so peak memory is per run): ``python -m neckkit bench
--json`` for each codec with the encoder, then ``benchmarks/train_throughput.py --json`` (d1, uncached
and cached) for the first codec. On a CUDA machine it also runs the GPU rows: the bench with
``--device cuda`` and d1 training images/s of the first codec + the encoder at batch 32 with mixed
precision (bf16 where the GPU supports it). The Markdown block, with the machine and the exact commands,
replaces what lies between ``<!-- results:begin -->`` and ``<!-- results:end -->`` in --doc (written
atomically; the markers must be there); --dry-run prints it instead, --json OUT also writes the raw
figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
THROUGHPUT_SCRIPT = Path(__file__).resolve().with_name("train_throughput.py")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
NO_GPU = "No GPU on this machine: GPU rows not measured."
GPU_TRAIN_BATCH = 32  # the GPU rows: d1 training images/s at the paper's batch size


class MarkersMissing(ValueError):
    """The document lacks the results markers (or holds them more than once, or out of order)."""


# -- the document ---------------------------------------------------------------------------------

def replace_block(text: str, block: str) -> str:
    """``text`` with what lies between the markers replaced by ``block``; everything else is kept as is."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise MarkersMissing(f"needs exactly one {BEGIN} followed by one {END}")
    start = text.index(BEGIN) + len(BEGIN)
    return text[:start] + "\n" + block.strip("\n") + "\n" + text[text.index(END):]


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it and ``os.replace`` (mode kept)."""
    with tempfile.NamedTemporaryFile("wb", dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
        file.write(text.encode("utf-8"))
        temporary = Path(file.name)
    try:
        shutil.copymode(path, temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# -- the machine ----------------------------------------------------------------------------------

def _proc_field(path: str, name: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name:
                return value.strip()
    except OSError:
        pass
    return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_facts() -> dict[str, Any]:
    """CPU, cores, RAM, GPU, library versions, the date (UTC) and the git commit."""
    import torch

    memory = _proc_field("/proc/meminfo", "MemTotal")  # "24683656 kB"
    commit = _git("rev-parse", "--short", "HEAD")
    return {
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        "logical_cores": os.cpu_count(),
        "ram_gib": round(int(memory.split()[0]) / 2**20, 1) if memory else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": _version("transformers"),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "commit": commit or "unknown",
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")) if commit else None,
    }


# -- the measurements -----------------------------------------------------------------------------

def shown(command: list[str]) -> str:
    """``command`` as one would type it: ``python`` for this interpreter, paths relative to the repo."""
    words = ["python" if word == sys.executable else word for word in command]
    words = [os.path.relpath(word, REPO) if word.startswith(str(REPO) + os.sep) else word for word in words]
    return shlex.join(words)


def _run_json(command: list[str], what: str) -> Any:
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{what} failed ({shown(command)}):\n{(done.stderr or done.stdout)[-3000:]}")
    return json.loads(done.stdout)


def run_bench(codec: str, encoder: str, threads: int, repeats: int, tiny: bool, device: str) -> dict[str, Any]:
    """``neckkit bench --json`` in its own process: its figures plus ``command``."""
    command = [sys.executable, "-m", "neckkit", "bench", "--codec", codec, "--encoder", encoder, "--json",
               "--threads", str(threads), "--repeats", str(repeats), "--device", device]
    command += ["--tiny"] if tiny else []
    return {**_run_json(command, f"neckkit bench ({codec} + {encoder}, {device})"), "command": shown(command)}


def run_throughput(codec: str, encoder: str, threads: int, steps: int, batch: int, tiny: bool,
                   device: str) -> dict[str, Any]:
    """benchmarks/train_throughput.py (d1, uncached then cached): the settings, ``rows`` and ``command``."""
    command = [sys.executable, str(THROUGHPUT_SCRIPT), "--json", "--codec", codec, "--encoder", encoder,
               "--threads", str(threads), "--steps", str(steps), "--batch", str(batch), "--device", device]
    command += ["--tiny"] if tiny else []
    rows = _run_json(command, f"training throughput ({codec} + {encoder}, {device})")
    return {"codec": codec, "encoder": encoder, "device": device, "threads": threads, "steps": steps,
            "batch": batch, "tiny": tiny, "rows": rows, "command": shown(command)}


def measure(args: argparse.Namespace, gpu: bool) -> dict[str, Any]:
    """Every run the options ask for (the GPU rows when ``gpu``), in order, with progress on stderr."""
    devices = ["cpu", "cuda"] if gpu else ["cpu"]
    bench: dict[str, list[dict[str, Any]]] = {}
    throughput = []
    for device in devices:
        for codec in args.codecs:
            print(f"bench {codec} + {args.encoder} on {device}...", file=sys.stderr, flush=True)
            bench.setdefault(device, []).append(
                run_bench(codec, args.encoder, args.threads, args.repeats, args.tiny, device)
            )
    steps_batches = [("cpu", args.train_steps, args.train_batch)]
    if gpu:
        steps_batches.append(("cuda", args.gpu_train_steps, GPU_TRAIN_BATCH))
    for device, steps, batch in steps_batches:
        print(f"d1 training throughput {args.codecs[0]} + {args.encoder} on {device}...", file=sys.stderr, flush=True)
        throughput.append(run_throughput(args.codecs[0], args.encoder, args.threads, steps, batch, args.tiny, device))
    return {"bench": bench, "throughput": throughput}


# -- the Markdown ---------------------------------------------------------------------------------

def _sig(value: float | None, digits: int = 3) -> str:
    """``digits`` significant digits without exponent: 0.293, 3.93, 123, 0.00123; "-" for none."""
    if value is None:
        return "-"
    if value == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:,.{decimals}f}"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


BENCH_ROWS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("neck parameters", lambda r: f"{r['neck_params']:,}"),
    ("neck kMAC/pixel", lambda r: f"{r['neck_kmac_per_pixel']:.3f}"),
    ("replaced parameters (synthesis + encoder front)",
     lambda r: f"{r['replaced_params']:,} ({r['synthesis_params']:,} + {r['encoder_front_params']:,})"),
    ("replaced kMAC/pixel (synthesis + encoder front)",
     lambda r: f"{r['replaced_kmac_per_pixel']:.2f} ({r['synthesis_kmac_per_pixel']:.2f} + "
               f"{r['encoder_front_kmac_per_pixel']:.2f})"),
    ("entropy decoding s", lambda r: _sig(r["decode_seconds"])),
    ("machine front s", lambda r: _sig(r["machine_front_seconds"])),
    ("reconstruction front s", lambda r: _sig(r["reconstruction_front_seconds"])),
    ("front latency ratio", lambda r: f"{r['front_latency_ratio']:.2f}"),
    ("machine end to end s", lambda r: _sig(r["machine_end_to_end_seconds"])),
    ("reconstruction end to end s", lambda r: _sig(r["reconstruction_end_to_end_seconds"])),
    ("end-to-end latency ratio", lambda r: f"{r['end_to_end_latency_ratio']:.2f}"),
    ("peak RSS MiB", lambda r: f"{r['peak_rss_mib']:,.0f}"),
]


def bench_markdown(reports: list[dict[str, Any]], tiny: bool) -> list[str]:
    first = reports[0]
    weights = "tiny components" if tiny else "real-size components with seeded random weights"
    lines = [f"`neckkit bench` on {first['device']}: {weights}, {first['size']} x {first['size']} centre crop of "
             f"`{first['image']}`, batch 1, entry layer {first['entry_layer']}, {_count(first['threads'], 'thread')}, "
             f"median of {_count(first['repeats'], 'round')}.", ""]
    rows = [[label, *(cell(r) for r in reports)] for label, cell in BENCH_ROWS]
    if any(r.get("cuda_peak_mib") is not None for r in reports):
        rows.append(["peak CUDA MiB", *(_sig(r.get("cuda_peak_mib"), 4) for r in reports)])
    return lines + _table(["metric", *(f"{r['codec']} + {r['encoder']}" for r in reports)], rows)


def throughput_markdown(run: dict[str, Any]) -> list[str]:
    rows, precision = run["rows"], run["rows"][0].get("precision", "float32")
    weights = "tiny components" if run["tiny"] else "real-size components with seeded random weights"
    lines = [f"d1 training throughput of {run['codec']} + {run['encoder']} on {run['device']}: {weights}, the "
             f"bundled photos, batch {run['batch']}, {_count(run['steps'], 'step')} per mode, {precision}, "
             f"{_count(run['threads'], 'thread')}. Steps/s leave out start-up and the one-off cache build.", ""]
    cuda = any(row.get("cuda_peak_mib") is not None for row in rows)
    header = ["mode", "steps/s", "s/step", "images/s", "cache build s", "peak RSS MiB"] + (["peak CUDA MiB"] * cuda)
    table = []
    for row in rows:
        rate = row["steps_per_second"]
        cells = [row["mode"], _sig(rate), _sig(1 / rate if rate else None), _sig(rate * run["batch"] if rate else None),
                 _sig(row.get("cache_build_seconds")), f"{row['peak_rss_mib']:,.0f}"]
        table.append(cells + ([_sig(row.get("cuda_peak_mib"), 4)] if cuda else []))
    lines += _table(header, table)
    by_mode = {row["mode"]: row["steps_per_second"] for row in rows}
    if by_mode.get("cached") and by_mode.get("uncached"):
        lines += ["", f"Cache speed-up: {by_mode['cached'] / by_mode['uncached']:.2f}x."]
    return lines


def machine_line(m: dict[str, Any]) -> str:
    changes = " (with uncommitted changes)" if m.get("uncommitted_changes") else ""
    return (f"**Machine**: {m['cpu']}, {m['logical_cores']} logical cores, {m['ram_gib']} GiB RAM, "
            f"{'GPU ' + m['gpu'] if m['gpu'] else 'no GPU'}; {m['os']}, Python {m['python']}, torch {m['torch']}, "
            f"transformers {m['transformers']}; commit {m['commit']}{changes}; {m['date_utc']} UTC.")


def results_markdown(figures: dict[str, Any]) -> str:
    """The block between the markers: how it was made, the machine, the tables and the commands run."""
    tiny = figures["settings"]["tiny"]
    lines = [f"Written by `{figures['command']}`.", "", machine_line(figures["machine"]), ""]
    lines += bench_markdown(figures["bench"]["cpu"], tiny) + [""]
    lines += throughput_markdown(figures["throughput"][0]) + [""]
    if "cuda" in figures["bench"]:
        lines += ["GPU rows:", ""] + bench_markdown(figures["bench"]["cuda"], tiny) + [""]
        for run in figures["throughput"][1:]:
            lines += throughput_markdown(run) + [""]
    else:
        lines += [NO_GPU, ""]
    commands = [r["command"] for runs in figures["bench"].values() for r in runs]
    commands += [run["command"] for run in figures["throughput"]]
    lines += ["Commands run:", "", "```", *commands, "```"]
    return "\n".join(lines) + "\n"


# -- the script -----------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codecs", nargs="+", default=["elic", "tic"])
    parser.add_argument("--encoder", default="clip-l")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads of every run")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds of the bench")
    parser.add_argument("--train-steps", type=int, default=4, help="training steps per mode on the CPU")
    parser.add_argument("--train-batch", type=int, default=4, help="training batch on the CPU")
    parser.add_argument("--gpu-train-steps", type=int, default=20,
                        help=f"training steps per mode of the GPU rows (batch {GPU_TRAIN_BATCH})")
    parser.add_argument("--tiny", action="store_true", help="tiny components (a smoke test)")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--dry-run", action="store_true", help="print the block instead of writing --doc")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    text = args.doc.read_bytes().decode("utf-8")
    try:
        replace_block(text, "")  # fail before the long runs, not after
    except MarkersMissing as error:
        print(f"error: {args.doc}: {error}", file=sys.stderr)
        return 1
    machine = machine_facts()
    try:
        runs = measure(args, gpu=machine["gpu"] is not None)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    command = shown([sys.executable, str(Path(__file__).resolve()), *(sys.argv[1:] if argv is None else argv)])
    settings = {key: value for key, value in vars(args).items() if key not in ("doc", "json")}
    figures = {"command": command, "machine": machine, "settings": settings, **runs}
    block = results_markdown(figures)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    if args.dry_run:
        print(block, end="")
        return 0
    try:  # read again: the document may have been edited during the runs
        write_atomically(args.doc, replace_block(args.doc.read_bytes().decode("utf-8"), block))
    except MarkersMissing as error:
        print(f"error: {args.doc}: {error}", file=sys.stderr)
        return 1
    print(f"wrote the results into {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
