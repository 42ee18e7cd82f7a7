"""neckkit's own neck checkpoints: a folder of safetensors plus JSON metadata.

Layout (``docs/checkpoints.md``)::

    <checkpoint>/
        neck.safetensors    the neck's state dict
        codec.safetensors   optional: the codec's state dict (trained in d2/d3, or imported)
        meta.json           CheckpointMeta: codec, encoder, entry layer, neck shape, scenario, lambda, step...
        trainer.pt          optional: optimiser states and step for --resume (torch.save, read weights-only)

A training run keeps ``<run>/checkpoints/step-XXXXXXXX/`` and ``<run>/best/``; :func:`resolve_checkpoint`
accepts either a checkpoint folder or a run folder. Writes are atomic: a checkpoint is complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from neckkit import __version__
from neckkit.checkpoint_folders import (  # noqa: F401  (imported from here before they moved, torch-free)
    BEST_DIR,
    CHECKPOINTS_DIR,
    META_FILE,
    checkpoint_dir_name,
    latest_checkpoint,
    resolve_checkpoint,
)
from neckkit.checkpoint_folders import existing_folder as _existing_folder
from neckkit.config.base import NeckkitConfig
from neckkit.config.paper import NeckConfig
from neckkit.errors import NeckkitError
from neckkit.loading.codec_weights import CODEC_WRAPPER_PREFIX, load_codec_state, read_checkpoint
from neckkit.loading.weights import seeded_init, state_dict_mismatches
from neckkit.neck.transform import TransformNeck

FORMAT = "neckkit-checkpoint"
FORMAT_VERSION = 1
NECK_FILE, CODEC_FILE, TRAINER_FILE = "neck.safetensors", "codec.safetensors", "trainer.pt"


class ComponentRef(NeckkitConfig):
    """A registered codec or encoder: its name, the factory options that rebuild it, its weights' fingerprint."""

    name: str
    options: dict[str, Any] = {}
    fingerprint: str | None = None


