"""A healthy database that cannot be used now (locked, read-only, I/O error) is reported, never
rebuilt; a really damaged one is rebuilt with its workflow state restored from the journals."""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import make_info, smooth_image

from desktop_app.core.store import (
    DB_NAME,
    CaptureRecord,
    CaptureStore,
    StorageError,
    StoreUnavailableError,
    is_database_corruption,
)
from desktop_app.core.submission import SubmissionQueue


def _damaged_copies(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if ".damaged-" in p.name)


def _store_with_history(root: Path) -> dict[str, str]:
    """Three captures: one reviewed (override), one confirmed rejected, one accepted."""
    with CaptureStore(root) as s:
        a = s.add(smooth_image(seed=1), make_info(accepted=False, score=0.2))
        b = s.add(smooth_image(seed=2), make_info(accepted=False, score=0.1))
        c = s.add(smooth_image(seed=3), make_info())
        s.review(a.id, "override", "dr-a", "fine for assessment", rating=4)
        s.review(b.id, "confirm_reject", "dr-b", "too blurry")
    return {"overridden": a.id, "rejected": b.id, "accepted": c.id}


@pytest.fixture
def locked_by_another_program(tmp_path: Path) -> Iterator[Path]:
    """A store whose database another program holds with an exclusive lock."""
    root = tmp_path / "store"
    _store_with_history(root)
    other = sqlite3.connect(root / DB_NAME, isolation_level=None)
    other.execute("PRAGMA locking_mode=EXCLUSIVE")
    other.execute("BEGIN EXCLUSIVE")
    other.execute("UPDATE captures SET note=note")
    yield root
    other.execute("ROLLBACK")
    other.close()


