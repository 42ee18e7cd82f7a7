"""Writing the d1 feature cache's files so that a full disk ends the build with one line, never a crash.

Storing rows through a writable memory map onto a full disk kills the process with SIGBUS ("Bus error",
no message, the temporary folder left behind). So the build checks first that the disk holds the whole
cache with a margin (:func:`check_space`), reserves every file's full size before writing it (a disk that
filled since is an ``OSError`` at once) and writes rows with plain writes (:class:`NpyRows`: a disk that
fills anyway is an ``OSError`` too); :func:`disk_errors` turns those into one line naming the folder.
"""

from __future__ import annotations

import errno
import io
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.lib import format as npy_format

from neckkit.errors import NeckkitError

__all__ = ["MARGIN_BYTES", "MARGIN_FRACTION", "NpyRows", "check_space", "disk_errors", "npy_bytes"]

MARGIN_FRACTION, MARGIN_BYTES = 0.05, 16 << 20  # a cache needs its bytes + 5% + 16 MiB free: no disk left full
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_REMEDY = "free space there, point NECKKIT_CACHE_DIR at a larger disk, or train with --set cache=false"


def _header(dtype: np.dtype, shape: tuple[int, ...]) -> dict[str, object]:
    return {"descr": npy_format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}


def npy_bytes(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    """The size of the ``.npy`` file of an array of ``dtype`` and ``shape``, header included."""
    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, _header(np.dtype(dtype), shape))
    return len(header.getvalue()) + math.prod(shape) * np.dtype(dtype).itemsize


def _size(n: int) -> str:
    """``512 bytes``, ``3.0 MiB``, ``420.5 GiB``."""
    if n < 1024:
        return f"{n} bytes"
    value, units = n / 1024, ["KiB", "MiB", "GiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.1f} {units[0]}"


def check_space(folder: Path, cache_bytes: int, cache_root: Path) -> None:
    """Refuse to build a cache of ``cache_bytes`` in ``folder`` unless its disk has them free, with a margin."""
    needed = cache_bytes + int(cache_bytes * MARGIN_FRACTION) + MARGIN_BYTES
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise NeckkitError(
            f"not enough disk space for the feature cache in {cache_root}: it needs {_size(needed)} "
            f"({needed:,} bytes with a margin) and {_size(free)} ({free:,} bytes) are free; {_REMEDY}"
        )


@contextmanager
def disk_errors(cache_root: Path) -> Iterator[None]:
    """A full disk (or quota) while the cache is written becomes one line naming ``cache_root``."""
    try:
        yield
    except OSError as error:
        if error.errno not in _DISK_FULL:
            raise
        raise NeckkitError(f"the disk filled up while writing the feature cache in {cache_root} ({error.strerror}); {_REMEDY}") from None


def reserve(handle: BinaryIO, size: int) -> None:
    """Allocate ``size`` bytes of the file now, so that a full disk fails here and not mid-build.

    Where the file system (or the platform) cannot preallocate, the plain writes still fail cleanly.
    """
    if not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(handle.fileno(), 0, size)
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise


class NpyRows:
    """A ``.npy`` file of ``shape`` (rows first) filled a block of rows at a time, in order, by plain writes.

    Rows never written (unreadable images) read as zeros; ``index.json``'s ``count`` says how many are valid.
    """

    def __init__(self, path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.shape = Path(path), np.dtype(dtype), tuple(shape)
        self.size = npy_bytes(self.dtype, self.shape)
        self._file = open(self.path, "wb")  # noqa: SIM115  (closed by finish/close)
        try:
            reserve(self._file, self.size)
            npy_format.write_array_header_1_0(self._file, _header(self.dtype, self.shape))
        except BaseException:
            self.close()
            raise

    def append(self, rows: np.ndarray) -> None:
        if rows.dtype != self.dtype or rows.shape[1:] != self.shape[1:]:
            raise NeckkitError(f"{self.path.name}: rows {rows.dtype} {list(rows.shape[1:])} do not fit {self.dtype} {list(self.shape[1:])}")
        self._file.write(np.ascontiguousarray(rows).tobytes())

    def finish(self) -> None:
        """Give the file its full size and make it durable before the cache folder is renamed into place."""
        self._file.truncate(self.size)
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def close(self) -> None:
        """Close after a failure (a no-op after :meth:`finish`); the folder is about to be removed."""
        try:
            self._file.close()
        except OSError:  # the buffered tail could not be written: the disk is full
            pass
