"""Where neckkit checkpoints and training runs are on disk, found without importing torch.

A checkpoint is a folder holding ``meta.json`` beside its safetensors files (the format is
:mod:`neckkit.neck.checkpoint`'s). A training run folder holds ``config.yaml``, ``summary.json``,
``checkpoints/step-XXXXXXXX/`` and ``best/`` (written by :mod:`neckkit.training.checkpointing`). Commands
resolve ``--neck`` and check ``--resume`` with these names before they load anything, and the run that
owns a folder clears what an interrupted writer left (:func:`remove_leftovers`).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from neckkit.errors import NeckkitError

__all__ = [
    "BEST_DIR",
    "CHECKPOINTS_DIR",
    "CONFIG_FILE",
    "META_FILE",
    "METRICS_FILE",
    "SUMMARY_FILE",
    "checkpoint_dir_name",
    "checkpoint_step",
    "existing_folder",
    "latest_checkpoint",
    "remove_leftovers",
    "resolve_checkpoint",
]

META_FILE = "meta.json"
BEST_DIR, CHECKPOINTS_DIR = "best", "checkpoints"
CONFIG_FILE, SUMMARY_FILE, METRICS_FILE = "config.yaml", "summary.json", "metrics.jsonl"
STEP_DIR = re.compile(r"^step-(\d+)$")
# What a killed writer leaves: save_checkpoint's ``.<name>.<hex>.tmp`` folder and ``.<name>.<hex>.old``
# (the checkpoint it was replacing), atomic_path's ``.<file>.<random>.tmp``; only for names a run writes.
LEFTOVER = re.compile(r"^\.(?P<name>.+)\.[^.]+\.(?P<kind>tmp|old)$")
RUN_WRITES = frozenset({CONFIG_FILE, SUMMARY_FILE, METRICS_FILE, BEST_DIR})


def checkpoint_dir_name(step: int) -> str:
    """``step-00000100``: the folder of the checkpoint taken at ``step`` inside ``<run>/checkpoints``."""
    return f"step-{step:08d}"


def checkpoint_step(folder: str | os.PathLike[str]) -> int | None:
    """The step of a ``step-XXXXXXXX`` checkpoint folder, from its name; ``None`` for any other folder."""
    match = STEP_DIR.match(Path(folder).name)
    return int(match.group(1)) if match else None


def existing_folder(path: Path) -> None:
    """Refuse a checkpoint path that does not exist or is not a folder."""
    if not path.exists():
        raise NeckkitError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise NeckkitError(f"{path} is not a directory: a neckkit checkpoint is a folder holding {META_FILE}")


def latest_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """The complete ``<run_dir>/checkpoints/step-*`` with the highest step, if any."""
    folder = Path(run_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    steps = [
        (step, entry)
        for entry in folder.iterdir()
        if (step := checkpoint_step(entry)) is not None and (entry / META_FILE).is_file()
    ]
    return max(steps)[1] if steps else None


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint folder as given, or for a training run its ``best/``, else its latest step."""
    path = Path(path)
    existing_folder(path)
    if (path / META_FILE).is_file():
        return path
    if (path / BEST_DIR / META_FILE).is_file():
        return path / BEST_DIR
    latest = latest_checkpoint(path)
    if latest is not None:
        return latest
    raise NeckkitError(
        f"{path} is not a neckkit checkpoint: it has no {META_FILE} (nor, as a training run, "
        f"{BEST_DIR}/ or {CHECKPOINTS_DIR}/step-*/)"
    )


def remove_leftovers(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Clear the temporary files and folders an interrupted run left in ``run_dir`` and its ``checkpoints/``.

    Call only while owning the folder (:class:`neckkit.training.run_lock.RunLock`): a live writer's
    temporaries look the same. A checkpoint killed between its two renames is missing with its previous
    version still complete beside it as ``.<name>.<hex>.old``: that one is put back, not deleted. An empty
    ``checkpoints/`` goes too, so a run that never completed a checkpoint no longer looks like one.
    Returns what was removed or restored.
    """
    run_dir = Path(run_dir)
    touched: list[Path] = []
    for folder in (run_dir / CHECKPOINTS_DIR, run_dir):
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            match = LEFTOVER.match(entry.name)
            if match is None or entry.is_symlink():
                continue
            ours = match.group("name") in RUN_WRITES if folder == run_dir else checkpoint_step(match.group("name")) is not None
            if not ours:
                continue
            target = folder / match.group("name")
            if match.group("kind") == "old" and (entry / META_FILE).is_file() and not target.exists():
                os.replace(entry, target)
            elif entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            touched.append(entry)
    checkpoints = run_dir / CHECKPOINTS_DIR
    if checkpoints.is_dir() and not checkpoints.is_symlink() and not any(checkpoints.iterdir()):
        checkpoints.rmdir()
    return touched
