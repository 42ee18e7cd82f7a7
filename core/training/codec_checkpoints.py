"""The run folder of ``neckkit train-codec``: step checkpoints, the codec weights file, exact resume.

Layout::

    <run>/config.yaml           the resolved CodecTrainConfig
    <run>/metrics.jsonl         one line per logged step (MetricsLog)
    <run>/codec.pth             the latest checkpoint's codec state dict: --codec-weights for every command
    <run>/codec.json            what codec.pth is: codec name, options, fingerprint, step, lambdas
    <run>/checkpoints/step-XXXXXXXX/
        codec.pth               the codec's state dict, entropy tables rebuilt from its weights just before
        trainer.pt              step, both optimisers' states, the RNG states, the sampler and data settings
        meta.json               CodecCheckpointMeta (written last: a folder without it is incomplete)
    <run>/levels.json, summary.json   at the end

Checkpoint folders are written into a temporary sibling and renamed into place, so one is complete or
absent; the names follow :mod:`neckkit.checkpoint_folders` so :func:`~neckkit.checkpoint_folders.latest_checkpoint`
finds them and :func:`~neckkit.checkpoint_folders.remove_leftovers` clears what a killed writer left.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field

from neckkit import __version__
from neckkit.checkpoint_folders import CHECKPOINTS_DIR, LEFTOVER, META_FILE, checkpoint_dir_name, latest_checkpoint
from neckkit.config.base import NeckkitConfig
from neckkit.errors import NeckkitError, describe_error

if TYPE_CHECKING:  # torch loads with the first checkpoint, so the CLI can clear a run folder without it
    from torch import Tensor, nn

__all__ = [
    "CODEC_FILE",
    "CODEC_INFO_FILE",
    "FORMAT",
    "LEVELS_FILE",
    "TRAINER_FILE",
    "CodecCheckpointMeta",
    "data_key",
    "load_codec_checkpoint",
    "remove_codec_leftovers",
    "save_codec_checkpoint",
]

FORMAT = "neckkit-codec-training"
FORMAT_VERSION = 1
CODEC_FILE, CODEC_INFO_FILE, TRAINER_FILE, LEVELS_FILE = "codec.pth", "codec.json", "trainer.pt", "levels.json"
RUN_FILES = (CODEC_FILE, CODEC_INFO_FILE, LEVELS_FILE)  # written beside config.yaml by this module's users


class CodecCheckpointMeta(NeckkitConfig):
    """``meta.json`` of a codec-training checkpoint, and (less ``config``) ``codec.json`` beside ``codec.pth``."""

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    codec: str = Field(description="registered codec name")
    options: dict[str, Any] = Field(default_factory=dict, description="factory options, without local paths")
    fingerprint: str = Field(description="codec weights fingerprint (without entropy tables), as .nk files record it")
    step: int = Field(ge=0)
    levels: int = Field(ge=1, description="the codec's num_levels")
    lambdas: tuple[float, ...]
    data: str = Field(description="data_key of the training images: a resume must see the same ones")
    neckkit_version: str = __version__
    config: dict[str, Any] = Field(default_factory=dict)


def data_key(paths: list[Path]) -> str:
    """Hex key of the training image list (names and sizes): resuming on other images would not be exact."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path.name}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def codec_state(codec: nn.Module, label: str) -> dict[str, Tensor]:
    """The codec's state dict on the CPU, its entropy tables rebuilt from these weights first."""
    from neckkit.training.checkpointing import rebuild_entropy_tables

    rebuild_entropy_tables(codec, label)  # the saved tables are a function of the saved weights
    return {key: value.detach().cpu().clone() for key, value in codec.state_dict().items()}


def rng_states() -> dict[str, Any]:
    """torch's CPU and CUDA generator states (restored on resume)."""
    import torch

    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _write_folder(directory: Path, files: dict[str, Any], meta: CodecCheckpointMeta) -> None:
    """``torch.save`` each of ``files`` and ``meta.json`` (last) into ``directory``, atomically."""
    import torch

    temp = directory.with_name(f".{directory.name}.{secrets.token_hex(8)}.tmp")  # what remove_leftovers clears
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        temp.mkdir()
        for name, data in files.items():
            torch.save(data, temp / name)
        (temp / META_FILE).write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(temp, directory)
    except OSError as error:
        raise NeckkitError(f"cannot write checkpoint {directory}: {error.strerror or error}") from None
    finally:
        if temp.exists():
            shutil.rmtree(temp, ignore_errors=True)


def _publish(source: Path, target: Path) -> None:
    """Make ``target`` the file ``source`` is, atomically: a hard link renamed into place (a copy where links fail)."""
    temp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    try:
        try:
            os.link(source, temp)
        except OSError:
            shutil.copyfile(source, temp)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def save_codec_checkpoint(run_dir: Path, codec: nn.Module, meta: CodecCheckpointMeta, trainer_state: dict[str, Any]) -> Path:
    """Write ``checkpoints/step-N`` of ``meta.step``, point ``codec.pth``/``codec.json`` at it, prune old ones."""
    from neckkit.training.checkpointing import KEEP_CHECKPOINTS

    folder = Path(run_dir) / CHECKPOINTS_DIR
    directory = folder / checkpoint_dir_name(meta.step)
    state = codec_state(codec, f"codec {meta.codec!r}")
    _write_folder(directory, {CODEC_FILE: state, TRAINER_FILE: trainer_state}, meta)
    _publish(directory / CODEC_FILE, Path(run_dir) / CODEC_FILE)
    from neckkit.files import atomic_path

    with atomic_path(Path(run_dir) / CODEC_INFO_FILE) as temporary:
        info = meta.model_dump(mode="json", exclude={"config", "data"})
        temporary.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    steps = sorted(p for p in folder.glob("step-*") if p.is_dir())
    for old in steps[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)
    return directory


def load_codec_checkpoint(run_dir: Path) -> tuple[CodecCheckpointMeta, dict[str, Tensor], dict[str, Any], Path]:
    """(meta, codec state dict, trainer state, folder) of the run's latest complete checkpoint."""
    from neckkit.loading.codec_weights import read_checkpoint

    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise NeckkitError(f"--resume: {run_dir} holds no checkpoint to resume from")
    try:
        meta = CodecCheckpointMeta.model_validate_json((latest / META_FILE).read_text(encoding="utf-8"))
    except Exception as error:
        raise NeckkitError(f"--resume: {latest / META_FILE} is not a codec-training checkpoint ({describe_error(error)})") from None
    if meta.format != FORMAT:
        raise NeckkitError(f"--resume: {latest} is a {meta.format!r} checkpoint, not one of neckkit train-codec")
    state = read_checkpoint(latest / CODEC_FILE)
    trainer = read_checkpoint(latest / TRAINER_FILE)
    return meta, state, trainer, latest


def remove_codec_leftovers(run_dir: Path) -> None:
    """Clear the temporary files a killed run left for :data:`RUN_FILES` (the rest: ``remove_leftovers``)."""
    if not Path(run_dir).is_dir():
        return
    for entry in Path(run_dir).iterdir():
        match = LEFTOVER.match(entry.name)
        if match and match.group("name") in RUN_FILES and match.group("kind") == "tmp" and entry.is_file():
            entry.unlink(missing_ok=True)
