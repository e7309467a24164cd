"""kaip's private files under ``.kaip/``: directories 0700, files 0600, whatever the umask.

``.kaip/`` holds what only its owner should read: ``state.db`` (App env values among the specs),
replica logs, the run record and the admin token. Every directory and file kaip creates there
goes through these functions, which set the mode explicitly after creating (a umask can only
take bits away, and one such as 0277 would take the owner's own write bit) and tighten a
directory or file an older kaip left readable. Never reads what it protects and never touches
paths outside the ones it is given.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents 0700 (the parents too: they are kaip's)."""
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            directory.mkdir(mode=DIR_MODE)
        os.chmod(directory, DIR_MODE)
    if path.is_dir() and (path.stat().st_mode & 0o777) != DIR_MODE:
        os.chmod(path, DIR_MODE)
    return path


def open_private(path: Path, *, append: bool = True) -> BinaryIO:
    """Open ``path`` for binary writing (appending by default), creating it 0600."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, "ab" if append else "wb")
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data`` at once (write a 0600 temporary file, then rename)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open_private(temporary, append=False) as handle:
            handle.write(raw)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise


def make_private(path: Path) -> None:
    """Tighten an existing file to 0600 (one another program created, such as SQLite's)."""
    if path.exists() and (path.stat().st_mode & 0o777) != FILE_MODE:
        os.chmod(path, FILE_MODE)
