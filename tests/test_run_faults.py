"""Nothing lost under faults (issue 23): one owner per run folder, a run killed at its first checkpoint
resumes, and a full disk while the d1 feature cache is built is one error line, not a SIGBUS."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import invoke
from neckkit.checkpoint_folders import remove_leftovers
from neckkit.training.metrics_log import read_metrics
from neckkit.training.run_lock import LOCK_FILE, RunLock

TRAIN = ["train", "--codec", "tic", "--encoder", "clip-l", "--tiny", "--no-progress"]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("NECKKIT_CACHE_DIR", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


def child_env(cache: Path) -> dict[str, str]:
    return {**os.environ, "NECKKIT_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


def wait_for_lock(folder: Path, process: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until ``process`` holds the lock of ``folder`` (its pid is in the lock file)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (folder / LOCK_FILE).read_text().strip() == str(process.pid):
                return
        except OSError:
            pass
        assert process.poll() is None, process.communicate()
        time.sleep(0.05)
    raise AssertionError(f"{process.pid} never locked {folder}")


def reporting_free(free: int):
    """A stand-in for ``shutil.disk_usage`` that reports ``free`` bytes free."""
    usage = shutil.disk_usage(Path.cwd())
    return lambda _path: usage._replace(free=free)


def error_lines(stderr: str) -> list[str]:
    """The ``Error:`` lines (a tiny run also prints its random-weights note)."""
    return [line for line in stderr.splitlines() if line.startswith("Error")]


def train_losses(run_dir: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run_dir / "metrics.jsonl") if r["kind"] == "train"]


# -- one owner per run folder -------------------------------------------------------------------------


def test_a_second_train_into_a_folder_in_use_is_refused_in_one_line_and_writes_nothing(runner, host, tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "run"
    assert invoke(runner, host, *TRAIN, "--max-steps", "2", "--out", str(out)).exit_code == 0
    with RunLock(out).acquire():
        before = snapshot(out)
        for extra in ([], ["--resume"], ["--resume", "--max-steps", "4"]):
            result = invoke(runner, host, *TRAIN, "--max-steps", "2", "--out", str(out), *extra)
            assert result.exit_code == 1
            assert result.stderr.splitlines() == [
                f"Error: {out} is in use by another neckkit train (pid {os.getpid()}); wait for it or choose another --out"
            ]
            assert result.stdout == ""
    assert snapshot(out) == before


def test_two_train_processes_on_one_out_the_second_is_refused_and_the_first_run_is_intact(runner, host, tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "neckkit", *TRAIN, "--out", str(out), "--set", "log_every=1"],
        cwd=tmp_path, env=child_env(cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for_lock(out, first)
        second = invoke(runner, host, *TRAIN, "--out", str(out), "--resume")
        assert first.poll() is None, "the first run ended before the second was refused: the check proves nothing"
        stdout, stderr = first.communicate(timeout=120)
    finally:
        first.kill()
    assert second.exit_code == 1
    assert second.stderr.splitlines() == [
        f"Error: {out} is in use by another neckkit train (pid {first.pid}); wait for it or choose another --out"
    ]
    assert first.returncode == 0, stderr
    assert stdout.splitlines()[-1].startswith("40 steps in") and stdout.rstrip().endswith(f"run saved in {out}")
    steps = [step for step, _ in train_losses(out)]
    assert steps == list(range(1, 41))  # one writer: every step once, in order
    assert json.loads((out / "summary.json").read_text())["steps"] == 40
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000020", "step-00000030", "step-00000040"]


HOLDER = """
import os, sys, time
from pathlib import Path
from neckkit.training.run_lock import RunLock
lock = RunLock(Path(sys.argv[1])).acquire()
worker = os.fork()  # like a DataLoader worker: lives on for a while after its parent dies
if worker == 0:
    time.sleep(60)
    os._exit(0)
print(worker, flush=True)
time.sleep(60)
"""


def test_a_lock_left_by_a_killed_process_and_its_forked_worker_does_not_block_the_next_run(runner, host, tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], env=child_env(cache), stdout=subprocess.PIPE, text=True)
    worker = int(holder.stdout.readline())
    try:
        busy = invoke(runner, host, *TRAIN, "--max-steps", "2", "--out", str(out))
        assert busy.exit_code == 1 and f"is in use by another neckkit train (pid {holder.pid})" in busy.stderr
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        os.kill(worker, 0)  # the worker still lives, with its copy of the lock file closed
        result = invoke(runner, host, *TRAIN, "--max-steps", "2", "--out", str(out))
    finally:
        holder.kill()
        os.kill(worker, signal.SIGKILL)
    assert result.exit_code == 0, result.output
    assert (out / "summary.json").is_file()


def test_default_run_folders_started_together_take_different_numbers(runner, host, tmp_path: Path, cache: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    starting = Path("runs") / "tic-clip-l-d1"
    with RunLock(starting).acquire():  # another run has claimed it and not yet written a checkpoint
        result = invoke(runner, host, *TRAIN, "--max-steps", "2")
        assert result.exit_code == 0, result.output
        assert result.stdout.rstrip().endswith("run saved in runs/tic-clip-l-d1-2")
        assert [p.name for p in starting.iterdir()] == [LOCK_FILE]  # nothing written into the claimed one


def test_a_failed_start_leaves_no_empty_run_folder(runner, host, tmp_path: Path, cache: Path, monkeypatch) -> None:
    import neckkit.training.trainer

    def broken(*_args, **_kwargs):
        raise RuntimeError("neck construction failed")

    monkeypatch.setattr(neckkit.training.trainer.Trainer, "__init__", broken)
    out = tmp_path / "run"
    result = invoke(runner, host, *TRAIN, "--max-steps", "2", "--out", str(out))
    assert result.exit_code == 1 and "neck construction failed" in result.stderr
    assert not out.exists()


# -- kill -9 at the first checkpoint ------------------------------------------------------------------

KILL_AT_FIRST_CHECKPOINT = """
import os, signal, sys
from pathlib import Path

