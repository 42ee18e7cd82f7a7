"""On-disk, memory-mapped cache of per-image features for scenario d1.

In d1 the codec is frozen and the crops are fixed, so each image's codec latent and the frozen
encoder's teacher embedding are constants: they are computed once, written to ``.npy`` files and
read back through memory maps, so training never runs the codec or the teacher again.

A cache is a folder ``cache_root / sha256(json(key))[:16]`` holding one ``<field>.npy`` per
field, ``labels.npy``, ``source_indices.npy`` and ``index.json``; the key, its folder name and the
default root come from :mod:`neckkit.training.feature_cache_keys` (re-exported here). It is built in a temporary
sibling folder that is renamed into place only when complete, so a folder that exists is either
complete or damaged by hand; a damaged one (no complete index, files that do not match it) is
rebuilt, never trusted.

The ``.npy`` files are sized for every item of the dataset; when some images are unreadable the
trailing rows are unused and ``index.json``'s ``count`` says how many are valid. They are written
with plain writes after a check that the disk holds them (:mod:`neckkit.training.cache_files`), so a
full disk is one error line and never a SIGBUS from a memory map; the temporary folder is removed on
any failure. Fields of dtype bfloat16, which numpy lacks, are stored as int16 bit patterns.

With a native-resolution encoder each crop bucket has a cache of its own (its key names the bucket), and
:class:`BucketCaches` reads them as one row set.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from neckkit import __version__
from neckkit.errors import NeckkitError
from neckkit.training.cache_files import NpyRows, check_space, disk_errors, npy_bytes
from neckkit.training.data import collate_readable
from neckkit.training.feature_cache_keys import _key_json, cache_folder_name, data_fingerprint, default_cache_root

__all__ = [
    "FORMAT", "INDEX", "BucketCaches", "Compute", "FeatureCache", "cache_folder_name", "data_fingerprint",
    "default_cache_root",
]

FORMAT = 1  # layout of the folder; a cache written in another format is rebuilt
INDEX = "index.json"
_RESERVED = frozenset({"label", "labels", "source_indices", "index"})
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

Compute = Callable[[Tensor], Mapping[str, Tensor]]


class FeatureCache(Dataset):
    """A complete cache opened read-only; items are ``{field: tensor, ..., "label": int64}``."""

    def __init__(self, root: Path, index: Mapping[str, Any], built: bool = False, build_seconds: float | None = None):
        self.root = Path(root)
        self.index = dict(index)
        self.key: dict[str, Any] = self.index["key"]
        self.fields: dict[str, tuple[tuple[int, ...], str]] = {
            name: (tuple(spec["shape"]), spec["dtype"]) for name, spec in self.index["fields"].items()
        }
        self.built = built
        self.build_seconds = float(self.index["build_seconds"] if build_seconds is None else build_seconds)
        self.skipped: list[str] = list(self.index["skipped"])
        self.count = int(self.index["count"])
        self._open()

    # -- reading --------------------------------------------------------------------------------
    def _open(self) -> None:
        """Memory-map every file; only the first ``count`` rows are visible."""
        self._arrays = {name: np.load(self.root / f"{name}.npy", mmap_mode="r")[: self.count] for name in self.fields}
        self._labels = np.load(self.root / "labels.npy", mmap_mode="r")[: self.count]
        self._source_indices = np.load(self.root / "source_indices.npy", mmap_mode="r")[: self.count]

    def __getstate__(self) -> dict[str, Any]:
        # Pickling a memmap copies all its data; DataLoader workers reopen the files instead.
        state = self.__dict__.copy()
        for name in ("_arrays", "_labels", "_source_indices"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.row(index)

    def row(self, index: int, fields: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Item ``index`` with only ``fields`` read from disk (all of them when ``None``), and its label."""
        if not -self.count <= index < self.count:
            raise IndexError(f"feature cache index {index} out of range for {self.count} items")
        item = {}
        for name in self.fields if fields is None else fields:
            row = torch.from_numpy(np.array(self._arrays[name][index]))
            item[name] = row.view(torch.bfloat16) if self.fields[name][1] == "bfloat16" else row
        item["label"] = torch.tensor(int(self._labels[index]), dtype=torch.int64)
        return item

    @property
    def source_indices(self) -> np.ndarray:
        """The dataset index of each cached row (read-only)."""
        return np.asarray(self._source_indices)

    @property
    def labels(self) -> np.ndarray:
        """The label of each cached row, -1 where unlabelled (read-only)."""
        return np.asarray(self._labels)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name} {list(shape)} {dtype}" for name, (shape, dtype) in self.fields.items())
        return f"FeatureCache({str(self.root)!r}, {self.count} items: {shown})"

    # -- opening and building ---------------------------------------------------------------------
    @classmethod
    def open(cls, folder: Path, key: Mapping[str, Any] | None = None) -> FeatureCache | None:
        """The complete cache in ``folder``, or ``None`` when it is absent, incomplete or damaged."""
        index = _valid_index(Path(folder), key)
        if index is None:
            return None
        try:
            return cls(folder, index)
        except Exception:  # a file vanished or changed between the check and the open
            return None

    @classmethod
    def open_or_build(
        cls,
        cache_root: Path,
        key: Mapping[str, Any],
        dataset: Dataset,
        compute: Compute,
        batch_size: int = 32,
        progress: bool = False,
        num_workers: int = 0,
    ) -> FeatureCache:
        """Open the cache of ``key`` under ``cache_root``, or compute it from ``dataset`` first.

        ``compute(images [B, 3, S, S]) -> {field: tensor [B, ...]}`` runs under ``torch.no_grad()``
        on batches of the readable items; items for which ``dataset`` returns ``None`` are skipped
        and their messages (``dataset.skipped``) kept. The stored values are compute's outputs,
        bit for bit. If anything fails (``compute`` raises, the disk is full), nothing is left on disk.
        """
        cache_root = Path(cache_root)
        folder = cache_root / cache_folder_name(key)
        cache = cls.open(folder, key)
        if cache is not None:
            return cache
        if batch_size < 1:
            raise NeckkitError(f"feature cache batch_size must be at least 1, got {batch_size}")
        temporary = cache_root / f".{folder.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            with disk_errors(cache_root):
                cache_root.mkdir(parents=True, exist_ok=True)
                temporary.mkdir()
                started = time.perf_counter()
                index = _build(temporary, key, dataset, compute, batch_size, progress, num_workers)
                seconds = time.perf_counter() - started
                index["build_seconds"] = seconds
                _write_json(temporary / INDEX, index)
                final = _move_into_place(temporary, folder, key)
        except BaseException:
            _remove(temporary)
            raise
        if final is None:  # another process completed the same cache first: use theirs
            _remove(temporary)
            cache = cls.open(folder, key)
            if cache is None:
                raise NeckkitError(f"feature cache {folder} vanished while it was being opened")
            cache.built, cache.build_seconds = True, seconds
            return cache
        return cls(folder, index, built=True, build_seconds=seconds)


