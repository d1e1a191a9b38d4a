"""What every submission target follows, and how sending fails."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from desktop_app.core.store import CaptureRecord, StorageError


class SubmissionError(RuntimeError):
    """Sending failed. ``transient``: worth retrying later (network, server busy or down)."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class SubmissionRefused(StorageError):
    """The submit rule (``core.submission.policy``) forbids sending this capture; the message says
    why, for the person at the screen."""


class SubmissionTarget(Protocol):
    """Where accepted captures go. ``submit`` must be idempotent per capture id."""

    name: str
    # the target refuses photos without a patient or encounter reference (core.submission.policy)
    needs_patient_ref: bool

    def submit(self, record: CaptureRecord, image_path: Path) -> str:
        """Deliver one capture; return the remote id. Raise :class:`SubmissionError`."""
        ...

    def cancel_pending(self) -> None:
        """From another thread (app shutdown): make a send in progress give up now (a
        transient failure: the capture stays queued)."""
        ...
