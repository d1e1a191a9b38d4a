"""One app process per data home: a second one would send captures twice and race the store.

:func:`acquire_data_home_lock` takes an exclusive, non-blocking OS lock on a file in the data
home and keeps it for the life of the process (the OS drops it when the process ends, also when
it is killed, so a crash never leaves a stale lock behind).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO

LOCK_NAME = "app.lock"


class AnotherInstanceError(RuntimeError):
    """Another Skin Capture Assist process is using this data home."""


class DataHomeLock:
    """Holds the lock until :meth:`release` (or the process ends)."""

    def __init__(self, handle: IO[bytes], path: Path) -> None:
        self._handle: IO[bytes] | None = handle
        self.path = path

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor releases the OS lock
            self._handle = None


# Locks this process holds, by folder: windows of one process share their data home.
_HELD: dict[Path, DataHomeLock] = {}


def acquire_data_home_lock(data_home: Path) -> DataHomeLock:
    """Lock ``data_home`` for this process (again: the same lock); raises
    :class:`AnotherInstanceError` if another process holds it."""
    data_home.mkdir(parents=True, exist_ok=True)
    key = data_home.resolve()
    held = _HELD.get(key)
    if held is not None and held._handle is not None:
        return held
    path = data_home / LOCK_NAME
    handle = path.open("a+b")
    try:
        if sys.platform == "win32":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise AnotherInstanceError(
            "Skin Capture Assist is already running on this computer with the same data folder "
            f"({data_home}). Use that window, or close it first; two copies would send photos "
            "twice."
        ) from exc
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n".encode())
    handle.flush()
    lock = DataHomeLock(handle, path)
    _HELD[key] = lock
    return lock
