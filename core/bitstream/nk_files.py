"""Reading and writing ``.nk`` files: atomic writes, and reads that never block, hang or over-allocate.

:func:`write_nk` writes a temporary file beside the target and renames it into place, so a reader
never sees half a file; :func:`read_nk` refuses folders, FIFOs, devices and files over
:data:`~neckkit.bitstream.nk_format.MAX_FILE_BYTES` before reading, then validates the bytes with
:func:`~neckkit.bitstream.nk_format.decode_nk`. Every problem is one :class:`~neckkit.errors.NeckkitError` line.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from neckkit.bitstream.nk_format import MAX_FILE_BYTES, NkFile, _one_line, decode_nk, encode_nk
from neckkit.errors import NeckkitError

__all__ = ["read_nk", "write_nk"]


def write_nk(path: str | os.PathLike[str], nk: NkFile) -> int:
    """Write ``nk`` to ``path`` atomically; return the number of bytes written.

    The bytes go to a temporary file in the same folder, which then replaces ``path``
    (``os.replace``). On any failure the temporary file is removed and an existing ``path`` is
    left as it was. OS errors become one :class:`NeckkitError` line.
    """
    path = Path(path)
    data = encode_nk(nk)
    shown = _one_line(str(path))
    folder = path.parent
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    temp: Path | None = None
    try:
        for _ in range(100):
            candidate = folder / f".{path.name}.{secrets.token_hex(4)}.tmp"
            try:
                fd = os.open(candidate, flags, 0o666)  # the umask applies, as for a plain open()
            except FileExistsError:
                continue
            temp = candidate
            break
        else:
            raise NeckkitError(f"cannot write {shown}: no free temporary file name in {_one_line(str(folder))}")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
        temp = None
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise NeckkitError(f"cannot write {shown}: {_one_line(reason)}") from None
    finally:
        if temp is not None:
            try:
                os.unlink(temp)
            except OSError:
                pass
    return len(data)


def read_nk(path: str | os.PathLike[str]) -> NkFile:
    """Read and validate a ``.nk`` file; every problem is one :class:`NeckkitError` line naming it."""
    path = Path(path)
    shown = _one_line(str(path))
    try:
        # Check before opening: reading a FIFO or a device (/dev/zero) could block or never end.
        mode = os.stat(path).st_mode
        if stat.S_ISDIR(mode):
            raise NeckkitError(f"{shown} is a folder, not a .nk file")
        if not stat.S_ISREG(mode):
            raise NeckkitError(f"{shown} is not a regular file")
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise NeckkitError(f"{shown} is not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise NeckkitError(f"{shown}: {info.st_size} bytes is unreasonably large for a .nk file")
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise NeckkitError(f"{shown} does not exist") from None
    except IsADirectoryError:
        raise NeckkitError(f"{shown} is a folder, not a .nk file") from None
    except OSError as error:
        reason = error.strerror or str(error) or type(error).__name__
        raise NeckkitError(f"cannot read {shown}: {_one_line(reason)}") from None
    return decode_nk(data, source=str(path))
