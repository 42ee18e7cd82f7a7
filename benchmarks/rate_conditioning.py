"""Rate conditioning: the parameters each option adds to the neck, and d1 training steps/s over 8 levels vs. one.

    python benchmarks/rate_conditioning.py [--steps 200] [--batch 4] [--repeats 1] [--threads N]
        [--only params|speed] [--json]

1. Parameters: the paper's neck (ELIC latent 320 -> CLIP ViT-L/14 width 1024, 16 heads) built with
   ``neck.conditioning`` none, film and adaln, for the 224 px encoder (16 x 16 grid) with 1 and 2 blocks
   and the 336 px one (24 x 24) with 1 block. Only the neck is built (on the meta device: no weights, no
   codec, no encoder); "adds" is the difference to the unconditioned neck of the same shape.
2. Speed: d1 ``Trainer`` runs of tiny ``mbt2018-mean-vbr`` + tiny ``clip-l`` on the bundled photos (the
   ``--tiny`` quick-start config, its schedule stretched over --steps, no held-out photo), the same steps,
   batch and seed for each: one neck over all 8 levels with
   adaln, film and none (a shared unconditioned neck), against one per-level neck (``--levels 3``);
   each uncached and cached, --repeats times with the runs interleaved (the median is reported; the
   machine's noise shows in the rounds). Steps/s leave out start-up, checkpoints and the one-off cache build
   (reported separately; the three 8-level runs share one cache, which stores every level per crop).

Prints Markdown tables; --json prints the figures as JSON. Writes nothing but temporary files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

CONDITIONINGS = ("none", "film", "adaln")
# label: (latent channels, width, grid, blocks): ELIC (M=320) -> CLIP ViT-L/14 at 224 px (16 x 16) or 336 px (24 x 24)
PAPER_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "ELIC -> CLIP ViT-L/14 224 px, 1 block (paper)": (320, 1024, 16, 1),
    "ELIC -> CLIP ViT-L/14 336 px, 1 block": (320, 1024, 24, 1),
    "ELIC -> CLIP ViT-L/14 224 px, 2 blocks": (320, 1024, 16, 2),
}
CODEC, ENCODER = "mbt2018-mean-vbr", "clip-l"  # tiny: 8 levels
MODES = ("uncached", "cached")
# run name: (neck.conditioning, neck.levels; None: every level of the codec)
RUNS: dict[str, tuple[str, list[float] | None]] = {
    "adaln": ("adaln", None),
    "film": ("film", None),
    "none": ("none", None),
    "per-level-3": ("none", [3.0]),
}


# -- parameters -----------------------------------------------------------------------------------

def neck_parameters(latent_channels: int, width: int, grid: int, blocks: int, conditioning: str) -> dict[str, int]:
    """Parameters of the neck of this shape: total, level embedding and modulation (built on the meta device)."""
    from neckkit.config.paper import NeckConfig
    from neckkit.neck.transform import TransformNeck

    with torch.device("meta"):
        config = NeckConfig(num_blocks=blocks, conditioning=conditioning)
        neck = TransformNeck(latent_channels, width, grid, True, config)
    embedding = getattr(neck, "level_embedding", None)
    modulation = getattr(neck.transformer, "modulation", None)
    return {
        "total": sum(p.numel() for p in neck.parameters()),
        "level_embedding": sum(p.numel() for p in embedding.parameters()) if embedding is not None else 0,
        "modulation": sum(p.numel() for p in modulation.parameters()) if modulation is not None else 0,
    }


def parameter_rows() -> list[dict[str, Any]]:
    """One row per paper shape: the unconditioned neck's parameters and what film and adaln add."""
    rows = []
    for label, (latent_channels, width, grid, blocks) in PAPER_SHAPES.items():
        counts = {c: neck_parameters(latent_channels, width, grid, blocks, c) for c in CONDITIONINGS}
        base = counts["none"]["total"]
        row: dict[str, Any] = {"neck": label, "latent_channels": latent_channels, "width": width, "grid": grid,
                               "blocks": blocks, "none": base}
        for conditioning in ("film", "adaln"):
            count = counts[conditioning]
            row[conditioning] = {"total": count["total"], "adds": count["total"] - base,
                                 "level_embedding": count["level_embedding"], "modulation": count["modulation"]}
        rows.append(row)
    return rows


# -- speed ----------------------------------------------------------------------------------------

def _parts(host: Any) -> Any:
    from neckkit.bitstream.container import codec_fingerprint
    from neckkit.cli.components import build_component
    from neckkit.loading.weights import fingerprint
    from neckkit.neck.checkpoint import ComponentRef
    from neckkit.training.trainer import TrainParts

    codec_name, codec = build_component(host, "codec", CODEC, {"tiny": True})
    encoder_name, encoder = build_component(host, "encoder", ENCODER, {"tiny": True})
    return TrainParts(
        codec,
        encoder,
        ComponentRef(name=codec_name, options={"tiny": True}, fingerprint=codec_fingerprint(codec)),
        ComponentRef(name=encoder_name, options={"tiny": True}, fingerprint=fingerprint(encoder)),
    )


