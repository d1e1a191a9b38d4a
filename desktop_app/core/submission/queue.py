"""Getting accepted captures to the record exactly once: targets and a persistent retry queue.

Exactly-once: every capture's DICOM SOP Instance UID (and its outbox file name) is derived from
the capture id and stored with the row before anything is sent. The attempt is recorded before
sending and ``submitted`` only after the target confirmed, so a crash in between leads to a resend
of the *same* instance, which the target stores once (Orthanc keeps one copy of a SOP Instance UID;
the outbox overwrites the same file names atomically).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from desktop_app.core.store import CaptureStore, StorageError
from desktop_app.core.submission.credentials import redact_text
from desktop_app.core.submission.policy import submit_blocker
from desktop_app.core.submission.target import SubmissionError, SubmissionRefused, SubmissionTarget

logger = logging.getLogger(__name__)

BASE_BACKOFF_S = 5.0
# How long a claimed capture is kept from other queues while one sends it (longer than any send:
# DICOMweb's overall deadline is well below this).
SEND_LEASE_S = 600.0
MAX_BACKOFF_S = 900.0


@dataclass(frozen=True)
class QueueStatus:
    """What the app shows about submission."""

    queued: int
    submitted: int
    failed: int
    last_error: str | None
    next_retry_utc: str | None
    target: str = ""


def backoff_seconds(attempts: int) -> float:
    """Delay before the next try after ``attempts`` failed tries: 5 s, 10 s, 20 s ... 15 min."""
    return float(min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2 ** max(0, attempts - 1)))


class SubmissionQueue:
    """Persistent submission queue over a :class:`CaptureStore` (state lives in its database).

    ``clock`` returns the current UTC time (tests pass a fake to skip backoff waits).
    """

    def __init__(
        self,
        store: CaptureStore,
        target: SubmissionTarget,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.store = store
        self.target = target
        self._clock = clock or (lambda: datetime.now(UTC))
        self._local_error: str | None = None

    def _now(self) -> datetime:
        # Times are compared as ISO strings in SQL, so they must all be UTC, microseconds.
        return self._clock().astimezone(UTC)

    def enqueue(self, capture_id: str) -> None:
        """Queue an accepted or overridden capture (or re-queue a failed one)."""
        record = self.store.get(capture_id)
        if record.state == "queued":
            return
        blocker = submit_blocker(record, self.target.needs_patient_ref)
        if blocker:
            raise SubmissionRefused(blocker)
        self.store.update_queue_state(
            capture_id,
            "system",
            "enqueue",
            self.target.name,
            state="queued",
            next_attempt_utc=None,
            last_error=None,
        )

    def release_stale_claims(self) -> int:
        """At start-up, by the process holding the data-home lock: captures claimed by a run
        that died during a send are due again (``CaptureStore.release_claims``)."""
        released = self.store.release_claims()
        if released:
            logger.info("%d queued capture(s) from an earlier run are due again", released)
        return released

    def retry_failed(self) -> int:
        """Re-queue every failed capture that the submit rule allows (e.g. after fixing the PACS
        settings); returns how many."""
        requeued = 0
        for record in self.store.list(["failed"]):
            try:
                self.enqueue(record.id)
            except SubmissionRefused as exc:  # e.g. a demo-feed photo: it stays failed
                logger.info("capture %s stays failed: %s", record.id, exc)
                continue
            requeued += 1
        return requeued

    def process_pending(self, max_items: int | None = None) -> QueueStatus:
        """One pass over due queued captures. Network/server problems never raise.

        After a transient failure the pass stops (the server is probably down); each capture's
        next try is persisted with exponential backoff.
        """
        try:
            due = self.store.due_ids(self._now().isoformat(timespec="microseconds"), max_items)
            for capture_id in due:
                if not self._submit_one(capture_id):
                    break
            self._local_error = None
        except StorageError as exc:  # local trouble (e.g. disk full): report, retry next pass
            logger.error("submission pass stopped: %s", exc)
            self._local_error = str(exc)
        return self.status()

    def _submit_one(self, capture_id: str) -> bool:
        """Try one capture; False if the target had a transient problem."""
        try:
            record = self.store.get(capture_id)
        except (KeyError, StorageError) as exc:
            logger.error("queued capture %s cannot be read: %s", capture_id, exc)
            return True
        if record.state != "queued":
            return True
        blocker = submit_blocker(record, self.target.needs_patient_ref)
        if blocker:  # queued before this rule, or by hand: never sent, shown to staff
            self._fail(capture_id, blocker, record.submission_attempts)
            return True
        now = self._now()
        # Claim it atomically before sending (the attempt is recorded, and no other queue on
        # this data home sends it while the lease runs): a crash during the send is visible
        # afterwards, and two app processes never send one capture twice.
        claimed = self.store.claim_for_sending(
            capture_id,
            self.target.name,
            now.isoformat(timespec="microseconds"),
            (now + timedelta(seconds=SEND_LEASE_S)).isoformat(timespec="microseconds"),
        )
        if claimed is None:
            return True
        record = claimed
        attempts = record.submission_attempts
        if not record.image_path.is_file():
            self._fail(capture_id, "The stored photo is missing; it cannot be sent.", attempts)
            return True
        try:
            remote_uid = self.target.submit(record, record.image_path)
        except SubmissionError as exc:
            if exc.transient:
                retry_at = now + timedelta(seconds=backoff_seconds(attempts))
                logger.warning("capture %s: %s (retry at %s)", capture_id, exc, retry_at)
                self.store.update_queue_state(
                    capture_id,
                    "system",
                    "retry_later",
                    str(exc),
                    last_error=str(exc),
                    next_attempt_utc=retry_at.isoformat(timespec="microseconds"),
                )
                return False
            self._fail(capture_id, str(exc), attempts)
            return True
        except Exception as exc:  # a target bug must not stop the queue
            logger.exception("capture %s: unexpected error from %s", capture_id, self.target.name)
            self._fail(capture_id, redact_text(f"Unexpected error while sending: {exc}"), attempts)
            return True
        self.store.update_queue_state(
            capture_id,
            "system",
            "submitted",
            f"{self.target.name} {remote_uid}",
            state="submitted",
            submitted_utc=self._now().isoformat(timespec="microseconds"),
            remote_uid=remote_uid,
            last_error=None,
            next_attempt_utc=None,
        )
        logger.info("capture %s submitted to %s as %s", capture_id, self.target.name, remote_uid)
        return True

    def _fail(self, capture_id: str, message: str, attempts: int) -> None:
        logger.error("capture %s failed after %d attempt(s): %s", capture_id, attempts, message)
        self.store.update_queue_state(
            capture_id,
            "system",
            "failed",
            message,
            state="failed",
            last_error=message,
            next_attempt_utc=None,
        )

    def status(self) -> QueueStatus:
        counts, last_error, next_retry = self.store.queue_summary()
        return QueueStatus(
            queued=counts.get("queued", 0),
            submitted=counts.get("submitted", 0),
            failed=counts.get("failed", 0),
            last_error=self._local_error or last_error,
            next_retry_utc=next_retry,
            target=self.target.name,
        )