class NeckShape(NeckkitConfig):
    """Everything :class:`TransformNeck` needs besides its weights."""

    latent_channels: int = Field(ge=1)
    width: int = Field(ge=1)
    grid: int = Field(ge=1)
    class_token: bool
    config: NeckConfig
    positions: Literal["fixed", "interpolated"] = "fixed"  # interpolated: a native-resolution encoder's neck

    @classmethod
    def of_neck(cls, neck: TransformNeck) -> NeckShape:
        return cls(
            latent_channels=neck.latent_channels,
            width=neck.width,
            grid=neck.grid,
            class_token=neck.class_embedding is not None,
            config=neck.config,
            positions=neck.positions,  # type: ignore[arg-type]
        )

    @model_serializer(mode="wrap")
    def _omit_fixed_positions(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A square neck is written as before ``positions`` existed, so older readers load it."""
        data = handler(self)
        if data.get("positions") == "fixed":
            data.pop("positions")
        return data


class CheckpointMeta(NeckkitConfig):
    """``meta.json``: what the neck was trained for, and how."""

    # A NaN loss in metrics survives the round trip (the base config refuses non-finite floats).
    model_config = ConfigDict(ser_json_inf_nan="constants", allow_inf_nan=True)

    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    neckkit_version: str = __version__
    codec: ComponentRef
    encoder: ComponentRef
    entry_layer: int = Field(ge=0)
    neck: NeckShape
    scenario: Literal["d1", "d2", "d3"] = "d1"
    rate_lambda: float | None = None
    step: int = Field(0, ge=0)
    epoch: int = Field(0, ge=0)
    codec_tables: str | None = None  # "stored": the codec codes with a file's CDF tables; "rebuilt": update()'s
    metrics: dict[str, float] = {}
    config: dict[str, Any] = {}  # the resolved training config
    source: str | None = None  # e.g. "imported from d1_1.pth.tar"
    checksums: dict[str, str] = {}  # file name -> "sha256:<hex>", checked on load (empty in older checkpoints)


@dataclass
class Checkpoint:
    """A loaded checkpoint (tensors on ``map_location``)."""

    path: Path
    meta: CheckpointMeta
    neck_state: dict[str, Tensor]
    codec_state: dict[str, Tensor] | None


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def file_checksum(path: Path) -> str:
    """``"sha256:<hex>"`` of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def check_file(directory: Path, name: str, meta: CheckpointMeta) -> None:
    """Refuse a checkpoint file whose bytes differ from the checksum ``meta.json`` records for it."""
    expected = meta.checksums.get(name)
    if expected is not None and file_checksum(directory / name) != expected:
        raise NeckkitError(
            f"{directory / name} does not match the checksum in {META_FILE}: the file was changed or damaged "
            "after it was written; restore it or retrain"
        )


def _plain_tensors(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Detached, contiguous CPU tensors, none sharing memory (safetensors refuses shared storage)."""
    out: dict[str, Tensor] = {}
    seen: set[int] = set()
    for key, value in state.items():
        tensor = value.detach().to("cpu").contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if storage in seen:  # tied weights or views of a saved tensor
            tensor = tensor.clone()
        elif tensor.numel():
            seen.add(storage)
        out[key] = tensor
    return out


def save_checkpoint(
    directory: str | os.PathLike[str],
    meta: CheckpointMeta,
    neck_state: Mapping[str, Tensor],
    codec_state: Mapping[str, Tensor] | None = None,
    trainer_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint folder atomically and return its path.

    Everything goes into a temporary sibling folder first; an existing checkpoint at ``directory``
    is replaced only once the new one is complete (old renamed aside, new renamed in, old deleted),
    so a failure at any point leaves the old checkpoint as it was and no temporary folder behind.
    """
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise NeckkitError(f"cannot write checkpoint {directory}: a file of that name exists")
        if not (directory / META_FILE).is_file() and any(directory.iterdir()):
            raise NeckkitError(f"refusing to replace {directory}: it is not a neckkit checkpoint (no {META_FILE})")
    temp = directory.with_name(f".{directory.name}.{secrets.token_hex(8)}.tmp")
    old: Path | None = None
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        temp.mkdir()  # not mkdtemp: the checkpoint gets the umask's permissions, not 0700
        save_file(_plain_tensors(neck_state), str(temp / NECK_FILE), metadata={"format": FORMAT})
        if codec_state is not None:
            save_file(_plain_tensors(codec_state), str(temp / CODEC_FILE), metadata={"format": FORMAT})
        if trainer_state is not None:
            torch.save(dict(trainer_state), temp / TRAINER_FILE)
        checksums = {written.name: file_checksum(written) for written in sorted(temp.iterdir())}
        meta = meta.model_copy(update={"checksums": checksums})
        (temp / META_FILE).write_text(meta.model_dump_json(indent=2) + "\n", encoding="utf-8")
        mode = (temp / META_FILE).stat().st_mode & 0o777  # what the umask allows: safetensors writes 0600
        for written in temp.iterdir():
            written.chmod(mode)
        if directory.exists():
            old = temp.with_suffix(".old")
            os.replace(directory, old)
        try:
            os.replace(temp, directory)
        except OSError:
            if old is not None:
                os.replace(old, directory)
                old = None
            raise
    except OSError as error:
        raise NeckkitError(f"cannot write checkpoint {directory}: {error.strerror or error}") from None
    finally:
        for leftover in (temp, old):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
    return directory


# --------------------------------------------------------------------------------------------------
# Finding and reading
# --------------------------------------------------------------------------------------------------


def read_meta(directory: str | os.PathLike[str]) -> CheckpointMeta:
    """The checkpoint's ``meta.json``, validated; every problem is one :class:`NeckkitError` line."""
    directory = Path(directory)
    _existing_folder(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise NeckkitError(f"{directory} is not a neckkit checkpoint: it has no {META_FILE}")
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NeckkitError(f"{meta_path} is not valid JSON: {' '.join(str(error).split())}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise NeckkitError(f"{meta_path} is not neckkit checkpoint metadata (format {found!r}, expected {FORMAT!r})")
    version = data.get("format_version", FORMAT_VERSION)
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise NeckkitError(
            f"{directory} has checkpoint format version {version}, newer than this neckkit ({__version__}) "
            f"reads (up to {FORMAT_VERSION}): upgrade neckkit"
        )
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise NeckkitError(f"{meta_path} has an unknown checkpoint format version {repr(version)[:40]} (known: 1..{FORMAT_VERSION})")
    return CheckpointMeta.validate_data(data, source=str(meta_path))


def _read_tensors(path: Path, map_location: str | torch.device) -> dict[str, Tensor]:
    try:
        return load_file(str(path), device=str(map_location))
    except Exception as error:  # SafetensorError, truncated files, bad device names
        detail = " ".join(str(error).split())
        raise NeckkitError(f"{path} is not a readable safetensors file ({type(error).__name__}: {detail})") from None


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint (or a training run's best/latest one): metadata and tensors."""
    directory = resolve_checkpoint(path)
    meta = read_meta(directory)
    neck_path = directory / NECK_FILE
    if not neck_path.is_file():
        raise NeckkitError(f"checkpoint {directory} is incomplete: it has no {NECK_FILE}")
    codec_path = directory / CODEC_FILE
    for name in (NECK_FILE, CODEC_FILE):
        if (directory / name).is_file():
            check_file(directory, name, meta)
    codec_state = _read_tensors(codec_path, map_location) if codec_path.is_file() else None
    return Checkpoint(directory, meta, _read_tensors(neck_path, map_location), codec_state)


def load_trainer_state(directory: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The training state saved with the checkpoint (``torch.load(weights_only=True)``), or None."""
    path = Path(directory) / TRAINER_FILE
    if not path.is_file():
        return None
    check_file(Path(directory), TRAINER_FILE, read_meta(directory))
    state = read_checkpoint(path)
    if not isinstance(state, dict):
        raise NeckkitError(f"{path} holds a {type(state).__name__}, not a dict of training state")
    return state


# --------------------------------------------------------------------------------------------------
# Using a checkpoint
# --------------------------------------------------------------------------------------------------


def check_pair(meta: CheckpointMeta, codec: str, encoder: str, path: str | os.PathLike[str] | None = None) -> None:
    """Refuse a neck trained for another codec or encoder, naming both pairs in one line."""
    if (meta.codec.name, meta.encoder.name) == (codec, encoder):
        return
    where = f"checkpoint {path}" if path is not None else "the checkpoint"
    raise NeckkitError(
        f"{where} holds a neck for codec {meta.codec.name!r} and encoder {meta.encoder.name!r}, "
        f"not for codec {codec!r} and encoder {encoder!r}"
    )


def build_neck(checkpoint: Checkpoint) -> TransformNeck:
    """The neck described by ``meta.json``, with the checkpoint's weights loaded strictly (on CPU)."""
    shape = checkpoint.meta.neck
    with seeded_init(0):  # the init is overwritten; do not consume the caller's RNG stream
        neck = TransformNeck(shape.latent_channels, shape.width, shape.grid, shape.class_token, shape.config,
                             shape.positions)
    problems = state_dict_mismatches(neck.state_dict(), checkpoint.neck_state, reference=f"{META_FILE} says")
    if problems:
        raise NeckkitError(
            f"{checkpoint.path / NECK_FILE} does not fit the neck its {META_FILE} describes: {'; '.join(problems)}"
        )
    neck.load_state_dict(checkpoint.neck_state, strict=True)
    return neck


def load_codec_weights(codec: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Load a codec state dict into ``codec`` strictly; mismatches are one line naming the keys.

    ``state`` may be the codec's own ``state_dict()`` or, for adapters that keep the library model
    as ``.model`` (CompressAI, TIC), that model's state dict (as imported files hold). Coder tables
    of any size are accepted: when the state holds them for every entropy model they are used as
    stored (:func:`~neckkit.loading.codec_weights.entropy_tables` says "stored"), else rebuilt.
    """
    model = getattr(codec, "model", None)
    if isinstance(model, nn.Module):
        # Load into the library model (either layout): its stored CDF tables are used as they are, or,
        # when the state holds none, rebuilt once with one notice line (load_codec_state).
        if state and all(key.startswith(CODEC_WRAPPER_PREFIX) for key in state):
            state = {key[len(CODEC_WRAPPER_PREFIX) :]: value for key, value in state.items()}
        codec = model
    load_codec_state(codec, dict(state), source)


def restore_codec_state(codec: nn.Module, checkpoint: Checkpoint) -> None:
    """Load the checkpoint's codec weights into ``codec`` (nothing when it holds none)."""
    if checkpoint.codec_state:
        load_codec_weights(codec, checkpoint.codec_state, str(checkpoint.path / CODEC_FILE))
