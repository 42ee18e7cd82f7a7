"""d1, d2 and d3 side by side on the bundled photos with tiny models: held-out error and rate.

    python benchmarks/tiny_scenarios.py [--codec tic] [--encoder clip-l]

Runs ``neckkit train --tiny`` once per scenario (same seed, same held-out photo) and prints, from
each run's best validation: the neck's distillation error, the *Reconstruction* baseline's error
(decoded image through the full encoder) at the same codec, the cosine similarity and the estimated bpp.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from neckkit.cli import main as neckkit


def train(codec: str, encoder: str, scenario: str, out: Path) -> dict:
    try:
        neckkit(["train", "--codec", codec, "--encoder", encoder, "--tiny", "--scenario", scenario,
                 "--out", str(out), "--no-progress", "--json"])
    except SystemExit as exit:
        if exit.code:
            raise
    return json.loads((out / "summary.json").read_text())["best"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", default="tic")
    parser.add_argument("--encoder", default="clip-l")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        os.environ["NECKKIT_CACHE_DIR"] = str(Path(folder) / "cache")
        for scenario in ("d1", "d2", "d3"):
            rows.append((scenario, train(args.codec, args.encoder, scenario, Path(folder) / scenario)))
    print(f"\n{args.codec} + {args.encoder}, tiny, bundled photos (3 training, 1 held out), best validation")
    print("| scenario | step | neck distillation | Reconstruction distillation | cosine | est. bpp |")
    print("|---|---|---|---|---|---|")
    for scenario, best in rows:
        print(f"| {scenario} | {best['step']} | {best['distillation']:.4f} | {best['reconstruction_distillation']:.4f} "
              f"| {best['cosine']:.4f} | {best['bpp']:.4f} |")


if __name__ == "__main__":
    main()