def test_a_locked_database_is_in_use_not_damaged_and_is_never_rebuilt(
    locked_by_another_program: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = locked_by_another_program
    monkeypatch.setattr(CaptureStore, "busy_timeout_s", 0.05)
    with pytest.raises(StoreUnavailableError, match="in use by another program") as caught:
        CaptureStore(root)
    assert caught.value.reason == "locked"
    assert isinstance(caught.value, StorageError)  # callers that catch StorageError keep working
    assert _damaged_copies(root) == []


def test_after_the_lock_goes_the_store_opens_with_every_state_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    ids = _store_with_history(root)
    other = sqlite3.connect(root / DB_NAME, isolation_level=None)
    other.execute("PRAGMA locking_mode=EXCLUSIVE")
    other.execute("BEGIN EXCLUSIVE")
    other.execute("UPDATE captures SET note=note")
    monkeypatch.setattr(CaptureStore, "busy_timeout_s", 0.05)
    with pytest.raises(StoreUnavailableError):
        CaptureStore(root)
    other.execute("ROLLBACK")
    other.close()
    with CaptureStore(root) as s:  # the retry
        assert s.startup_report.clean
        assert {r.id: r.state for r in s.list()} == {v: k for k, v in ids.items()}
        assert s.get(ids["overridden"]).reviewer == "dr-a"


def test_a_change_while_another_program_holds_the_lock_fails_clearly_and_can_be_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CaptureStore, "busy_timeout_s", 0.05)
    with CaptureStore(tmp_path / "store") as s:
        record = s.add(smooth_image(), make_info(accepted=False, score=0.1))
        other = sqlite3.connect(s.db_path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # a writer that does not let go
        with pytest.raises(StoreUnavailableError, match="in use by another program") as caught:
            s.review(record.id, "override", "dr-a", "ok")
        assert caught.value.reason == "locked" and caught.value.args[0].startswith("The review")
        other.execute("ROLLBACK")
        other.close()
        assert s.review(record.id, "override", "dr-a", "ok").state == "overridden"


def test_a_database_sqlite_can_only_open_read_only_is_reported_not_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    ids = _store_with_history(root)

    def read_only_connect(self: CaptureStore) -> sqlite3.Connection:
        # what SQLite falls back to when the file or its folder is not writable
        return sqlite3.connect(
            f"file:{self.db_path}?mode=ro", uri=True, isolation_level=None, timeout=0.05
        )

    monkeypatch.setattr(CaptureStore, "_sqlite_connect", read_only_connect)
    with pytest.raises(StoreUnavailableError, match="read-only") as caught:
        CaptureStore(root)
    assert caught.value.reason == "read_only"
    assert "damaged" not in str(caught.value)
    monkeypatch.undo()
    with CaptureStore(root) as s:
        assert s.startup_report.database_rebuilt_from is None
        assert s.get(ids["overridden"]).state == "overridden"
    assert _damaged_copies(root) == []


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write to read-only folders"
)
def test_a_read_only_store_folder_is_called_read_only_not_a_damaged_database(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    _store_with_history(root)
    os.chmod(root, 0o500)
    try:
        with pytest.raises(StoreUnavailableError, match="read-only") as caught:
            CaptureStore(root)
        assert caught.value.reason == "read_only" and "damaged" not in str(caught.value)
    finally:
        os.chmod(root, 0o700)
    assert _damaged_copies(root) == []


def test_an_io_error_is_reported_not_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    _store_with_history(root)

    def failing_connect(self: CaptureStore) -> sqlite3.Connection:
        exc = sqlite3.OperationalError("disk I/O error")
        exc.sqlite_errorcode = 10 | (1 << 8)  # type: ignore[attr-defined]  # SQLITE_IOERR_READ
        raise exc

    monkeypatch.setattr(CaptureStore, "_sqlite_connect", failing_connect)
    with pytest.raises(StoreUnavailableError, match="I/O error") as caught:
        CaptureStore(root)
    assert caught.value.reason == "io_error"
    assert _damaged_copies(root) == []


def test_only_real_damage_counts_as_corruption() -> None:
    def err(message: str, code: int | None) -> sqlite3.DatabaseError:
        exc = sqlite3.DatabaseError(message)
        if code is not None:
            exc.sqlite_errorcode = code  # type: ignore[attr-defined]
        return exc

    assert is_database_corruption(err("database disk image is malformed", 11))
    assert is_database_corruption(err("file is not a database", 26))
    assert is_database_corruption(err("database disk image is malformed", None))
    assert not is_database_corruption(err("database is locked", 5))
    assert not is_database_corruption(err("attempt to write a readonly database", 1544))
    assert not is_database_corruption(err("disk I/O error", 266))
    assert not is_database_corruption(err("unable to open database file", 14))
    assert not is_database_corruption(OSError("no"))


def test_the_app_shows_the_in_use_message_instead_of_failing(
    locked_by_another_program: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from desktop_app.app.services import build_services
    from desktop_app.core.settings import AppSettings

    monkeypatch.setattr(CaptureStore, "busy_timeout_s", 0.05)
    services = build_services(
        kiosk=False,
        model=None,
        source_spec="demo",
        settings=AppSettings(),
        store_root=locked_by_another_program,
    )
    assert services.store is None and services.queue is None
    assert "in use by another program" in services.store_error
    assert _damaged_copies(locked_by_another_program) == []


# ---- real corruption: rebuilt, with the workflow state restored from the state journals -------


class CountingTarget:
    """A target that records every send (a re-send of a delivered capture is counted)."""

    name = "counting"
    needs_patient_ref = False

    def __init__(self) -> None:
        self.sent: list[str] = []

    def submit(self, record: CaptureRecord, image_path: Path) -> str:
        self.sent.append(record.id)
        return f"remote-{record.id}"

    def cancel_pending(self) -> None:
        pass


def _corrupt(root: Path) -> None:
    db = root / DB_NAME
    raw = bytearray(db.read_bytes())
    raw[0:16] = b"definitely-not-a"
    db.write_bytes(bytes(raw))


_WORKFLOW = (
    "state",
    "reviewer",
    "reviewed_utc",
    "review_action",
    "review_reason",
    "review_rating",
    "submission_attempts",
    "last_error",
    "submitted_utc",
    "remote_uid",
    "info",
    "created_utc",
)


def test_after_real_corruption_states_and_audit_trails_come_back_and_nothing_is_resent(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    target = CountingTarget()
    with CaptureStore(root) as s:
        queue = SubmissionQueue(s, target)
        sent = [s.add(smooth_image(seed=i), make_info(note=f"s{i}")).id for i in range(3)]
        for cid in sent:
            queue.enqueue(cid)
        queue.process_pending()
        waiting = s.add(smooth_image(seed=10), make_info(note="waiting")).id
        queue.enqueue(waiting)  # queued, not sent yet
        overridden = s.add(smooth_image(seed=11), make_info(accepted=False, score=0.2)).id
        s.review(overridden, "override", "dr-a", "fine for assessment", rating=4)
        rejected = s.add(smooth_image(seed=12), make_info(accepted=False, score=0.1)).id
        s.review(rejected, "confirm_reject", "dr-b", "too blurry", rating=1)
        untouched = s.add(smooth_image(seed=13), make_info(note="untouched")).id
        deleted = s.add(smooth_image(seed=14), make_info(accepted=False, score=0.1)).id
        s.delete(deleted, "dr-b")
        before = {r.id: r for r in s.list()}
        trails = {cid: s.history(cid) for cid in before}
        s._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert target.sent == sent
    assert {before[c].state for c in sent} == {"submitted"}
    _corrupt(root)

    with CaptureStore(root) as s:
        report = s.startup_report
        assert report.database_rebuilt_from is not None
        changed = sorted(set(before) - {untouched})
        assert sorted(report.restored) == changed
        after = {r.id: r for r in s.list()}
        assert sorted(after) == sorted(before)  # the deleted capture stays deleted
        # never changed after it was taken: no journal, recovered for review (as before)
        assert after[untouched].state == "captured"
        assert after[untouched].info == before[untouched].info
        for cid in changed:
            old, new = before[cid], after[cid]
            assert {k: getattr(new, k) for k in _WORKFLOW} == {
                k: getattr(old, k) for k in _WORKFLOW
            }, cid
            trail = s.history(cid)
            assert trail[: len(trails[cid])] == trails[cid]  # the whole trail, in order
            assert trail[-1]["action"] == "recovered"
        assert after[waiting].state == "queued"
        assert after[overridden].review_rating == 4 and after[rejected].reviewer == "dr-b"
        queue = SubmissionQueue(s, target)
        queue.release_stale_claims()
        status = queue.process_pending()
        assert status.queued == 0 and status.submitted == 4
    assert target.sent == [*sent, waiting]  # the delivered ones were not sent again
    with CaptureStore(root) as s:  # and the rebuilt store is healthy
        assert s.startup_report.clean


def test_a_torn_last_journal_line_is_skipped_and_the_state_before_it_restored(
    tmp_path: Path,
) -> None:
    root = tmp_path / "store"
    with CaptureStore(root) as s:
        record = s.add(smooth_image(), make_info(accepted=False, score=0.1))
        s.review(record.id, "override", "dr-a", "ok")
        s._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    journal = record.image_path.with_suffix(".jsonl")
    with journal.open("ab") as fh:  # killed in the middle of appending the next change
        fh.write(b'{"action": "enqueue", "actor": "sys')
    _corrupt(root)
    with CaptureStore(root) as s:
        got = s.get(record.id)
        assert got.state == "overridden" and got.reviewer == "dr-a"
        assert [h["action"] for h in s.history(record.id)] == ["capture", "override", "recovered"]


def test_a_capture_without_details_is_not_restored_as_sendable(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with CaptureStore(root) as s:
        queued = s.add(smooth_image(seed=1), make_info())
        SubmissionQueue(s, CountingTarget()).enqueue(queued.id)
        s._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    queued.image_path.with_suffix(".json").unlink()  # its sidecar is lost too
    _corrupt(root)
    with CaptureStore(root) as s:
        assert s.get(queued.id).state == "captured"  # a reviewer looks before it can be sent


def test_a_change_whose_journal_cannot_be_written_is_not_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import desktop_app.core.store.database as storage

    with CaptureStore(tmp_path / "store") as s:
        record = s.add(smooth_image(), make_info(accepted=False, score=0.1))

        def full(path: Path, entry: object) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(storage, "append_journal_lines", full)
        with pytest.raises(StoreUnavailableError, match="I/O error"):
            s.review(record.id, "override", "dr-a", "ok")
        assert s.get(record.id).state == "rejected"  # rolled back: database and journal agree


def test_a_deletion_interrupted_before_a_rebuild_is_completed_not_undone(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with CaptureStore(root) as s:
        record = s.add(smooth_image(), make_info(accepted=False, score=0.1))
        s.review(record.id, "confirm_reject", "dr-a", "blurry")
        # delete()'s database part committed; the process died before the files were removed
        with s._transaction() as conn:
            s._audit(conn, record.id, "dr-a", "delete", "{}", journal="best_effort")
            conn.execute("DELETE FROM captures WHERE id=?", (record.id,))
        s._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert record.image_path.exists()
    _corrupt(root)
    with CaptureStore(root) as s:
        assert s.startup_report.deletions_completed == 1
        assert s.list() == [] and not record.image_path.exists()
        assert not record.image_path.with_suffix(".jsonl").exists()


def test_a_capture_whose_folder_is_gone_still_gets_its_problem_recorded(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "store"
    with CaptureStore(root) as s:
        record = s.add(smooth_image(), make_info())
        SubmissionQueue(s, CountingTarget()).enqueue(record.id)  # it has a journal
    shutil.rmtree(record.image_path.parent)  # the whole month folder (restored backup, say)
    with CaptureStore(root) as s:
        assert s.startup_report.missing_images == [record.id]
        assert s.get(record.id).problem == "image file missing"
