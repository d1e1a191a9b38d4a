"""Submission queue and the outbox target: states, persisted backoff, idempotent delivery."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from store_helpers import make_info, smooth_image

from desktop_app.core.store import CaptureStore, StorageError
from desktop_app.core.submission import (
    DicomWebTarget,
    OutboxTarget,
    SubmissionError,
    SubmissionQueue,
    backoff_seconds,
    default_outbox_folder,
    make_target,
)


class FakeClock:
    """Controls 'now' for the queue so backoff can be tested without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def test_outbox_delivery_marks_submitted_and_writes_sidecar(
    store: CaptureStore, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    queue = SubmissionQueue(store, OutboxTarget(outbox))
    record = store.add(smooth_image(), make_info())
    queue.enqueue(record.id)
    assert store.get(record.id).state == "queued"
    status = queue.process_pending()
    assert (status.queued, status.submitted, status.failed) == (0, 1, 0)
    done = store.get(record.id)
    assert done.state == "submitted" and done.remote_uid == record.id
    assert done.submission_attempts == 1 and done.submitted_utc is not None
    assert sorted(p.name for p in outbox.iterdir()) == [f"{record.id}.jpg", f"{record.id}.json"]
    meta = json.loads((outbox / f"{record.id}.json").read_text())
    assert meta["patient_ref"] == "P-1001" and meta["sop_instance_uid"] == done.sop_instance_uid
    assert meta["decision"] == "accepted" and meta["model_version"] == "test-model-1"
    assert (outbox / f"{record.id}.jpg").read_bytes() == record.image_path.read_bytes()
    assert stat.S_IMODE((outbox / f"{record.id}.jpg").stat().st_mode) == 0o600
    # a resend (e.g. after a crash before the row said "submitted") rewrites the same names
    OutboxTarget(outbox).submit(done, done.image_path)
    assert len(list(outbox.iterdir())) == 2
    assert [h["action"] for h in store.history(record.id)] == [
        "capture",
        "enqueue",
        "attempt",
        "submitted",
    ]


def test_only_accepted_or_overridden_can_be_queued(store: CaptureStore, tmp_path: Path) -> None:
    queue = SubmissionQueue(store, OutboxTarget(tmp_path / "outbox"))
    rejected = store.add(smooth_image(), make_info(score=0.1, accepted=False))
    with pytest.raises(StorageError, match="only photos that passed the quality check"):
        queue.enqueue(rejected.id)
    store.review(rejected.id, "override", "dr", "usable")
    queue.enqueue(rejected.id)
    queue.enqueue(rejected.id)  # idempotent
    queue.process_pending()
    meta = json.loads((tmp_path / "outbox" / f"{rejected.id}.json").read_text())
    assert meta["decision"] == "overridden" and meta["reviewer"] == "dr"
    with pytest.raises(StorageError):
        queue.enqueue(rejected.id)  # already submitted


def test_transient_failure_backs_off_persistently_then_delivers(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the outbox folder should be")
    clock = FakeClock()
    store = CaptureStore(tmp_path / "store")
    queue = SubmissionQueue(store, OutboxTarget(blocker / "outbox"), clock=clock)
    ids = [store.add(smooth_image(seed=i), make_info()).id for i in range(3)]
    for cid in ids:
        queue.enqueue(cid)
    status = queue.process_pending()  # first one fails, the pass stops there
    assert status.queued == 3 and status.submitted == 0
    assert status.last_error is not None and "could not be saved" in status.last_error
    first = store.get(ids[0])
    assert first.submission_attempts == 1
    assert first.next_attempt_utc == (clock.now + timedelta(seconds=5)).isoformat(
        timespec="microseconds"
    )
    assert [store.get(i).submission_attempts for i in ids[1:]] == [0, 0]
    clock.advance(1)
    queue.process_pending()  # ids[1] is due (never tried), ids[0] is still waiting
    assert store.get(ids[0]).submission_attempts == 1
    assert store.get(ids[1]).submission_attempts == 1
    store.close()
    # restart: the backoff survives in the database
    store = CaptureStore(tmp_path / "store")
    queue = SubmissionQueue(store, OutboxTarget(blocker / "outbox"), clock=clock)
    clock.advance(4.5)
    queue.process_pending()
    assert store.get(ids[0]).submission_attempts == 2
    assert store.get(ids[0]).next_attempt_utc == (clock.now + timedelta(seconds=10)).isoformat(
        timespec="microseconds"
    )
    assert queue.status().next_retry_utc is not None
    # the folder problem is fixed: everything goes once it is due
    queue = SubmissionQueue(store, OutboxTarget(tmp_path / "outbox"), clock=clock)
    clock.advance(60)
    status = queue.process_pending()
    assert (status.queued, status.submitted, status.failed) == (0, 3, 0)
    assert status.last_error is None
    assert len(list((tmp_path / "outbox").glob("*.json"))) == 3
    store.close()


def test_permanent_failures_are_marked_failed_and_can_be_retried(
    store: CaptureStore, tmp_path: Path
) -> None:
    target = DicomWebTarget("http://127.0.0.1:9/dicom-web")
    queue = SubmissionQueue(store, target)
    no_patient = store.add(smooth_image(), make_info(patient_ref="", mode="kiosk"))
    with pytest.raises(StorageError, match="no patient or encounter reference"):
        queue.enqueue(no_patient.id)  # refused up front (core.submission.policy), not failed later
    assert store.get(no_patient.id).state == "accepted"
    broken = store.add(smooth_image(), make_info())
    broken.image_path.write_bytes(b"\xff\xd8\xff\xe0 garbage")
    queue.enqueue(broken.id)
    queue.process_pending()
    assert store.get(broken.id).state == "failed"
    assert "cannot be read" in str(store.get(broken.id).last_error)
    missing = store.add(smooth_image(), make_info())
    missing.image_path.unlink()
    queue.enqueue(missing.id)
    queue.process_pending()
    assert store.get(missing.id).state == "failed"
    assert "missing" in str(store.get(missing.id).last_error)
    outbox_queue = SubmissionQueue(store, OutboxTarget(tmp_path / "outbox"))
    assert outbox_queue.retry_failed() == 2
    status = outbox_queue.process_pending()
    # the outbox takes the readable file; the missing one fails again
    assert (status.submitted, status.failed) == (1, 1)


def test_backoff_schedule() -> None:
    assert [backoff_seconds(n) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert backoff_seconds(50) == 900


def test_make_target(isolated_app_dirs: Path, tmp_path: Path) -> None:
    default = make_target({})
    assert isinstance(default, OutboxTarget)
    assert default.folder == default_outbox_folder() == isolated_app_dirs / "data" / "outbox"
    assert isinstance(make_target({"kind": "outbox", "folder": str(tmp_path)}), OutboxTarget)
    web = make_target(
        {"kind": "dicomweb", "url": "https://pacs/dicom-web/", "username": "u", "password": "p"}
    )
    assert isinstance(web, DicomWebTarget)
    assert web.base_url == "https://pacs/dicom-web" and web.auth == ("u", "p")
    with pytest.raises(ValueError, match="http"):
        make_target({"kind": "dicomweb", "url": "pacs:8042"})
    with pytest.raises(ValueError, match="Unknown submission target"):
        make_target({"kind": "fax"})
    with pytest.raises(ValueError, match="seconds"):
        make_target({"kind": "dicomweb", "url": "http://x", "timeout_s": "soon"})


def test_a_trickling_pacs_cannot_hold_a_send_beyond_its_deadline(
    store: CaptureStore, tmp_path: Path
) -> None:
    """A server that answers one byte at a time, each within the read timeout, used to hold the
    sending pass (and the app's shutdown) forever."""
    import socket
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    stop = threading.Event()

    def trickle() -> None:
        connection, _ = server.accept()
        connection.settimeout(1.0)
        try:
            connection.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/dicom+json\r\n" * 4:
                if stop.is_set():
                    break
                connection.sendall(bytes([byte]))
                time.sleep(0.25)  # well inside the 1 s read timeout, forever in total
        except OSError:
            pass
        finally:
            connection.close()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    target = DicomWebTarget(f"http://127.0.0.1:{port}/dicom-web", timeout_s=1, deadline_s=2)
    record = store.add(smooth_image(), make_info())
    started = time.monotonic()
    with pytest.raises(SubmissionError) as failure:
        target.submit(store.get(record.id), record.image_path)
    elapsed = time.monotonic() - started
    stop.set()
    thread.join(timeout=5)
    server.close()
    assert failure.value.transient
    assert elapsed < 6, elapsed


def test_closing_the_app_stops_a_send_in_progress(store: CaptureStore) -> None:
    """The sending thread must finish within the app's stop timeout, whatever the server does."""
    import socket
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)  # accepts the connection and never answers
    target = DicomWebTarget(
        f"http://127.0.0.1:{server.getsockname()[1]}/dicom-web", timeout_s=30, deadline_s=60
    )
    record = store.add(smooth_image(), make_info())
    errors: list[SubmissionError] = []

    def send() -> None:
        try:
            target.submit(store.get(record.id), record.image_path)
        except SubmissionError as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    started = time.monotonic()
    sender.start()
    time.sleep(0.5)
    target.cancel_pending()  # what SubmissionWorker.request_stop does at shutdown
    sender.join(timeout=10)
    server.close()
    assert not sender.is_alive() and time.monotonic() - started < 3
    assert errors and errors[0].transient and "stopped" in str(errors[0])
