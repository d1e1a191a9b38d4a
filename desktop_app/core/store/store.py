"""The capture store: every photo is on disk before anything else happens to it.

Layout under the store root (``$SKIN_CAPTURE_HOME/captures`` or the platformdirs data dir)::

    captures.sqlite3            SQLite, WAL, synchronous=FULL, schema version in user_version
    images/<YYYY-MM>/<id>.jpg   the photo (or .png for lossless hot-folder originals)
    images/<YYYY-MM>/<id>.json  capture-time sidecar (the CaptureInfo), used to rebuild a lost row
    images/<YYYY-MM>/<id>.jsonl state journal: one line per audited change (review, queue,
                                send attempt, submitted...) with the workflow state after it

Write order in :meth:`CaptureStore.add`: image and sidecar are each written to a temporary file,
fsynced, renamed into place and the directory fsynced; only then is the row inserted and
committed. A crash at any point therefore leaves either nothing, or a complete image whose row is
rebuilt from the sidecar at the next start (state ``captured``, with a warning), or the full
capture. Files are ``0600`` and folders ``0700``.

Every audited state change is also appended (fsynced) to the capture's state journal inside its
database transaction, before the commit, so the journal is never behind the database. Only when
the database itself is damaged and rebuilt does the journal matter: each capture then gets back
its last journalled state (review decision, reviewer, reason, queue and submitted state, remote
identifiers) and its audit trail, so a delivered capture is never sent again.

The class is built from parts: :class:`~desktop_app.core.store.database.StoreDatabase`
(opening, transactions, audit and journal, row mapping),
:class:`~desktop_app.core.store.reconcile.StoreReconciler` (start-up reconciliation) and
:class:`~desktop_app.core.store.queue_state.QueueState` (the submission queue's bookkeeping);
this module adds capturing, reading, review, deletion and export.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import json
import logging
import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np

from desktop_app.core.image_io import ImageLoadError, decode_rgb
from desktop_app.core.store.durable import atomic_write_bytes, ensure_private_dir, os_error_message
from desktop_app.core.store.errors import DiskFullError, StorageError
from desktop_app.core.store.export import export_training_csv
from desktop_app.core.store.jpeg_privacy import prepare_image_bytes
from desktop_app.core.store.queue_state import QueueState
from desktop_app.core.store.reconcile import StoreReconciler
from desktop_app.core.store.records import (
    CAPTURE_MODES,
    CAPTURE_STATES,
    IMAGES_DIR,
    REVIEW_ACTIONS,
    CaptureInfo,
    CaptureRecord,
    DamagedRow,
    StartupReport,
    default_store_root,
    new_capture_id,
    safe_id,
    storable_info,
    utc_now,
)
from desktop_app.core.store.schema import DB_NAME, is_database_corruption
from desktop_app.core.store.uids import derive_uids

logger = logging.getLogger(__name__)


class CaptureStore(StoreReconciler, QueueState):
    """Durable local store of captures (SQLite + image files). Thread-safe.

    Opening the store reconciles database and files; see :attr:`startup_report`.
    ``reserve_bytes`` of disk are kept allocated (``space-reserve.bin``) and released when the
    disk is full, so that deletions and state changes still work then.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_store_root()
        self.images_dir = self.root / IMAGES_DIR
        self.db_path = self.root / DB_NAME
        self._lock = threading.RLock()
        self._closed = False
        try:
            ensure_private_dir(self.root)
            ensure_private_dir(self.images_dir)
        except OSError as exc:
            raise StorageError(os_error_message(exc, "The capture folder", self.root)) from exc
        self.startup_report = StartupReport()
        self._check_writable()
        self._conn = self._open_database()
        try:
            self._reconcile()
        except sqlite3.Error as exc:  # damage found while reading the rows
            self._conn.close()
            if not is_database_corruption(exc) or self.startup_report.database_rebuilt_from:
                raise self._open_error(exc) from exc
            self._conn = self._rebuild(exc)
            self._reconcile()
        self._ensure_reserve()

    def add(
        self,
        image_rgb: np.ndarray,
        info: CaptureInfo,
        encoded: bytes | None = None,
        *,
        dedupe: bool = False,
    ) -> CaptureRecord:
        """Persist a capture: image file first (atomic, durable), then its row.

        ``image_rgb``: uint8 ``[H, W, 3]`` RGB. ``encoded``: the original file's bytes (hot folder),
        stored without recompression where possible, metadata stripped. ``dedupe``: if the store
        already holds a capture with exactly these stored bytes (the same hot-folder file offered
        again after a crash, also one recovered from an interrupted save), that capture is
        returned and nothing new is stored.
        Raises :class:`StorageError` (nothing partial left behind) if it cannot be saved.
        """
        if image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
            raise ValueError(
                f"image must be uint8 [H, W, 3], got {image_rgb.dtype} {image_rgb.shape}"
            )
        if info.mode not in CAPTURE_MODES:
            raise ValueError(f"mode must be one of {CAPTURE_MODES}, got {info.mode!r}")
        self._check_open()
        now = datetime.now(UTC)
        capture_id = new_capture_id(now)
        created = now.isoformat(timespec="microseconds")
        data, suffix = prepare_image_bytes(np.ascontiguousarray(image_rgb), encoded)
        if dedupe:
            existing = self._find_by_sha256(data)
            if existing is not None:
                logger.info("photo already stored as capture %s; not stored twice", existing)
                return self.get(existing)
        folder = self.images_dir / f"{now:%Y-%m}"
        image_path = folder / f"{capture_id}{suffix}"
        sidecar_path = folder / f"{capture_id}.json"
        sidecar = json.dumps(
            {"id": capture_id, "created_utc": created, "info": info.to_json_dict()},
            allow_nan=True,
            sort_keys=True,
        ).encode("utf-8")
        try:
            ensure_private_dir(folder)
            atomic_write_bytes(sidecar_path, sidecar, sync_dir=False)
            atomic_write_bytes(image_path, data)
        except OSError as exc:
            self._remove_capture_files(image_path)
            raise StorageError(os_error_message(exc, "The photo", folder)) from exc
        state = "accepted" if info.accepted else "rejected"
        try:
            self._insert_row(capture_id, created, image_path, data, info, state, "capture")
        except StorageError:
            self._remove_capture_files(image_path)
            raise
        self._ensure_reserve()
        return self.get(capture_id)

    def _find_by_sha256(self, data: bytes) -> str | None:
        from hashlib import sha256

        with self._lock:
            self._check_open()
            rows = self._conn.execute(
                "SELECT id, image_relpath FROM captures WHERE image_sha256=? ORDER BY created_utc",
                (sha256(data).hexdigest(),),
            ).fetchall()
        for row in rows:  # one whose photo file is gone does not count: store it again
            if (self.root / str(row["image_relpath"])).is_file():
                return str(row["id"])
        return None

    def list(self, states: Iterable[str] | None = None) -> builtins.list[CaptureRecord]:
        """Captures, newest first, optionally only those in ``states``. Damaged rows are skipped
        (and logged; see :meth:`damaged_rows`)."""
        query = "SELECT rowid, * FROM captures"
        params: tuple[str, ...] = ()
        if states is not None:
            params = tuple(states)
            unknown = set(params) - set(CAPTURE_STATES)
            if unknown:
                raise ValueError(f"unknown states: {sorted(unknown)}")
            if not params:
                return []
            query += f" WHERE state IN ({','.join('?' * len(params))})"
        query += " ORDER BY created_utc DESC, id DESC"
        with self._lock:
            self._check_open()
            rows = self._conn.execute(query, params).fetchall()
        records: builtins.list[CaptureRecord] = []
        for row in rows:
            try:
                records.append(self._row_to_record(row))
            except ValueError as exc:
                logger.error("skipping damaged capture row %s: %s", safe_id(row), exc)
        return records

    def damaged_rows(self) -> builtins.list[DamagedRow]:
        """Rows that cannot be read back (they are skipped by :meth:`list`)."""
        with self._lock:
            self._check_open()
            rows = self._conn.execute("SELECT rowid, * FROM captures").fetchall()
        damaged: builtins.list[DamagedRow] = []
        for row in rows:
            try:
                self._row_to_record(row)
            except ValueError as exc:
                damaged.append(DamagedRow(int(row["rowid"]), safe_id(row), str(exc)))
        return damaged

    def problems(self) -> builtins.list[CaptureRecord]:
        """Readable captures with a recorded problem (e.g. their image file is missing)."""
        return [r for r in self.list() if r.problem]

    def counts(self) -> dict[str, int]:
        """Number of captures per state (all states present, zeros included)."""
        with self._lock:
            self._check_open()
            rows = self._conn.execute("SELECT state, COUNT(*) FROM captures GROUP BY state")
            found = {str(s): int(n) for s, n in rows}
        return {s: found.get(s, 0) for s in CAPTURE_STATES}

    def history(self, capture_id: str) -> builtins.list[dict[str, str]]:
        """Audit trail of one capture, oldest first."""
        with self._lock:
            self._check_open()
            rows = self._conn.execute(
                "SELECT utc, actor, action, detail FROM audit WHERE capture_id=? ORDER BY seq",
                (capture_id,),
            ).fetchall()
        return [dict(r) for r in rows]

    def load_image(self, capture_id: str) -> np.ndarray:
        """The stored photo as uint8 RGB ``[H, W, 3]``; StorageError if missing or unreadable."""
        record = self.get(capture_id)
        try:
            data = record.image_path.read_bytes()
        except OSError as exc:
            raise StorageError(
                f"The photo of capture {capture_id} is missing from {record.image_path.parent}."
            ) from exc
        try:
            return decode_rgb(data, str(record.image_path))
        except ImageLoadError as exc:
            raise StorageError(f"The photo of capture {capture_id} is damaged: {exc}") from exc

    # ---- review and deletion -----------------------------------------------------------------

    def review(
        self,
        capture_id: str,
        action: Literal["override", "confirm_reject"],
        reviewer: str,
        reason: str,
        rating: int | None = None,
    ) -> CaptureRecord:
        """Record a reviewer's decision on a rejected (or recovered ``captured``) capture.

        ``override`` accepts it anyway (state ``overridden``, then eligible for submission);
        ``confirm_reject`` keeps it rejected. ``rating`` (1-5) is an optional quality rating used
        by :meth:`export_training_csv`.
        """
        if action not in REVIEW_ACTIONS:
            raise ValueError(f"action must be one of {REVIEW_ACTIONS}, got {action!r}")
        if not reviewer.strip():
            raise ValueError("a reviewer name is required")
        if rating is not None and not 1 <= int(rating) <= 5:
            raise ValueError("rating must be 1-5")
        new_state = "overridden" if action == "override" else "rejected"

        def body(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT state FROM captures WHERE id=?", (capture_id,)).fetchone()
            if row is None:
                raise KeyError(capture_id)
            if row["state"] not in ("captured", "rejected", "accepted"):
                raise StorageError(
                    f"Capture {capture_id} is already {row['state']}; it can no longer be reviewed."
                )
            conn.execute(
                """UPDATE captures SET state=?, reviewer=?, reviewed_utc=?, review_action=?,
                review_reason=?, review_rating=? WHERE id=?""",
                (new_state, reviewer, utc_now(), action, reason, rating, capture_id),
            )
            self._audit(conn, capture_id, reviewer, action, reason)

        self._write(body, "The review")
        return self.get(capture_id)

    def delete(self, capture_id: str, reviewer: str) -> None:
        """Delete a capture: the deletion is recorded in the audit log, then the file removed."""
        if not reviewer.strip():
            raise ValueError("a reviewer name is required")

        def body(conn: sqlite3.Connection) -> str:
            row = conn.execute(
                "SELECT image_relpath, state, patient_ref, image_sha256 FROM captures WHERE id=?",
                (capture_id,),
            ).fetchone()
            if row is None:
                raise KeyError(capture_id)
            detail = json.dumps(
                {
                    "state": row["state"],
                    "patient_ref": row["patient_ref"],
                    "image_sha256": row["image_sha256"],
                }
            )
            self._audit(conn, capture_id, reviewer, "delete", detail, journal="best_effort")
            conn.execute("DELETE FROM captures WHERE id=?", (capture_id,))
            return str(row["image_relpath"])

        try:
            relpath = self._write(body, "The deletion")
        except DiskFullError:
            # Deleting is how a user frees space, so it must work on a full disk even after the
            # reserve is used up: the photo goes first (that frees its space), then the row. A
            # crash in between leaves a row whose image is missing: shown as such, deletable.
            relpath = self._image_relpath(capture_id)
            logger.warning("disk full: removing the photo of %s before its row", capture_id)
            self._remove_capture_files(self.root / relpath)
            relpath = self._write(body, "The deletion")
        # A crash before this point is completed by reconciliation (audit says "delete").
        self._remove_capture_files(self.root / relpath)
        self._ensure_reserve()

    def _image_relpath(self, capture_id: str) -> str:
        with self._lock:
            row = self._conn.execute(
                "SELECT image_relpath FROM captures WHERE id=?", (capture_id,)
            ).fetchone()
        if row is None:
            raise KeyError(capture_id)
        return str(row["image_relpath"])

    # ---- export ------------------------------------------------------------------------------

    def export_training_csv(self, out_csv: Path, ids: Iterable[str] | None = None) -> int:
        """Write reviewed captures in the training pipeline's CSV format; returns rows written
        (see :func:`desktop_app.core.store.export.export_training_csv`)."""
        return export_training_csv(self, out_csv, ids)

    # ---- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._conn.close()

    # ---- completing a capture's details (Review) ---------------------------------------------

    def set_details(
        self, capture_id: str, patient_ref: str, body_site: str, actor: str
    ) -> CaptureRecord:
        """Set the patient reference and body site of a capture that was not sent yet (a
        hot-folder photo that arrived before an ID was typed, a kiosk photo): the row (with its
        study and series UIDs, which depend on them), the sidecar (best effort) and the audit."""
        if not actor.strip():
            raise ValueError("a reviewer name is required")
        record = self.get(capture_id)
        info = storable_info(
            dataclasses.replace(record.info, patient_ref=patient_ref, body_site=body_site)
        )
        study, series, _ = derive_uids(capture_id, info, record.created_utc)

        def body(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE captures SET patient_ref=?, body_site=?, study_uid=?, series_uid=? "
                "WHERE id=? AND state NOT IN ('queued', 'submitted', 'failed')",
                (info.patient_ref, info.body_site, study, series, capture_id),
            )
            if cur.rowcount != 1:
                raise StorageError(
                    f"Capture {capture_id} was handed to sending already; its details stay."
                )
            self._audit(conn, capture_id, actor, "details", "patient ID and body site set")

        self._write(body, "The photo's details")
        sidecar = record.image_path.with_suffix(".json")
        payload = {"id": capture_id, "created_utc": record.created_utc, "info": info.to_json_dict()}
        try:
            atomic_write_bytes(
                sidecar, json.dumps(payload, allow_nan=True, sort_keys=True).encode("utf-8")
            )
        except OSError as exc:
            logger.warning("sidecar of %s not updated: %s", capture_id, exc.strerror)
        return self.get(capture_id)

    def __enter__(self) -> CaptureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