real_replace = os.replace

def replace(source, target, *args, **kwargs):
    if Path(source).name.startswith(".step-") and Path(source).name.endswith(".tmp"):
        os.kill(os.getpid(), signal.SIGKILL)  # the step checkpoint is written, not yet renamed into place
    return real_replace(source, target, *args, **kwargs)

os.replace = replace
from neckkit.cli import main
main(sys.argv[1:])
"""


def test_kill_9_at_the_first_checkpoint_leaves_a_run_that_resumes_from_step_0(runner, host, tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "run"
    args = [*TRAIN, "--max-steps", "12", "--out", str(out), "--set", "log_every=1"]
    killed = subprocess.run([sys.executable, "-c", KILL_AT_FIRST_CHECKPOINT, *args], cwd=tmp_path, env=child_env(cache),
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (out / "best" / "meta.json").is_file()  # the wedged state of the issue
    leftovers = list((out / "checkpoints").iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".step-00000010.") and leftovers[0].name.endswith(".tmp")

    plain = invoke(runner, host, *args)
    assert plain.exit_code == 1
    assert plain.stderr.splitlines() == [
        f"Error: {out} already holds a training run; pass --resume to continue it or choose another --out"
    ]
    assert not (out / "checkpoints").exists()  # its owner for a moment cleared the leftover
    assert (out / "best" / "meta.json").is_file()

    resumed = invoke(runner, host, *args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert resumed.stdout.splitlines()[0] == (
        f"{out} holds no complete step checkpoint (it stopped before its first); starting it again from step 0 with its saved config"
    )
    assert [step for step, _ in train_losses(out)] == list(range(1, 13))  # the killed run's lines replaced, none doubled
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000010", "step-00000012"]
    assert json.loads((out / "summary.json").read_text())["steps"] == 12


def test_resume_clears_temporaries_and_restarts_a_run_without_a_complete_step_checkpoint(runner, host, tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "run"
    args = [*TRAIN, "--max-steps", "12", "--out", str(out), "--set", "log_every=1"]
    assert invoke(runner, host, *args).exit_code == 0
    reference = train_losses(out)
    checkpoints = out / "checkpoints"
    (checkpoints / "step-00000012").rename(checkpoints / ".step-00000012.0123abcd.tmp")  # as the fault leaves it
    shutil.rmtree(checkpoints / "step-00000010")
    (out / "summary.json").unlink()
    (out / ".metrics.jsonl.x1y2z3.tmp").write_text("{}\n")  # atomic_path's temporary
    shutil.copytree(out / "best", out / ".best.0123abcd.old")  # save_checkpoint's old copy

    resumed = invoke(runner, host, *args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert "starting it again from step 0 with its saved config" in resumed.stdout
    assert train_losses(out) == reference  # same config, same steps: the same losses
    assert [p.name for p in out.iterdir() if p.name.endswith((".tmp", ".old"))] == []
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000010", "step-00000012"]


def test_a_checkpoint_killed_between_its_two_renames_is_put_back(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / ".best.0123abcd.old").mkdir(parents=True)  # the old best/, moved aside; the new one never landed
    (run / ".best.0123abcd.old" / "meta.json").write_text("{}")
    (run / ".best.0123abcd.tmp").mkdir()
    (run / "checkpoints" / ".step-00000010.feedbeef.tmp").mkdir(parents=True)
    (run / "notes.old").write_text("the user's")

    remove_leftovers(run)
    assert sorted(p.name for p in run.iterdir()) == ["best", "notes.old"]
    assert (run / "best" / "meta.json").read_text() == "{}"


# -- a full disk while the d1 feature cache is built -------------------------------------------------


def cache_temporaries(cache: Path) -> list[Path]:
    features = cache / "features"
    return sorted(features.iterdir()) if features.is_dir() else []


def test_too_little_free_space_for_the_feature_cache_is_one_line_before_anything_is_written(runner, host, tmp_path: Path, cache: Path, monkeypatch) -> None:
    monkeypatch.setattr(shutil, "disk_usage", reporting_free(1 << 20))
    result = invoke(runner, host, *TRAIN, "--max-steps", "2", "--out", str(tmp_path / "run"))
    assert result.exit_code == 1
    [line] = error_lines(result.stderr)
    assert line.startswith(f"Error: not enough disk space for the feature cache in {cache / 'features'}: it needs 16.1 MiB (")
    assert "and 1.0 MiB (1,048,576 bytes) are free; free space there, point NECKKIT_CACHE_DIR at a larger disk" in line
    assert cache_temporaries(cache) == []


def test_a_disk_that_fills_while_the_cache_file_is_allocated_is_one_line_and_leaves_nothing(runner, host, tmp_path: Path, cache: Path, monkeypatch) -> None:
    def full(_fd: int, _offset: int, _length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full, raising=False)
    result = invoke(runner, host, *TRAIN, "--max-steps", "2", "--out", str(tmp_path / "run"))
    assert result.exit_code == 1
    assert error_lines(result.stderr) == [
        f"Error: the disk filled up while writing the feature cache in {cache / 'features'} (No space left on device); "
        "free space there, point NECKKIT_CACHE_DIR at a larger disk, or train with --set cache=false"
    ]
    assert cache_temporaries(cache) == []


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Path:
    """A real 64 KiB tmpfs (root only); the tiny cache needs about 100 KiB."""
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def tiny_cache_build(root: Path) -> None:
    from neckkit.training.feature_cache import FeatureCache

    def compute(images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"y_hat": torch.ones(len(images), 192, 16, 16)}  # 192 KiB per image, as a real latent's scale

    images = [(torch.zeros(3, 8, 8), -1) for _ in range(4)]
    FeatureCache.open_or_build(root, {"key": "full disk"}, images, compute, batch_size=2)


@pytest.mark.parametrize("preallocate", [True, False], ids=["preallocated", "plain-writes"])
def test_a_real_full_disk_gives_an_error_line_not_a_bus_error(small_tmpfs: Path, monkeypatch, preallocate: bool) -> None:
    from neckkit import NeckkitError

    with pytest.raises(NeckkitError, match=r"^not enough disk space for the feature cache in .*tmpfs/features: it needs"):
        tiny_cache_build(small_tmpfs / "features")
    monkeypatch.setattr(shutil, "disk_usage", reporting_free(1 << 40))  # the check misled: the writes find the disk full
    if not preallocate:  # a file system without posix_fallocate: the writes themselves hit the full disk
        monkeypatch.delattr(os, "posix_fallocate")
    with pytest.raises(NeckkitError, match=r"^the disk filled up while writing the feature cache in .*tmpfs/features \(No space left"):
        tiny_cache_build(small_tmpfs / "features")
    assert list((small_tmpfs / "features").iterdir()) == []


def test_cache_files_read_back_what_was_written_with_unwritten_rows_zero(tmp_path: Path) -> None:
    from neckkit.training.cache_files import NpyRows, npy_bytes

    rows = NpyRows(tmp_path / "a.npy", np.dtype(np.float32), (5, 2, 3))
    rows.append(np.arange(12, dtype=np.float32).reshape(2, 2, 3))
    rows.append(np.full((1, 2, 3), 7, dtype=np.float32))
    rows.finish()
    array = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert array.shape == (5, 2, 3) and (tmp_path / "a.npy").stat().st_size == npy_bytes(np.dtype(np.float32), (5, 2, 3))
    assert np.array_equal(array[:2], np.arange(12, dtype=np.float32).reshape(2, 2, 3))
    assert np.array_equal(array[2], np.full((2, 3), 7)) and not array[3:].any()


# -- kill -9 while --resume rewrites metrics.jsonl -------------------------------------------------------

KILL_AT_METRICS_REWRITE = """
import os, signal, sys
from pathlib import Path

