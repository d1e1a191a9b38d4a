"""The default target: an outbox folder (image + JSON sidecar per capture)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from desktop_app.core.store import (
    TEMP_PREFIX,
    CaptureRecord,
    atomic_write_bytes,
    default_store_root,
    ensure_private_dir,
    fsync_dir,
    os_error_message,
)
from desktop_app.core.submission.target import SubmissionError


def capture_metadata(record: CaptureRecord) -> dict[str, Any]:
    """The JSON-able description of a capture that travels with it."""
    info = record.info
    return {
        "capture_id": record.id,
        "created_utc": record.created_utc,
        "mode": info.mode,
        "operator": info.operator,
        "patient_ref": info.patient_ref,
        "body_site": info.body_site,
        "note": info.note,
        "score": info.score,
        "threshold": info.threshold,
        "accepted_by_model": info.accepted,
        "model_version": info.model_version,
        "reasons": info.reasons,
        "source": info.source,
        "decision": "overridden" if record.review_action == "override" else "accepted",
        "reviewer": record.reviewer,
        "reviewed_utc": record.reviewed_utc,
        "review_reason": record.review_reason,
        "study_instance_uid": record.study_uid,
        "series_instance_uid": record.series_uid,
        "sop_instance_uid": record.sop_instance_uid,
    }


class OutboxTarget:
    """Default target: ``<folder>/<capture id>.<jpg|png>`` plus ``<capture id>.json``.

    Both are written atomically, image first; the JSON sidecar's presence means "delivered".
    Resending a capture rewrites the same two names, so a capture appears in the outbox once.
    """

    name = "outbox"
    needs_patient_ref = False

    def cancel_pending(self) -> None:
        """A local folder write is not interruptible, and is quick."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        # Temporary files left by an interrupted earlier run are not deliveries: remove them.
        if self.folder.is_dir():
            for stale in self.folder.glob(f"{TEMP_PREFIX}*"):
                with contextlib.suppress(OSError):
                    stale.unlink()

    def submit(self, record: CaptureRecord, image_path: Path) -> str:
        try:
            ensure_private_dir(self.folder)
            data = image_path.read_bytes()
        except OSError as exc:
            raise SubmissionError(
                os_error_message(exc, "The outbox copy", self.folder), transient=True
            ) from exc
        meta = json.dumps(capture_metadata(record), indent=2, sort_keys=True).encode("utf-8")
        image_out = self.folder / f"{record.id}{image_path.suffix}"
        try:
            atomic_write_bytes(image_out, data, sync_dir=False)
            atomic_write_bytes(self.folder / f"{record.id}.json", meta, sync_dir=False)
            fsync_dir(self.folder)
        except OSError as exc:
            raise SubmissionError(
                os_error_message(exc, "The outbox copy", self.folder), transient=True
            ) from exc
        return record.id


def default_outbox_folder() -> Path:
    """``<data dir>/outbox`` beside the capture store."""
    return default_store_root().parent / "outbox"
