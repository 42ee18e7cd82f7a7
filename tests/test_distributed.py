"""torchrun: two gloo processes train like one process with the same global batch; rank 0 writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from neckkit.training.metrics_log import read_metrics

TRAIN = ["train", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--max-steps", "4", "--no-progress",
         "--set", "log_every=1", "--set", "checkpoint_every=2"]


def neckkit(tmp_path: Path, processes: int, out: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "NECKKIT_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    command = [*launcher, "-m", "neckkit", *TRAIN, "--out", str(out)] if processes > 1 else [sys.executable, "-m", "neckkit", *TRAIN, "--out", str(out)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    single = neckkit(tmp_path, 1, tmp_path / "one")
    assert single.returncode == 0, single.stderr[-2000:]
    double = neckkit(tmp_path, 2, tmp_path / "two")
    assert double.returncode == 0, double.stderr[-3000:]
    one = [r for r in read_metrics(tmp_path / "one" / "metrics.jsonl") if r["kind"] == "train"]
    two = [r for r in read_metrics(tmp_path / "two" / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["step"] for r in two] == [1, 2, 3, 4]  # one writer: no duplicated lines
    for a, b in zip(one, two, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)
        assert b["distillation"] == pytest.approx(a["distillation"], rel=1e-4)
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]
    assert double.stdout.count("run saved in") == 1  # only rank 0 reports
