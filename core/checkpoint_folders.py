"""Where neckkit checkpoints and training runs are on disk, found without importing torch.

A checkpoint is a folder holding ``meta.json`` beside its safetensors files (the format is
:mod:`neckkit.neck.checkpoint`'s). A training run folder holds ``config.yaml``, ``summary.json``,
``checkpoints/step-XXXXXXXX/`` and ``best/`` (written by :mod:`neckkit.training.checkpointing`). Commands
resolve ``--neck`` and check ``--resume`` with these names before they load anything.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from neckkit.errors import NeckkitError

__all__ = [
    "BEST_DIR",
    "CHECKPOINTS_DIR",
    "CONFIG_FILE",
    "META_FILE",
    "SUMMARY_FILE",
    "checkpoint_dir_name",
    "checkpoint_step",
    "existing_folder",
    "latest_checkpoint",
    "resolve_checkpoint",
]

META_FILE = "meta.json"
BEST_DIR, CHECKPOINTS_DIR = "best", "checkpoints"
CONFIG_FILE, SUMMARY_FILE = "config.yaml", "summary.json"
STEP_DIR = re.compile(r"^step-(\d+)$")


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
