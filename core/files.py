"""Writing files so that a reader never sees half of one: a temporary file, then a rename."""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def _mode_for(path: Path) -> int:
    """The permission bits a plain ``open(path, "w")`` would leave: the existing file's, else 0o666 minus the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        pass
    with _UMASK_LOCK:  # the umask can only be read by setting it
        umask = os.umask(0o077)
        os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed onto ``path`` when the block succeeds, else removed.

    An existing ``path`` stays as it was until the rename, and is untouched if the block fails. The
    file gets the permissions a plain ``open()`` would give it (the umask applies; an existing file keeps
    its mode), not the temporary file's 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as handle:
        temporary = Path(handle.name)
    try:
        yield temporary
        os.chmod(temporary, _mode_for(path))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


STAGING_PREFIX = ".staged-"


@contextmanager
def staged_files(directory: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary folder inside ``directory`` to write a set of files into; when the block succeeds, each
    replaces its namesake in ``directory`` by one rename, all at the end.

    A set of results (``eval.json``, ``eval.csv``, the plot) then changes in a few microseconds of
    renames instead of over the seconds it takes to render them, so a killed run leaves the old set (and a
    staging folder, removed by the next call), not old and new files side by side. A staged folder replaces
    its namesake whole (the old one is moved aside, then removed).
    """
    import shutil

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob(f"{STAGING_PREFIX}*.tmp"):  # a killed run's staging folder
        shutil.rmtree(leftover, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(dir=directory, prefix=STAGING_PREFIX, suffix=".tmp"))
    try:
        yield staging
        for staged in sorted(staging.iterdir()):
            destination = directory / staged.name
            if staged.is_dir() and destination.is_dir():  # a folder of results (eval's lmms/): the old one moves aside
                aside = Path(tempfile.mkdtemp(dir=directory, prefix=STAGING_PREFIX, suffix=".tmp"))
                os.replace(destination, aside / staged.name)
                os.replace(staged, destination)
                shutil.rmtree(aside, ignore_errors=True)
            else:
                os.replace(staged, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
