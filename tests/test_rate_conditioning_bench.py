"""benchmarks/rate_conditioning.py: the parameter counts match the hand formula, the timing part reports every run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "rate_conditioning.py"

_spec = importlib.util.spec_from_file_location("rate_conditioning", SCRIPT)
rate_conditioning = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rate_conditioning)  # type: ignore[union-attr]

FEATURES = 256  # NeckConfig.level_features' default (DiT's)


def level_embedding(width: int) -> int:
    """Linear(features -> width), SiLU, Linear(width -> width)."""
    return FEATURES * width + width + width * width + width


def test_parameter_counts_equal_the_hand_formula_at_the_papers_sizes() -> None:
    rows = rate_conditioning.parameter_rows()
    assert [(r["width"], r["grid"], r["blocks"]) for r in rows] == [(1024, 16, 1), (1024, 24, 1), (1024, 16, 2)]
    assert rows[0]["none"] == 13_191_168  # the paper's neck
    assert rows[1]["none"] - rows[0]["none"] == (24 * 24 - 16 * 16) * 1024  # only the position table grows
    for row in rows:
        width, blocks = row["width"], row["blocks"]
        # adaLN-Zero: a shift, a scale and a gate per sub-layer (6 x width); FiLM: a scale and a shift (2 x width)
        for conditioning, chunks in (("adaln", 6), ("film", 2)):
            modulation = blocks * chunks * width * (width + 1)  # SiLU, Linear(width -> chunks * width) per block
            figures = row[conditioning]
            assert figures["level_embedding"] == level_embedding(width)
            assert figures["modulation"] == modulation
            assert figures["adds"] == level_embedding(width) + modulation
            assert figures["total"] == row["none"] + figures["adds"]
    assert rows[0]["adaln"]["adds"] == 7_610_368 and rows[0]["film"]["adds"] == 3_411_968


def test_the_timing_part_reports_every_run_cached_and_uncached(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NECKKIT_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--only", "speed", "--steps", "2", "--batch", "2", "--threads", "1", "--json"],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    assert set(figures) == {"speed"}
    speed = figures["speed"]
    assert (speed["steps"], speed["batch"], speed["threads"], speed["repeats"]) == (2, 2, 1, 1)
    rows = speed["rows"]
    assert sorted((r["run"], r["mode"]) for r in rows) == sorted(
        (run, mode) for run in ("adaln", "film", "none", "per-level-3") for mode in ("uncached", "cached")
    )
    every = [float(level) for level in range(8)]
    for row in rows:
        assert row["steps"] == 2 and row["steps_per_second"] > 0 and row["batch"] == 2
        assert row["rounds"] == [row["steps_per_second"]]
        assert row["levels"] == ([3.0] if row["run"] == "per-level-3" else every)
        assert row["conditioning"] == {"per-level-3": "none"}.get(row["run"], row["run"])
    built = [row for row in rows if row["cache_build_seconds"] is not None]
    assert sorted(row["run"] for row in built) == ["adaln", "per-level-3"]  # the 8-level runs share one cache
    assert all(row["mode"] == "cached" for row in built)
    parameters = {row["run"]: row["neck_parameters"] for row in rows}
    assert parameters["none"] == parameters["per-level-3"] < parameters["film"] < parameters["adaln"]
    assert not list(tmp_path.joinpath("cache").glob("*"))  # the script's own temporary cache, not the caller's
