"""One neck for every rate against one neck per rate, at tiny scale, through the CLI (issue 22's comparison).

    python benchmarks/variable_rate_necks.py [--codec mbt2018-mean-vbr] [--levels 4,5,6,7] [--steps 200] [--out DIR]

1. ``neckkit train-codec --tiny``: a tiny variable-rate codec fine-tuned on the bundled photos, so its levels
   code at distinct rates (a random-init tiny codec quantises nearly everything to zero at low levels);
2. ``neckkit train`` on that codec, the same steps, batch and seed for every neck: ``adaln`` and ``film``
   (one conditioned neck over ``--levels``), ``shared`` (one unconditioned neck over them) and one
   ``per-level`` neck per level;
3. ``neckkit eval`` of all of them in one run; prints the BD-rate and BD-quality (pchip) of each one-neck
   curve against the per-level curve, per metric, and writes the run's eval.json / eval.csv / bd_rate.csv.

Tiny random-init encoders make this a check of the machinery and of the comparison's arithmetic, not a
measurement of what conditioning buys at the paper's scale (docs/training.md, "Rate-conditioned necks").
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

VARIANTS = ("adaln", "film", "shared")


def neckkit(*args: str) -> str:
    """Run ``neckkit ARGS`` in a child process (offline); its stdout, or exit with its stderr."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NECKKIT_PROGRESS": "0"}
    result = subprocess.run([sys.executable, "-m", "neckkit", *args], capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"neckkit {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codec", default="mbt2018-mean-vbr")
    parser.add_argument("--encoder", default="clip-l")
    parser.add_argument("--levels", default="4,5,6,7", help="levels compared (BD-rate needs four distinct rates)")
    parser.add_argument("--codec-steps", type=int, default=300, help="train-codec steps of the tiny codec")
    parser.add_argument("--steps", type=int, default=200, help="training steps of every neck")
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    levels = args.levels.split(",")
    with tempfile.TemporaryDirectory() as scratch:
        root = args.out or Path(scratch)
        os.environ["NECKKIT_CACHE_DIR"] = str(root / "cache")
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        neckkit("train-codec", "--codec", args.codec, "--tiny", "--steps", str(args.codec_steps),
                "--out", str(root / "codec"), "--no-progress")
        seconds["train-codec"] = time.perf_counter() - start
        weights = str(root / "codec" / "codec.pth")
        common = ["--codec", args.codec, "--encoder", args.encoder, "--tiny", "--codec-weights", weights,
                  "--max-steps", str(args.steps), "--no-progress"]
        runs = {variant: ["--levels", args.levels] + (["--neck-conditioning", variant] if variant != "shared" else [])
                for variant in VARIANTS}
        runs.update({f"level-{level}": ["--levels", level] for level in levels})
        for name, flags in runs.items():
            start = time.perf_counter()
            neckkit("train", *common, *flags, "--out", str(root / name))
            seconds[f"train {name}"] = time.perf_counter() - start
        necks = [arg for name in runs for arg in ("--neck", str(root / name))]
        start = time.perf_counter()
        neckkit("eval", *necks, "--codec-weights", weights, "--out", str(root / "eval"), "--overwrite", "--no-progress")
        seconds["eval"] = time.perf_counter() - start
        report = json.loads((root / "eval" / "eval.json").read_text())
    anchor_suffix = f"/per-level/{args.codec}"
    entries = [e for e in report["bd_rates"] if e["method"] == "pchip" and e["anchor"].endswith(anchor_suffix)]
    rows = [{"point": r["point"], "level": r["level"], "variant": r.get("neck_variant"), "payload_bpp": r["payload_bpp"],
             "embedding_cosine": r["embedding_cosine"], "embedding_mse": r["embedding_mse"]}
            for r in report["rows"] if r["path"] == "neck"]
    figures = {"codec": args.codec, "levels": levels, "steps": args.steps, "rows": rows,
               "bd_vs_per_level": [{key: e[key] for key in ("test", "metric", "bd_rate", "bd_quality", "reason")}
                                   for e in entries],
               "seconds": {key: round(value, 1) for key, value in seconds.items()}}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{args.codec} (tiny, train-codec {args.codec_steps} steps) -> {args.encoder} (tiny), levels {args.levels}, "
          f"{args.steps} steps per neck")
    print(f"{'point':<16}{'level':>6}{'variant':>11}{'payload bpp':>13}{'cosine':>9}{'emb. MSE':>10}")
    for row in sorted(rows, key=lambda r: (r["variant"], r["level"])):
        print(f"{row['point']:<16}{row['level']:>6g}{row['variant']:>11}{row['payload_bpp']:>13.4f}"
              f"{row['embedding_cosine']:>9.4f}{row['embedding_mse']:>10.4f}")
    print("BD against the per-level necks (pchip):")
    for entry in figures["bd_vs_per_level"]:
        rate = "-" if entry["bd_rate"] is None else f"{entry['bd_rate']:+.2f}%"
        quality = "-" if entry["bd_quality"] is None else f"{entry['bd_quality']:+.4g}"
        print(f"  {entry['test']:<40} {entry['metric']:<17} BD-rate {rate:>9}  BD-quality {quality:>9}"
              + (f"  ({entry['reason'][:90]})" if entry["reason"] else ""))
    print("seconds: " + ", ".join(f"{key} {value:.1f}" for key, value in figures["seconds"].items()))


if __name__ == "__main__":
    main()