def train_run(host: Any, name: str, cached: bool, steps: int, batch: int, run_dir: Path) -> dict[str, Any]:
    """One ``Trainer`` run of ``RUNS[name]``: its steps/s, the cache build and the neck's parameters."""
    from neckkit.config.train import QUICK_START, TrainConfig
    from neckkit.training.data import open_image_set
    from neckkit.training.trainer import Trainer

    conditioning, levels = RUNS[name]
    overrides = {**QUICK_START, "max_steps": steps, "checkpoint_every": steps, "log_every": steps, "val_fraction": 0,
                 "cache": cached, "optim.batch_size": batch, "neck.conditioning": conditioning, "neck.levels": levels}
    epochs = TrainConfig().with_overrides(QUICK_START).epochs  # the quick-start schedule's 20 epochs span the run
    overrides["optim.images_per_epoch"] = batch * math.ceil(steps / epochs)
    config = TrainConfig().with_overrides(overrides)
    trainer = Trainer(config, _parts(host), open_image_set(None, config.data), run_dir, echo=lambda _text: None,
                      progress=False)
    summary = trainer.run().summary
    return {
        "run": name,
        "mode": "cached" if cached else "uncached",
        "conditioning": summary["conditioning"],
        "levels": summary["levels"],
        "neck_parameters": sum(p.numel() for p in trainer.neck.parameters()),
        "steps": summary["steps_this_run"],
        "batch": batch,
        "steps_per_second": summary["steps_per_second"],
        "cache_build_seconds": summary.get("cache_build_seconds") if summary.get("cache_built") else None,
    }


def median_row(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The first round's row with the median steps/s of all rounds (and each round's)."""
    rates = [row["steps_per_second"] for row in rounds]
    return {**rounds[0], "steps_per_second": statistics.median(rates), "rounds": rates}


def speed_rows(steps: int, batch: int, repeats: int = 1) -> list[dict[str, Any]]:
    """Every run of :data:`RUNS`, uncached then cached, each ``repeats`` times (the runs interleaved, median
    reported), in a temporary folder and feature-cache root."""
    from neckkit.host.manager import PluginHost

    host = PluginHost(env={"NECKKIT_LOAD_PLUGINS": ""}).load()  # the built-ins only
    before = os.environ.get("NECKKIT_CACHE_DIR")
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["NECKKIT_CACHE_DIR"] = str(Path(scratch) / "cache")
        try:
            rounds: dict[tuple[str, bool], list[dict[str, Any]]] = {}
            for cached in (False, True):
                for round_ in range(repeats):
                    for name in RUNS:
                        run_dir = Path(scratch) / f"{name}-{'cached' if cached else 'uncached'}-{round_}"
                        row = train_run(host, name, cached, steps, batch, run_dir)
                        rounds.setdefault((name, cached), []).append(row)
            return [median_row(rows) for rows in rounds.values()]
        finally:
            if before is None:
                os.environ.pop("NECKKIT_CACHE_DIR", None)
            else:
                os.environ["NECKKIT_CACHE_DIR"] = before


# -- the tables -----------------------------------------------------------------------------------

def parameter_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| neck | none | film adds | adaln adds | of which level embedding |", "|---|---|---|---|---|"]
    for row in rows:
        base, film, adaln = row["none"], row["film"], row["adaln"]
        lines.append(f"| {row['neck']} | {base:,} | {film['adds']:,} (+{100 * film['adds'] / base:.1f} %) | "
                     f"{adaln['adds']:,} (+{100 * adaln['adds'] / base:.1f} %) | {adaln['level_embedding']:,} |")
    return lines


def speed_table(rows: list[dict[str, Any]]) -> list[str]:
    by_run: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_run.setdefault(row["run"], {})[row["mode"]] = row
    reference = by_run["per-level-3"]
    lines = ["| run | levels | neck parameters | uncached steps/s | cached steps/s | cache build s | "
             "vs. per-level (uncached / cached) |", "|---|---|---|---|---|---|---|"]
    for name, modes in by_run.items():
        first = next(iter(modes.values()))
        levels = ",".join(f"{level:g}" for level in first["levels"])
        rates = [modes[mode]["steps_per_second"] for mode in MODES]
        ratios = [rate / reference[mode]["steps_per_second"] for rate, mode in zip(rates, MODES, strict=True)]
        build = modes["cached"]["cache_build_seconds"]
        lines.append(f"| {name} | {levels} | {first['neck_parameters']:,} | {rates[0]:.2f} | {rates[1]:.2f} | "
                     f"{'-' if build is None else f'{build:.1f}'} | {ratios[0]:.2f}x / {ratios[1]:.2f}x |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps of every run")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of every run, interleaved; median reported")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    parser.add_argument("--only", choices=("params", "speed"), help="one part only (default: both)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    figures: dict[str, Any] = {}
    if args.only != "speed":
        figures["parameters"] = parameter_rows()
    if args.only != "params":
        figures["speed"] = {"codec": f"{CODEC} (tiny)", "encoder": f"{ENCODER} (tiny)", "scenario": "d1",
                            "steps": args.steps, "batch": args.batch, "threads": args.threads, "repeats": args.repeats,
                            "rows": speed_rows(args.steps, args.batch, args.repeats)}
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    if "parameters" in figures:
        print("Neck parameters by conditioning (16 heads, MLP x4, level embedding of 256 sinusoidal features)")
        print("\n".join(parameter_table(figures["parameters"])))
    if "speed" in figures:
        machine = platform.processor() or platform.machine()
        print(f"\nd1 training, tiny {CODEC} + tiny {ENCODER}, bundled photos, batch {args.batch}, {args.steps} steps "
              f"per run, median of {args.repeats}, {args.threads} thread{'s' * (args.threads != 1)}, {machine}, "
              f"torch {torch.__version__}")
        print("\n".join(speed_table(figures["speed"]["rows"])))


if __name__ == "__main__":
    main()
