"""The capture database's schema and migrations, and how SQLite errors are told apart:
real corruption (rebuild) versus locked, read-only or I/O errors (try again later)."""

from __future__ import annotations

import builtins
import errno
import sqlite3
from pathlib import Path

from desktop_app.core.store.errors import (
    StorageError,
    StoreUnavailableError,
    StoreUnavailableReason,
)

SCHEMA_VERSION = 1
DB_NAME = "captures.sqlite3"


_SCHEMA_V1 = """
CREATE TABLE captures (
    id TEXT PRIMARY KEY,
    created_utc TEXT NOT NULL,
    image_relpath TEXT NOT NULL,
    image_sha256 TEXT NOT NULL,
    mode TEXT NOT NULL,
    operator TEXT NOT NULL,
    patient_ref TEXT NOT NULL,
    body_site TEXT NOT NULL,
    note TEXT NOT NULL,
    score REAL,
    threshold REAL,
    model_version TEXT NOT NULL,
    reasons_json TEXT NOT NULL,
    accepted INTEGER NOT NULL,
    source TEXT NOT NULL,
    state TEXT NOT NULL,
    reviewer TEXT,
    reviewed_utc TEXT,
    review_action TEXT,
    review_reason TEXT,
    review_rating INTEGER,
    submission_attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    last_attempt_utc TEXT,
    next_attempt_utc TEXT,
    submitted_utc TEXT,
    remote_uid TEXT,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    problem TEXT
);
CREATE INDEX captures_state ON captures(state, next_attempt_utc);
CREATE INDEX captures_created ON captures(created_utc);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    utc TEXT NOT NULL,
    capture_id TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_capture ON audit(capture_id);
"""

_MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1}


def migrate(conn: sqlite3.Connection) -> None:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"The capture database was written by a newer version of this app (schema "
            f"{version}, this app knows {SCHEMA_VERSION}). Please update the app."
        )
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split_sql(_MIGRATIONS[target]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _split_sql(script: str) -> builtins.list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def is_disk_full(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code == 13 or "disk is full" in str(exc) or "database or disk is full" in str(exc)


class DatabaseCorrupt(sqlite3.DatabaseError):
    """The integrity check failed (raised by the store itself; real corruption)."""


# SQLite primary result codes (extended codes carry these in their low byte).
SQLITE_PERM = 3
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26


def sqlite_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_database_corruption(exc: BaseException) -> bool:
    """True only for real damage to the database file: "database disk image is malformed",
    "file is not a database", or a failed integrity check. Locks, read-only folders and I/O
    errors are not corruption (a rebuild would throw away a healthy database's workflow state)."""
    if isinstance(exc, DatabaseCorrupt):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = sqlite_code(exc)
    if code is not None:
        return code in (SQLITE_CORRUPT, SQLITE_NOTADB)
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def store_unavailable(
    exc: BaseException, root: Path, what: str | None = None
) -> StoreUnavailableError:
    """A plain-language :class:`StoreUnavailableError` for a SQLite or OS error that is not
    corruption (the caller may try again later). ``what`` names the change that failed, if
    any ("The review")."""
    code = sqlite_code(exc)
    text = str(exc).lower()
    errno_ = getattr(exc, "errno", None)
    reason: StoreUnavailableReason
    if code in (SQLITE_BUSY, SQLITE_LOCKED) or "locked" in text or "busy" in text:
        reason = "locked"
        body = (
            f"The capture database in {root} is in use by another program (it stayed locked). "
            "Close any other program that has it open (a database viewer, a backup or sync "
            "tool, another copy of this app), then try again."
        )
    elif (
        code in (SQLITE_READONLY, SQLITE_PERM)
        or "readonly" in text
        or "read-only" in text
        or errno_ in (errno.EACCES, errno.EPERM, errno.EROFS)
    ):
        reason = "read_only"
        body = (
            f"The capture folder is read-only: {root}. Ask IT to make it writable for this user "
            "(or choose another data folder), then try again."
        )
    elif code == SQLITE_IOERR or "i/o error" in text or errno_ == errno.EIO:
        reason = "io_error"
        body = (
            f"The capture database in {root} could not be read or written (the disk reported an "
            "I/O error). Check that the drive or network share is connected and working, then "
            "try again; if it keeps happening, please call IT."
        )
    else:
        reason = "unavailable"
        body = (
            f"The capture database in {root} cannot be used right now ({exc}). Try again; if it "
            "keeps happening, please call IT."
        )
    prefix = f"{what} could not be saved. " if what else ""
    return StoreUnavailableError(f"{prefix}{body} Nothing was changed.", reason)