real_replace = os.replace

def replace(source, target, *args, **kwargs):
    if Path(target).name == "metrics.jsonl":
        os.kill(os.getpid(), signal.SIGKILL)  # the kept history is written aside, not yet renamed into place
    return real_replace(source, target, *args, **kwargs)

os.replace = replace
from neckkit.cli import main
main(sys.argv[1:])
"""


def test_kill_9_while_resume_rewrites_the_metrics_keeps_the_whole_history(runner, host, tmp_path: Path, cache: Path) -> None:
    out = tmp_path / "run"
    args = [*TRAIN, "--out", str(out), "--set", "log_every=1"]
    assert invoke(runner, host, *args, "--max-steps", "12").exit_code == 0
    before = (out / "metrics.jsonl").read_bytes()
    assert [step for step, _ in train_losses(out)] == list(range(1, 13))
    killed = subprocess.run([sys.executable, "-c", KILL_AT_METRICS_REWRITE, *args, "--max-steps", "16", "--resume"],
                            cwd=tmp_path, env=child_env(cache), capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (out / "metrics.jsonl").read_bytes() == before  # 12 steps stay 12 (in place, 18 lines once became 9)
    resumed = invoke(runner, host, *args, "--max-steps", "16", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert [step for step, _ in train_losses(out)] == list(range(1, 17))
