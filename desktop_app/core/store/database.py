"""The store's database layer: opening (with rebuild of a damaged file), row mapping,
transactions with disk-full handling and the space reserve, audit entries with their state
journal, row insertion. :class:`~desktop_app.core.store.store.CaptureStore` builds on it."""

from __future__ import annotations

import builtins
import contextlib
import errno
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from desktop_app.core.store.durable import TEMP_PREFIX, fsync_dir, os_error_message
from desktop_app.core.store.errors import DiskFullError, StorageError, StoreUnavailableError
from desktop_app.core.store.journal import JOURNAL_FIELDS, JOURNAL_SUFFIX, append_journal_lines
from desktop_app.core.store.records import (
    CAPTURE_STATES,
    ID_PATTERN,
    CaptureInfo,
    CaptureRecord,
    StartupReport,
    nan_if_null,
    opt_str,
    req_int,
    req_str,
    storable_info,
    utc_now,
)
from desktop_app.core.store.schema import (
    DB_NAME,
    SCHEMA_VERSION,
    SQLITE_BUSY,
    SQLITE_CANTOPEN,
    SQLITE_IOERR,
    SQLITE_LOCKED,
    SQLITE_PERM,
    SQLITE_READONLY,
    DatabaseCorrupt,
    is_database_corruption,
    is_disk_full,
    migrate,
    sqlite_code,
    store_unavailable,
)
from desktop_app.core.store.uids import derive_uids

logger = logging.getLogger(__name__)

RESERVE_NAME = "space-reserve.bin"
_T = TypeVar("_T")


