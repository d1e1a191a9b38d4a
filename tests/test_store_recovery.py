"""A healthy database that cannot be used now (locked, read-only, I/O error) is reported, never
rebuilt; a really damaged one is rebuilt with its workflow state restored from the journals."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import make_info, smooth_image

from desktop_app.core.storage import (
    DB_NAME,
    CaptureStore,
    StorageError,
    StoreUnavailableError,
    is_database_corruption,
)


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
    from desktop_app.core.settings import AppSettings
    from desktop_app.qt.main_window import build_services

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
