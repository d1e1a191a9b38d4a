"""Start-up reconciliation of database and files: temp files removed, missing images noted,
images without a row recovered from their sidecar and state journal, deletions completed."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from desktop_app.core.store.database import StoreDatabase
from desktop_app.core.store.durable import TEMP_PREFIX
from desktop_app.core.store.errors import StorageError, StoreUnavailableError
from desktop_app.core.store.journal import JOURNAL_SUFFIX, read_journal
from desktop_app.core.store.records import (
    ID_PATTERN,
    MISSING_IMAGE_PROBLEM,
    CaptureInfo,
    DamagedRow,
    created_from_id,
    has_image,
    safe_id,
)

logger = logging.getLogger(__name__)

_SENDABLE_STATES = frozenset({"accepted", "overridden", "queued"})


class StoreReconciler(StoreDatabase):
    """Brings database and files into agreement when the store is opened."""

    def _reconcile(self) -> None:
        """Bring database and files into agreement (see :mod:`desktop_app.core.store.store`)."""
        report = self.startup_report
        with self._lock:
            for tmp in self.images_dir.rglob(f"{TEMP_PREFIX}*"):
                with contextlib.suppress(OSError):
                    tmp.unlink()
                    report.temp_files_removed += 1
            deleted = {
                r[0]
                for r in self._conn.execute("SELECT capture_id FROM audit WHERE action='delete'")
            }
            known: dict[str, str] = {}
            for row in self._conn.execute("SELECT rowid, * FROM captures").fetchall():
                try:
                    record = self._row_to_record(row)
                except ValueError as exc:
                    damaged = DamagedRow(int(row["rowid"]), safe_id(row), str(exc))
                    report.damaged_rows.append(damaged)
                    logger.error("damaged capture row %s: %s", damaged.capture_id, exc)
                    if damaged.capture_id:
                        known[damaged.capture_id] = "damaged"
                    continue
                known[record.id] = record.state
                exists = record.image_path.is_file()
                if not exists and record.problem != MISSING_IMAGE_PROBLEM:
                    report.missing_images.append(record.id)
                    logger.error("capture %s: image %s is missing", record.id, record.image_path)
                    self._try_set_problem(record.id, MISSING_IMAGE_PROBLEM)
                elif not exists:
                    report.missing_images.append(record.id)
                elif exists and record.problem == MISSING_IMAGE_PROBLEM:
                    self._try_set_problem(record.id, None)
            for image in sorted(self._iter_image_files()):
                capture_id = image.stem
                if capture_id in known:
                    continue
                if capture_id in deleted:
                    self._remove_capture_files(image)
                    report.deletions_completed += 1
                    continue
                try:
                    outcome = self._recover_orphan(image)
                except StoreUnavailableError:
                    raise
                except (StorageError, ValueError) as exc:
                    # e.g. disk full: the file stays, retried next start; one bad capture never
                    # stops the store from opening
                    logger.error("capture %s could not be recovered now: %s", capture_id, exc)
                    known[capture_id] = "unrecovered"
                    continue
                if outcome == "deleted":
                    report.deletions_completed += 1
                    continue
                report.recovered.append(capture_id)
                if outcome == "restored":
                    report.restored.append(capture_id)
            for pattern in ("*.json", f"*{JOURNAL_SUFFIX}"):
                for sidecar in self.images_dir.rglob(pattern):
                    cid = sidecar.stem
                    if cid not in known and cid not in report.recovered and not has_image(sidecar):
                        # Sidecar or journal without image: the image rename never happened (or
                        # the capture was deleted).
                        with contextlib.suppress(OSError):
                            sidecar.unlink()
        if not report.clean:
            logger.warning(
                "capture store reconciliation: %d recovered, %d missing images, %d damaged rows%s",
                len(report.recovered),
                len(report.missing_images),
                len(report.damaged_rows),
                ", database rebuilt" if report.database_rebuilt_from else "",
            )

    def _iter_image_files(self) -> Iterator[Path]:
        for p in self.images_dir.rglob("*"):
            if (
                p.suffix in (".jpg", ".png")
                and not p.name.startswith(TEMP_PREFIX)
                and ID_PATTERN.match(p.stem)
            ):
                yield p

    def _recover_orphan(self, image: Path) -> Literal["recovered", "restored", "deleted"]:
        """Insert the row of an image that has none, from its sidecar; with a state journal
        (the database was rebuilt) its workflow state and audit trail come back too."""
        capture_id = image.stem
        history, restored = read_journal(image.with_suffix(JOURNAL_SUFFIX))
        if history and history[-1]["action"] == "delete":
            logger.warning(
                "capture %s was deleted before the rebuild; removing its files", capture_id
            )
            self._remove_capture_files(image)
            return "deleted"
        sidecar = image.with_suffix(".json")
        info: CaptureInfo | None = None
        created = created_from_id(capture_id)
        try:
            raw = json.loads(sidecar.read_text("utf-8"))
            info = CaptureInfo.from_json_dict(raw["info"])
            created = str(raw.get("created_utc") or created)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("capture %s: sidecar unreadable (%s); details unknown", capture_id, exc)
        source_unknown = info is None
        if info is None:
            info = CaptureInfo(
                mode="staff",
                operator="",
                patient_ref="",
                body_site="",
                note="recovered: capture details were lost",
                score=float("nan"),
                threshold=float("nan"),
                model_version="",
                reasons={},
                accepted=False,
                source="recovered",
            )
        try:
            data = image.read_bytes()
        except OSError:
            data = b""
        if restored is not None and source_unknown and restored["state"] in _SENDABLE_STATES:
            # Without its details the capture must not be sent: a reviewer looks first.
            restored = {**restored, "state": "captured"}
        if restored is not None:
            logger.warning(
                "capture %s: image had no database row (database rebuilt); state %r and %d "
                "audit entries restored from its state journal",
                capture_id,
                restored["state"],
                len(history),
            )
            self._insert_row(
                capture_id,
                created,
                image,
                data,
                info,
                str(restored["state"]),
                "recovered",
                restored=restored,
                history=history,
                audit_detail="restored from the state journal",
            )
            return "restored"
        logger.warning(
            "capture %s: image %s had no database row (interrupted save); recovered as "
            "'captured' for review",
            capture_id,
            image,
        )
        self._insert_row(capture_id, created, image, data, info, "captured", "recovered")
        return "recovered"
