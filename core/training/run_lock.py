"""One process owns a run folder: a ``flock`` on a lock file inside it, held for the whole run.

Two ``neckkit train`` runs writing into one folder would interleave ``metrics.jsonl`` and overwrite each
other's checkpoints, so the second is refused in one line naming the first's pid. ``flock`` locks belong
to the open file, so the kernel releases them when the owner dies, even by ``kill -9``: a stale lock file
never blocks the next run. Forked children (DataLoader workers) close their copy at once, so a worker
that outlives a killed trainer for a few seconds does not hold the folder either.
"""

from __future__ import annotations

import fcntl
import os
import time
import weakref
from pathlib import Path
from types import TracebackType

from neckkit.errors import NeckkitError

__all__ = ["LOCK_FILE", "RunFolderBusy", "RunLock"]

LOCK_FILE = ".neckkit-train.lock"
_HELD: weakref.WeakSet[RunLock] = weakref.WeakSet()


class RunFolderBusy(NeckkitError):
    """Another live process holds the run folder."""


class RunLock:
    """The lock of ``folder``; :meth:`acquire` creates the folder (unless told not to) and takes it.

    Released by :meth:`release` or at the end of ``with lock.acquire():``. A folder this lock created
    that still holds nothing but the lock file when released is removed again, so a run that failed
    before writing anything leaves no empty folder behind.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None
        self._created = False

    def acquire(self, create: bool = True) -> RunLock:
        """Take the lock, or raise :class:`RunFolderBusy` naming the holder's pid."""
        try:
            if create:
                self.folder.parent.mkdir(parents=True, exist_ok=True)
                try:
                    self.folder.mkdir()
                    self._created = True
                except FileExistsError:
                    pass
            for _ in range(10):  # the lock file of a folder removed under us: take the new one
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    raise RunFolderBusy(
                        f"{self.folder} is in use by another neckkit train ({self.holder()}); "
                        "wait for it or choose another --out"
                    ) from None
                if _same_file(fd, self.path):
                    self._fd = fd
                    _HELD.add(self)
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                    return self
                os.close(fd)
        except OSError as error:
            raise NeckkitError(f"cannot lock the run folder {self.folder}: {error.strerror or error}") from None
        raise NeckkitError(f"cannot lock the run folder {self.folder}: its lock file keeps being replaced")

    def holder(self) -> str:
        """``pid N`` of the process holding the lock, as its lock file says."""
        for _ in range(20):  # the holder writes its pid just after taking the lock
            try:
                text = self.path.read_text(encoding="ascii").strip()
            except (OSError, UnicodeDecodeError):
                text = ""
            if text.isdigit():
                return f"pid {text}"
            time.sleep(0.01)
        return "pid unknown"

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if self._created and [entry.name for entry in self.folder.iterdir()] == [LOCK_FILE]:
                self.path.unlink()  # while still locked: a waiting process sees the file gone and retries
                self.folder.rmdir()
        except OSError:
            pass
        finally:
            _HELD.discard(self)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:  # ``with RunLock(folder).acquire():`` holds the folder for the block
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a releasing owner may have removed it)."""
    try:
        opened, named = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)


def _close_in_child() -> None:
    """After a fork: drop the child's copy of every held lock; only the parent owns the folder."""
    for lock in list(_HELD):
        if lock._fd is not None:
            try:
                os.close(lock._fd)
            except OSError:
                pass
            lock._fd = None
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)