class StoreDatabase:
    """Connection, transactions and row mapping shared by the store's parts (not used alone)."""

    reserve_bytes: int = 2 * 1024 * 1024
    #: How long a statement waits for another program's lock before giving up (SQLite busy
    #: timeout); then :class:`StoreUnavailableError` ("in use by another program").
    busy_timeout_s: float = 30.0

    root: Path
    images_dir: Path
    db_path: Path
    startup_report: StartupReport
    _lock: threading.RLock
    _closed: bool
    _conn: sqlite3.Connection

    # ---- database opening --------------------------------------------------------------------

    def _check_writable(self) -> None:
        """Raise :class:`StoreUnavailableError` (``read_only``) if no file can be created in the
        store folder: a read-only folder is a setup problem, never a damaged database."""
        probe = self.root / f"{TEMP_PREFIX}write-probe"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(probe)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO):
                logger.error("capture folder %s is not writable: %s", self.root, exc.strerror)
                raise store_unavailable(exc, self.root) from exc
            raise StorageError(os_error_message(exc, "The capture database", self.root)) from exc

    def _sqlite_connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            self.db_path,
            timeout=self.busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )

    def _connect(self) -> sqlite3.Connection:
        if not self.db_path.exists():
            fd = os.open(self.db_path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
        os.chmod(self.db_path, 0o600)
        conn = self._sqlite_connect()
        try:
            conn.row_factory = sqlite3.Row
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreUnavailableError(
                    f"The capture database in {self.root} cannot use its safe write mode "
                    f"(journal mode {mode}, WAL not available; is the folder on a network "
                    "drive?). Choose a local data folder, or call IT. Nothing was changed.",
                    "unavailable",
                )
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA journal_size_limit=4194304")
            conn.execute("PRAGMA foreign_keys=ON")
            migrate(conn)
            # for CaptureStore.add(dedupe=True); an index only (older versions ignore it)
            conn.execute("CREATE INDEX IF NOT EXISTS captures_sha256 ON captures(image_sha256)")
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise DatabaseCorrupt(f"quick_check: {check}")
            # A write probe (rolled back): a database SQLite could only open read-only fails
            # here, at start-up, with a clear message instead of at the first capture.
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            finally:
                conn.execute("ROLLBACK")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_database(self) -> sqlite3.Connection:
        try:
            return self._connect()
        except StorageError:
            raise
        except sqlite3.Error as exc:
            if not is_database_corruption(exc):
                raise self._open_error(exc) from exc
            return self._rebuild(exc)
        except OSError as exc:
            raise self._open_error(exc) from exc

    def _open_error(self, exc: BaseException) -> StorageError:
        """The exception for a database that cannot be opened but is not damaged."""
        if is_disk_full(exc) or getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            return StorageError(
                f"The disk is full: the capture database in {self.root} cannot be opened."
                " Free some disk space, then restart."
            )
        if isinstance(exc, OSError) and exc.errno not in (
            errno.EACCES,
            errno.EPERM,
            errno.EROFS,
            errno.EIO,
        ):
            return StorageError(os_error_message(exc, "The capture database", self.root))
        error = store_unavailable(exc, self.root)
        logger.error("capture database unavailable (%s): %s", error.reason, exc)
        return error

    def _rebuild(self, exc: BaseException) -> sqlite3.Connection:
        """Set the damaged database aside (kept for IT) and start a new one, which
        reconciliation then fills from the image files, sidecars and state journals."""
        aside = self.db_path.with_name(f"{DB_NAME}.damaged-{datetime.now(UTC):%Y%m%dT%H%M%S}")
        logger.error(
            "capture database %s is damaged (%s); moved to %s and rebuilt from the image files",
            self.db_path,
            exc,
            aside,
        )
        try:
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.db_path) + suffix)
                if src.exists():
                    os.replace(src, Path(str(aside) + suffix))
            fsync_dir(self.root)
            conn = self._connect()
        except (OSError, sqlite3.Error) as exc2:
            raise StorageError(
                f"The capture database in {self.root} is damaged and could not be rebuilt"
                f" ({exc2}). The photos are safe in {self.images_dir}. Please call IT."
            ) from exc2
        self.startup_report.database_rebuilt_from = aside
        return conn

    # ---- row mapping -----------------------------------------------------------------------

    def _row_to_record(self, row: sqlite3.Row) -> CaptureRecord:
        """Map a row to a record; raises ValueError describing the damage if it is inconsistent."""
        try:
            capture_id = row["id"]
            if not isinstance(capture_id, str) or not ID_PATTERN.match(capture_id):
                raise ValueError(f"invalid id {capture_id!r}")
            state = row["state"]
            if state not in CAPTURE_STATES:
                raise ValueError(f"unknown state {state!r}")
            reasons = json.loads(req_str(row["reasons_json"], "reasons"))
            info = CaptureInfo.from_json_dict(
                {
                    "mode": row["mode"],
                    "operator": row["operator"],
                    "patient_ref": row["patient_ref"],
                    "body_site": row["body_site"],
                    "note": row["note"],
                    "score": nan_if_null(row["score"]),
                    "threshold": nan_if_null(row["threshold"]),
                    "model_version": row["model_version"],
                    "reasons": reasons,
                    "accepted": req_int(row["accepted"], "accepted"),
                    "source": row["source"],
                }
            )
            rel = req_str(row["image_relpath"], "image path")
            image_path = (self.root / rel).resolve()
            if not image_path.is_relative_to(self.images_dir.resolve()):
                raise ValueError("image path points outside the store")
            rating = row["review_rating"]
            return CaptureRecord(
                id=capture_id,
                created_utc=req_str(row["created_utc"], "created_utc"),
                image_path=image_path,
                info=info,
                state=state,
                reviewer=opt_str(row["reviewer"]),
                reviewed_utc=opt_str(row["reviewed_utc"]),
                review_reason=opt_str(row["review_reason"]),
                submission_attempts=req_int(row["submission_attempts"], "attempts"),
                last_error=opt_str(row["last_error"]),
                submitted_utc=opt_str(row["submitted_utc"]),
                remote_uid=opt_str(row["remote_uid"]),
                review_action=opt_str(row["review_action"]),
                review_rating=None if rating is None else req_int(rating, "rating"),
                next_attempt_utc=opt_str(row["next_attempt_utc"]),
                study_uid=req_str(row["study_uid"], "study uid"),
                series_uid=req_str(row["series_uid"], "series uid"),
                sop_instance_uid=req_str(row["sop_instance_uid"], "instance uid"),
                problem=opt_str(row["problem"]),
            )
        except (IndexError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{type(exc).__name__}: {exc}") from exc

    # ---- writes ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._check_open()
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise

    def _write(
        self,
        body: Callable[[sqlite3.Connection], _T],
        what: str,
        *,
        use_reserve: bool = True,
    ) -> _T:
        """Run ``body`` in one transaction; SQLite failures become a readable StorageError.

        If the disk is full and ``use_reserve`` is set, the space reserve is released and the
        transaction retried once, so reviews, deletions (which free space) and queue updates
        still work on a full disk. New captures do not use the reserve.
        """
        for attempt in (1, 2):
            try:
                with self._transaction() as conn:
                    return body(conn)
            except OSError as exc:  # appending to a state journal (the change was rolled back)
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    if use_reserve and attempt == 1 and self._release_reserve():
                        continue
                    raise DiskFullError(os_error_message(exc, what, self.root)) from exc
                if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.EIO):
                    raise store_unavailable(exc, self.root, what) from exc
                raise StorageError(os_error_message(exc, what, self.root)) from exc
            except sqlite3.Error as exc:
                if is_disk_full(exc):
                    if use_reserve and attempt == 1 and self._release_reserve():
                        continue
                    raise DiskFullError(
                        f"The disk is full: {what} could not be saved in {self.root}. Free some "
                        "disk space (or ask IT), then try again. Nothing was half-saved."
                    ) from exc
                if not is_database_corruption(exc) and sqlite_code(exc) in (
                    SQLITE_BUSY,
                    SQLITE_LOCKED,
                    SQLITE_READONLY,
                    SQLITE_PERM,
                    SQLITE_IOERR,
                    SQLITE_CANTOPEN,
                ):
                    raise store_unavailable(exc, self.root, what) from exc
                raise StorageError(
                    f"{what} could not be recorded in the capture database ({exc}). Please call IT."
                ) from exc
        raise AssertionError("unreachable")

    def _ensure_reserve(self) -> None:
        """Keep ``reserve_bytes`` of disk allocated, to be released when the disk fills up."""
        path = self.root / RESERVE_NAME
        if self.reserve_bytes <= 0:
            return
        try:
            if path.is_file() and path.stat().st_size == self.reserve_bytes:
                return
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o600)
            try:
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(fd, 0, self.reserve_bytes)
                else:  # macOS / Windows: real blocks by writing zeros
                    chunk = bytes(min(self.reserve_bytes, 1 << 20))
                    remaining = self.reserve_bytes
                    while remaining > 0:
                        remaining -= os.write(fd, chunk[:remaining])
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                path.unlink()
            logger.warning("cannot keep a %d-byte disk space reserve: %s", self.reserve_bytes, exc)

    def _release_reserve(self) -> bool:
        try:
            (self.root / RESERVE_NAME).unlink()
        except OSError:
            return False
        logger.warning("disk full: released the space reserve in %s", self.root)
        return True

    def _audit(
        self,
        conn: sqlite3.Connection,
        capture_id: str,
        actor: str,
        action: str,
        detail: str,
        journal: Literal["strict", "best_effort", "no"] = "strict",
    ) -> dict[str, Any]:
        """Record an audit entry and (unless ``journal="no"``) append it, with the row's
        workflow state now, to the capture's state journal before the transaction commits.

        A capture's journal is started at its first change after the capture itself, with
        the audit trail so far. ``strict``: a failed append raises OSError (the transaction is
        rolled back); ``best_effort``: it is logged, and no new journal is started."""
        entry: dict[str, Any] = {
            "utc": utc_now(),
            "actor": actor,
            "action": action,
            "detail": detail,
        }
        conn.execute(
            "INSERT INTO audit(utc, capture_id, actor, action, detail) VALUES (?,?,?,?,?)",
            (entry["utc"], capture_id, actor, action, detail),
        )
        if journal == "no":
            return entry
        row = conn.execute(
            f"SELECT image_relpath, {', '.join(JOURNAL_FIELDS)} FROM captures WHERE id=?",
            (capture_id,),
        ).fetchone()
        if row is None:
            return entry
        entry["set"] = {name: row[name] for name in JOURNAL_FIELDS}
        path = (self.root / str(row["image_relpath"])).with_suffix(JOURNAL_SUFFIX)
        entries: builtins.list[dict[str, Any]] = [entry]
        if not path.parent.is_dir():
            # the capture's folder is gone (its image too): nothing a journal could restore,
            # and recording the problem (or the failure of a send) must still work
            return entry
        if not path.exists():
            if journal == "best_effort":
                return entry
            earlier = conn.execute(
                "SELECT utc, actor, action, detail FROM audit WHERE capture_id=? ORDER BY seq",
                (capture_id,),
            ).fetchall()
            entries = [dict(r) for r in earlier[:-1]] + entries
        try:
            append_journal_lines(path, entries)
        except OSError as exc:
            if journal == "strict":
                raise
            logger.error("capture %s: state journal not written (%s)", capture_id, exc.strerror)
        return entry

    def _insert_row(
        self,
        capture_id: str,
        created: str,
        image_path: Path,
        data: bytes,
        info: CaptureInfo,
        state: str,
        audit_action: str,
        restored: Mapping[str, Any] | None = None,
        history: Iterable[Mapping[str, Any]] = (),
        audit_detail: str | None = None,
    ) -> None:
        """Insert a capture's row (and audit entry). ``restored`` (workflow columns) and
        ``history`` (audit entries) come from a state journal when a capture is rebuilt."""
        from hashlib import sha256

        info = storable_info(info)
        study, series, sop = derive_uids(capture_id, info, created)

        def body(conn: sqlite3.Connection) -> None:
            conn.execute(
                """INSERT INTO captures (id, created_utc, image_relpath, image_sha256, mode,
                operator, patient_ref, body_site, note, score, threshold, model_version,
                reasons_json, accepted, source, state, study_uid, series_uid, sop_instance_uid)
                VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)""",
                (
                    capture_id,
                    created,
                    image_path.relative_to(self.root).as_posix(),
                    sha256(data).hexdigest(),
                    info.mode,
                    info.operator,
                    info.patient_ref,
                    info.body_site,
                    info.note,
                    float(info.score),
                    float(info.threshold),
                    info.model_version,
                    json.dumps({k: float(v) for k, v in info.reasons.items()}),
                    int(bool(info.accepted)),
                    info.source,
                    state,
                    study,
                    series,
                    sop,
                ),
            )
            if restored:
                cols = ", ".join(f"{k}=?" for k in restored)
                conn.execute(
                    f"UPDATE captures SET {cols} WHERE id=?", (*restored.values(), capture_id)
                )
            for old in history:
                conn.execute(
                    "INSERT INTO audit(utc, capture_id, actor, action, detail) VALUES (?,?,?,?,?)",
                    (old["utc"], capture_id, old["actor"], old["action"], old["detail"]),
                )
            # A new capture starts no journal (one that is never changed needs none; after a
            # rebuild it is 'captured', for review). A restored one notes its restoration.
            self._audit(
                conn,
                capture_id,
                info.operator,
                audit_action,
                audit_detail or state,
                journal="best_effort" if restored else "no",
            )

        self._write(body, "The photo", use_reserve=False)

    def _remove_capture_files(self, image_path: Path) -> None:
        for p in (
            image_path,
            image_path.with_suffix(".json"),
            image_path.with_suffix(JOURNAL_SUFFIX),
        ):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        with contextlib.suppress(OSError):
            fsync_dir(image_path.parent)

    def _try_set_problem(self, capture_id: str, problem: str | None) -> None:
        try:
            self._set_problem(capture_id, problem)
        except StorageError as exc:
            logger.error("capture %s: could not record problem %r: %s", capture_id, problem, exc)

    def _set_problem(self, capture_id: str, problem: str | None) -> None:
        def body(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE captures SET problem=? WHERE id=?", (problem, capture_id))
            if problem:
                self._audit(conn, capture_id, "system", "problem", problem)

        self._write(body, "The problem note")

    # ---- reads -----------------------------------------------------------------------------

    def get(self, capture_id: str) -> CaptureRecord:
        """The capture with this id.

        Raises KeyError if unknown, StorageError if its row is damaged.
        """
        with self._lock:
            self._check_open()
            row = self._conn.execute(
                "SELECT rowid, * FROM captures WHERE id=?", (capture_id,)
            ).fetchone()
        if row is None:
            raise KeyError(capture_id)
        try:
            return self._row_to_record(row)
        except ValueError as exc:
            raise StorageError(
                f"The record of capture {capture_id} is damaged ({exc}); the photo is kept. "
                "Please call IT."
            ) from exc

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("The capture store is closed.")
