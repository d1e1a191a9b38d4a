"""The store's exceptions: every message is written for clinic staff."""

from __future__ import annotations

from typing import Literal


class StorageError(RuntimeError):
    """Saving or reading a capture failed; the message is written for clinic staff."""


class DiskFullError(StorageError):
    """The disk is full (and the space reserve, where allowed, did not help)."""


StoreUnavailableReason = Literal["locked", "read_only", "io_error", "unavailable"]


class StoreUnavailableError(StorageError):
    """The capture database is not damaged but cannot be used now: another program holds it
    locked, the folder is read-only, or the disk reported an I/O error. Nothing was changed (in
    particular the database was not rebuilt); trying again once the cause is gone is safe.

    ``reason`` is ``locked`` | ``read_only`` | ``io_error`` | ``unavailable``.
    """

    def __init__(self, message: str, reason: StoreUnavailableReason) -> None:
        super().__init__(message)
        self.reason: StoreUnavailableReason = reason