class BucketCaches(Dataset):
    """The caches of every crop bucket as one row set: the first bucket's rows, then the next one's, ...

    ``row_shapes[i]`` is the crop (H, W) of row ``i``; ``fields`` and :meth:`row` read as a
    :class:`FeatureCache`'s (the field names are the same in every bucket, their shapes are not).
    """

    def __init__(self, caches: Mapping[tuple[int, int], FeatureCache]) -> None:
        if not caches:
            raise ValueError("no bucket caches")
        self.caches = list(caches.values())
        self.fields = self.caches[0].fields
        self.starts = [0]
        for cache in self.caches:
            self.starts.append(self.starts[-1] + len(cache))
        self.row_shapes = [shape for shape, cache in caches.items() for _ in range(len(cache))]

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.row(index)

    def row(self, index: int, fields: Sequence[str] | None = None) -> dict[str, Tensor]:
        """Row ``index`` of the bucket that holds it (:meth:`FeatureCache.row`)."""
        if not 0 <= index < len(self):
            raise IndexError(f"bucket cache index {index} out of range for {len(self)} items")
        bucket = bisect.bisect_right(self.starts, index) - 1
        return self.caches[bucket].row(index - self.starts[bucket], fields)


# -- building -----------------------------------------------------------------------------------


class _Numbered(Dataset):
    """``dataset`` whose items carry their index and the skip messages they caused."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Any, list[str]]:
        skipped = getattr(self.dataset, "skipped", None)
        before = len(skipped) if isinstance(skipped, list) else 0
        item = self.dataset[index]
        messages = [str(m) for m in skipped[before:]] if isinstance(skipped, list) and item is None else []
        return index, item, messages


def _collate(rows: list[tuple[int, Any, list[str]]]) -> tuple[Tensor, Tensor, list[int], list[str]]:
    """(images, labels, source indices of the readable rows, skip messages of the others)."""
    images, labels, _ = collate_readable([item for _, item, _ in rows])
    indices = [index for index, item, _ in rows if item is not None]
    skipped = []
    for index, item, messages in rows:
        if item is None:
            skipped.extend(messages or [f"item {index}: unreadable"])
    return images, labels, indices, skipped


def _numpy_dtype(dtype: torch.dtype) -> tuple[str, np.dtype]:
    """(dtype name recorded in the index, numpy dtype of the stored bits)."""
    if dtype == torch.bfloat16:
        return "bfloat16", np.dtype(np.int16)
    try:
        stored = torch.empty(0, dtype=dtype).numpy().dtype
    except TypeError:
        raise NeckkitError(f"feature cache cannot store tensors of dtype {dtype}") from None
    return stored.name, stored


def _as_numpy(tensor: Tensor) -> np.ndarray:
    tensor = tensor.detach().to("cpu").contiguous()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.view(torch.int16)
    return tensor.numpy()


def _check_outputs(outputs: Any, batch: int) -> dict[str, Tensor]:
    if not isinstance(outputs, Mapping) or not outputs:
        raise NeckkitError(
            f"feature cache compute must return a non-empty dict of tensors, got {type(outputs).__name__}"
        )
    for name, value in outputs.items():
        if not isinstance(name, str) or not _FIELD_NAME.match(name) or name in _RESERVED:
            raise NeckkitError(
                f"feature cache field name {name!r} is not allowed (an identifier, not {sorted(_RESERVED)})"
            )
        if not isinstance(value, Tensor) or value.ndim == 0 or value.shape[0] != batch:
            shape = list(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise NeckkitError(f"feature cache field {name!r}: expected a tensor [{batch}, ...], got {shape}")
    return dict(outputs)


class _Progress:
    """tqdm if installed, else rich, else silent."""

    def __init__(self, total: int, enabled: bool):
        self._update: Callable[[int], Any] = lambda n: None
        self._close: Callable[[], Any] = lambda: None
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc="caching features", unit="img")
            self._update, self._close = bar.update, bar.close
        except ImportError:
            try:
                from rich.progress import Progress
            except ImportError:
                return
            rich_bar = Progress()
            task = rich_bar.add_task("caching features", total=total)
            rich_bar.start()
            self._update = lambda n: rich_bar.advance(task, n)
            self._close = rich_bar.stop

    def update(self, n: int) -> None:
        self._update(n)

    def close(self) -> None:
        self._close()


def _build(
    folder: Path,
    key: Mapping[str, Any],
    dataset: Dataset,
    compute: Compute,
    batch_size: int,
    progress: bool,
    num_workers: int,
) -> dict[str, Any]:
    """Write every field of ``dataset``'s readable items into ``folder``; return the index.

    The files are created once the first batch gives the fields' shapes, after :func:`check_space`.
    """
    capacity = len(dataset)
    loader = DataLoader(
        _Numbered(dataset), batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=_collate
    )
    files: dict[str, NpyRows] = {}  # every field, then "labels" and "source_indices"
    fields: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    count = labelled = 0
    bar = _Progress(capacity, progress)
    try:
        for images, batch_labels, indices, batch_skipped in loader:
            skipped.extend(batch_skipped)
            if not indices:
                bar.update(len(batch_skipped))
                continue
            with torch.no_grad():
                outputs = _check_outputs(compute(images), len(indices))
            if not files:
                layout = {}
                for name, value in outputs.items():
                    recorded, stored = _numpy_dtype(value.dtype)
                    fields[name] = {"shape": list(value.shape[1:]), "dtype": recorded}
                    layout[name] = (stored, (capacity, *value.shape[1:]))
                layout["labels"] = layout["source_indices"] = (np.dtype(np.int64), (capacity,))
                check_space(folder, sum(npy_bytes(dtype, shape) for dtype, shape in layout.values()), folder.parent)
                for name, (dtype, shape) in layout.items():
                    files[name] = NpyRows(folder / f"{name}.npy", dtype, shape)
            if set(outputs) != set(fields):
                raise NeckkitError(f"feature cache compute returned fields {sorted(outputs)}, first {sorted(fields)}")
            for name, value in outputs.items():
                expected = fields[name]
                if list(value.shape[1:]) != expected["shape"] or _numpy_dtype(value.dtype)[0] != expected["dtype"]:
                    raise NeckkitError(
                        f"feature cache field {name!r}: got {list(value.shape[1:])} {value.dtype}, "
                        f"first batch {expected['shape']} {expected['dtype']}"
                    )
                files[name].append(_as_numpy(value))
            files["labels"].append(batch_labels.numpy().astype(np.int64, copy=False))
            labelled += int((batch_labels >= 0).sum())
            files["source_indices"].append(np.asarray(indices, dtype=np.int64))
            count += len(indices)
            bar.update(len(indices) + len(batch_skipped))  # once computed: a bar at 100% means done
        if count:
            for rows in files.values():
                rows.finish()
    finally:
        bar.close()
        for rows in files.values():
            rows.close()
    if count == 0:
        shown = f" ({skipped[0]}{' ...' if len(skipped) > 1 else ''})" if skipped else ""
        raise NeckkitError(f"feature cache: none of the {capacity} images is readable{shown}")
    return {
        "format": FORMAT,
        "neckkit_version": __version__,
        "key": json.loads(_key_json(key)),
        "count": count,
        "capacity": capacity,
        "fields": fields,
        "labelled": labelled,
        "skipped": skipped,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "complete": True,
    }


# -- checking, writing and moving folders ---------------------------------------------------------


def _valid_index(folder: Path, key: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The index of ``folder`` when it is complete and every file matches it, else ``None``."""
    try:
        index = json.loads((folder / INDEX).read_text())
        if not isinstance(index, dict) or index.get("complete") is not True or index.get("format") != FORMAT:
            return None
        if key is not None and index["key"] != json.loads(_key_json(key)):
            return None
        count, capacity = int(index["count"]), int(index["capacity"])
        if not 0 < count <= capacity or not isinstance(index["skipped"], list):
            return None
        expected = {"labels": ((capacity,), np.dtype(np.int64)), "source_indices": ((capacity,), np.dtype(np.int64))}
        for name, spec in index["fields"].items():
            if not _FIELD_NAME.match(name) or name in _RESERVED:
                return None
            expected[name] = ((capacity, *(int(n) for n in spec["shape"])), _numpy_dtype_of_name(spec["dtype"]))
        for name, (shape, dtype) in expected.items():
            array = np.load(folder / f"{name}.npy", mmap_mode="r")
            if array.shape != shape or array.dtype != dtype:
                return None
        float(index["build_seconds"])
    except Exception:  # missing or garbled files: not a cache to trust
        return None
    return index


def _numpy_dtype_of_name(name: str) -> np.dtype:
    return np.dtype(np.int16) if name == "bfloat16" else np.dtype(name)


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except OSError:
            pass


def _move_into_place(temporary: Path, folder: Path, key: Mapping[str, Any]) -> Path | None:
    """Rename ``temporary`` to ``folder``; ``None`` when a complete ``folder`` was already there.

    A damaged ``folder`` is moved aside and deleted first.
    """
    for _ in range(10):
        try:
            os.rename(temporary, folder)
            return folder
        except OSError:
            if not folder.exists() and not folder.is_symlink():
                raise
        if _valid_index(folder, key) is not None:
            return None
        stale = folder.parent / f".{folder.name}.{os.getpid()}.{secrets.token_hex(4)}.stale"
        try:
            os.rename(folder, stale)
        except FileNotFoundError:  # someone else moved it first
            continue
        _remove(stale)
    raise NeckkitError(f"cannot move the feature cache into {folder}: it keeps being replaced")
