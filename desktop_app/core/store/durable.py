"""Durable file writing: temp file + fsync + rename, private folders, and plain-language
messages for failed disk operations."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path

TEMP_PREFIX = ".tmp-"


def fsync_dir(directory: Path) -> None:
    """Make a rename/creation/unlink in ``directory`` durable (POSIX; a no-op on Windows,
    where directories cannot be opened for fsync and NTFS journals the rename itself)."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700 on the folders this call creates."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=0o700)
        os.chmod(d, 0o700)
        fsync_dir(d.parent)


def atomic_write_bytes(target: Path, data: bytes, *, sync_dir: bool = True) -> None:
    """Write ``data`` to ``target`` via temp file + fsync + rename (+ fsync of the folder).

    On any failure the temporary file is removed and the original ``OSError`` propagates; the
    target is either untouched or completely written.
    """
    tmp = target.with_name(f"{TEMP_PREFIX}{target.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(target.parent)


def os_error_message(exc: OSError, what: str, where: Path) -> str:
    """Plain-language message for a failed disk operation."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"The disk is full: {what} could not be saved in {where}. Free some disk space "
            "(or ask IT), then try again. Nothing was half-saved."
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"No permission to write in {where}: {what} could not be saved. Please call IT."
    return f"{what} could not be saved in {where}: {exc.strerror or exc}. Please call IT."
