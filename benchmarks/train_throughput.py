"""d1 training throughput with and without the feature cache, and peak memory.

    python benchmarks/train_throughput.py --codec elic --encoder clip-l --batch 4 --steps 5 [--tiny]
        [--device auto|cpu|cuda] [--amp/--no-amp]

Each mode runs ``neckkit train`` in its own process (so peak memory is per mode) on the bundled
photos, real-size components with seeded random weights unless --tiny. Steps/s excludes start-up
and the one-off cache build, which is reported separately. Prints a Markdown table; --json prints
the rows as JSON. On a GPU (--device cuda) training uses the config's ``amp`` (on by default: bf16
autocast and a bf16 frozen encoder where the GPU supports bf16, else fp16); --no-amp trains in fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, resource, sys, time
import torch
from neckkit.cli import main
args = json.loads(sys.argv[1])
torch.set_num_threads(args.pop("threads"))
amp = args.pop("amp")
start = time.perf_counter()
try:
    main(args.pop("argv"))
except SystemExit as exit:
    if exit.code:
        raise
print("PEAK_RSS_MIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print("WALL_S", time.perf_counter() - start)
if torch.cuda.is_initialized():
    print("CUDA_PEAK_MIB", torch.cuda.max_memory_allocated() / 2**20)
    # the trainer's rule (neckkit.training.trainer): amp on a GPU is bf16 where supported, else fp16
    print("PRECISION", ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") if amp else "float32")
"""

FIGURE_LINES = ("PEAK_RSS_MIB", "WALL_S", "CUDA_PEAK_MIB", "PRECISION")


def run_mode(args: argparse.Namespace, cached: bool, workdir: Path) -> dict[str, object]:
    out = workdir / ("cached" if cached else "uncached")
    argv = ["train", "--codec", args.codec, "--encoder", args.encoder, "--out", str(out), "--no-progress", "--json",
            "--max-steps", str(args.steps), "--tiny" if args.tiny else "--random-init",
            "--set", f"optim.batch_size={args.batch}", "--set", "val_fraction=0", "--set", "num_workers=0",
            "--set", f"cache={str(cached).lower()}", "--set", f"checkpoint_every={args.steps}",
            "--device", args.device]
    if args.amp is not None:
        argv += ["--set", f"amp={str(args.amp).lower()}"]
    if args.tiny and args.batch > 8:  # --tiny's quick-start schedule has 8 images per epoch
        argv += ["--set", f"optim.images_per_epoch={args.batch}"]
    amp = True if args.amp is None else args.amp  # TrainConfig.amp's default
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NECKKIT_CACHE_DIR": str(workdir / "cache")}
    child_args = json.dumps({"argv": argv, "threads": args.threads, "amp": amp})
    done = subprocess.run([sys.executable, "-c", CHILD, child_args], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode:
        sys.exit(f"{'cached' if cached else 'uncached'} run failed:\n{done.stderr[-3000:]}")
    lines = done.stdout.splitlines()
    summary = json.loads("\n".join(line for line in lines if not line.startswith(FIGURE_LINES)))
    figures = dict(line.split() for line in lines if line.startswith(FIGURE_LINES))
    return {
        "mode": "cached" if cached else "uncached",
        "steps": summary["steps_this_run"],
        "steps_per_second": summary["steps_per_second"],
        "batch": args.batch,
        "images_per_second": summary["steps_per_second"] * args.batch if summary["steps_per_second"] else None,
        "cache_build_seconds": summary.get("cache_build_seconds"),
        "peak_rss_mib": round(float(figures["PEAK_RSS_MIB"])),
        "cuda_peak_mib": round(float(figures["CUDA_PEAK_MIB"])) if "CUDA_PEAK_MIB" in figures else None,
        "precision": figures.get("PRECISION", "float32"),
        "wall_seconds": round(float(figures["WALL_S"]), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", default="elic")
    parser.add_argument("--encoder", default="clip-l")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tiny", action="store_true", help="tiny components instead of real-size random ones")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda or cuda:N")
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                        help="mixed precision on a GPU (default: the config's, on)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        rows = [run_mode(args, cached, Path(folder)) for cached in (False, True)]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    speedup = rows[1]["steps_per_second"] / rows[0]["steps_per_second"]
    print(f"{args.codec} + {args.encoder}, d1, batch {args.batch}, {'tiny' if args.tiny else 'real-size random'}, "
          f"{args.threads} threads, {platform.processor() or platform.machine()}, torch {__import__('torch').__version__}")
    print("| mode | steps/s | images/s | cache build s | peak RSS MiB | wall s |\n|---|---|---|---|---|---|")
    for row in rows:
        images = row["steps_per_second"] * args.batch
        build = f"{row['cache_build_seconds']:.1f}" if row["cache_build_seconds"] else "-"
        print(f"| {row['mode']} | {row['steps_per_second']:.4f} | {images:.3f} | {build} | "
              f"{row['peak_rss_mib']} | {row['wall_seconds']} |")
    print(f"cache speed-up: {speedup:.2f}x")


if __name__ == "__main__":
    main()
