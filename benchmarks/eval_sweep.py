"""Images/s of a 4-point tiny ``neckkit eval`` sweep on 32 images, one ``--batch-size`` after another.

    python benchmarks/eval_sweep.py [--batch-sizes 1 8] [--images 32] [--codec tic] [--out eval_sweep.json]

Trains four tiny necks on ``--codec`` and ``clip-l`` (two d1 necks of different seeds, which share the
base codec, and two d3 necks, each with its own fine-tuned codec: three distinct codecs), writes
``--images`` 256x256 variants of the bundled photos (crops and flips), then times
``neckkit eval --neck A --neck B --neck C --neck D`` on them for every ``--batch-size``. The figure is
images / the evaluation loop's seconds (``eval.json``'s ``seconds_by_stage.evaluate``); the total
including start-up and model loading is printed beside it. Everything runs in a temporary folder.
``--neckkit`` runs another checkout's console script (e.g. the one before batching) for training and
evaluation; a run without ``seconds_by_stage`` is timed by its total only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def neckkit_command(override: str | None) -> list[str]:
    if override:
        return [override]
    script = Path(sys.executable).with_name("neckkit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "neckkit"]


def run(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return time.perf_counter() - start


def write_images(folder: Path, count: int) -> None:
    """``count`` distinct 256x256 PNGs cut from the bundled photos (offsets and mirror images)."""
    from PIL import Image, ImageOps

    from neckkit.samples import sample_images

    folder.mkdir(parents=True)
    photos = [Image.open(path).convert("RGB") for path in sample_images()]
    for index in range(count):
        photo = photos[index % len(photos)]
        variant = index // len(photos)
        side = min(photo.size)
        step = max(1, (side - 256) // 8)
        left, top = (variant * step) % max(1, photo.width - 256), (variant * step // 2) % max(1, photo.height - 256)
        crop = photo.crop((left, top, left + 256, top + 256))
        if variant % 2:
            crop = ImageOps.mirror(crop)
        crop.save(folder / f"img{index:03d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--codec", default="tic")
    parser.add_argument("--neckkit", help="the neckkit console script to time (default: this environment's)")
    parser.add_argument("--work", type=Path, help="keep necks and images here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    timed = neckkit_command(args.neckkit)  # trains the necks too, so they are in its own checkpoint format
    with tempfile.TemporaryDirectory() as temporary:
        work = args.work or Path(temporary)
        env["NECKKIT_CACHE_DIR"] = str(work / "cache")
        necks = []
        for scenario, seed in (("d1", 0), ("d1", 1), ("d3", 0), ("d3", 1)):
            out = work / f"neck-{scenario}-{seed}"
            necks.append(out)
            if not (out / "meta.json").exists() and not (out / "best").exists():
                print(f"training tiny {scenario} neck, seed {seed} ...", flush=True)
                run([*timed, "train", "--codec", args.codec, "--encoder", "clip-l", "--tiny", "--scenario", scenario,
                     "--max-steps", "2", "--set", f"seed={seed}", "--set", "neck.num_heads=2", "--out", str(out), "--no-progress"], env)
        images = work / "images"
        if not images.exists():
            write_images(images, args.images)
        figures: dict[str, Any] = {"codec": args.codec, "images": args.images, "points": 4,
                                   "neckkit": " ".join(timed), "runs": []}
        for batch_size in args.batch_sizes:
            out = work / f"eval-b{batch_size}"
            command = [*timed, "eval", *[arg for neck in necks for arg in ("--neck", str(neck))], "--data", str(images),
                       "--out", str(out), "--overwrite", "--no-progress"]
            if batch_size != 1 or args.neckkit is None:
                command += ["--batch-size", str(batch_size)]
            wall = run(command, env)
            result = json.loads((out / "eval.json").read_text())
            loop = (result.get("seconds_by_stage") or {}).get("evaluate")
            row = {"batch_size": batch_size, "wall_s": round(wall, 2), "eval_s": result.get("seconds"),
                   "loop_s": loop, "images_per_s": round(args.images / (loop or result["seconds"]), 3),
                   "images_per_s_total": round(args.images / wall, 3), "failures": len(result.get("failures", []))}
            figures["runs"].append(row)
            print(f"--batch-size {batch_size}: {row['images_per_s']} images/s in the loop "
                  f"({loop if loop is not None else result['seconds']} s), {row['images_per_s_total']} images/s "
                  f"with start-up ({row['wall_s']} s), {row['failures']} failures", flush=True)
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
