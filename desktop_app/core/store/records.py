"""What the store holds: capture info and records, the workflow states, capture ids, and the
strict field checks used when rows, sidecars and journals are read back."""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

APP_NAME = "skin-capture-assist"
HOME_ENV = "SKIN_CAPTURE_HOME"
IMAGES_DIR = "images"

CAPTURE_STATES = ("captured", "accepted", "rejected", "overridden", "queued", "submitted", "failed")
CAPTURE_MODES = ("staff", "kiosk")
REVIEW_ACTIONS = ("override", "confirm_reject")
#: Training label given to a review decision when the reviewer gave no 1-5 rating.
DECISION_RATING = {"override": 4, "confirm_reject": 2}
MISSING_IMAGE_PROBLEM = "image file missing"
ID_PATTERN = re.compile(r"^c\d{8}T\d{12}-[0-9a-f]{8}$")


@dataclass(frozen=True)
class CaptureInfo:
    """What the app knows when a photo is taken."""

    mode: str  # "staff" | "kiosk"
    operator: str
    patient_ref: str  # patient or encounter identifier ("" allowed in kiosk before entry)
    body_site: str
    note: str
    score: float
    threshold: float
    model_version: str
    reasons: dict[str, float]
    accepted: bool  # score >= threshold
    source: str  # "camera:0", "hotfolder:/path", "demo", "replay:..."

    def to_json_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json_dict(cls, raw: Mapping[str, Any]) -> CaptureInfo:
        """Strictly parse a dict written by :meth:`to_json_dict`; raises ValueError if damaged."""
        try:
            reasons_raw = raw["reasons"]
            if not isinstance(reasons_raw, dict):
                raise ValueError("reasons is not a mapping")
            info = cls(
                mode=req_str(raw["mode"], "mode"),
                operator=req_str(raw["operator"], "operator"),
                patient_ref=req_str(raw["patient_ref"], "patient_ref"),
                body_site=req_str(raw["body_site"], "body_site"),
                note=req_str(raw["note"], "note"),
                score=req_float(raw["score"], "score"),
                threshold=req_float(raw["threshold"], "threshold"),
                model_version=req_str(raw["model_version"], "model_version"),
                reasons={str(k): req_float(v, f"reason {k}") for k, v in reasons_raw.items()},
                accepted=bool(raw["accepted"]),
                source=req_str(raw["source"], "source"),
            )
        except KeyError as exc:
            raise ValueError(f"missing field {exc.args[0]}") from exc
        if info.mode not in CAPTURE_MODES:
            raise ValueError(f"unknown mode {info.mode!r}")
        return info


@dataclass(frozen=True)
class CaptureRecord:
    """One stored capture: its row, with the image path resolved."""

    id: str
    created_utc: str
    image_path: Path
    info: CaptureInfo
    state: str
    reviewer: str | None
    reviewed_utc: str | None
    review_reason: str | None
    submission_attempts: int
    last_error: str | None
    submitted_utc: str | None
    remote_uid: str | None
    # Additions beyond the agreed API (all defaulted):
    review_action: str | None = None
    review_rating: int | None = None
    next_attempt_utc: str | None = None
    study_uid: str = ""
    series_uid: str = ""
    sop_instance_uid: str = ""
    problem: str | None = None  # e.g. "image file missing"; such captures are never submitted


@dataclass(frozen=True)
class DamagedRow:
    """A row that could not be read back (reported, skipped, never fatal)."""

    rowid: int
    capture_id: str | None
    reason: str


@dataclass
class StartupReport:
    """What reconciliation of database and files found when the store was opened."""

    recovered: list[str] = field(default_factory=list)  # images without a row, now "captured"
    missing_images: list[str] = field(default_factory=list)  # rows whose image is gone
    damaged_rows: list[DamagedRow] = field(default_factory=list)
    temp_files_removed: int = 0
    deletions_completed: int = 0  # files of deleted captures removed after an interrupted delete
    restored: list[str] = field(default_factory=list)  # recovered with state from their journal
    database_rebuilt_from: Path | None = None  # damaged database file moved aside

    @property
    def clean(self) -> bool:
        return not (
            self.recovered
            or self.missing_images
            or self.damaged_rows
            or self.database_rebuilt_from is not None
        )


def storable_text(text: str) -> str:
    """``text`` as valid UTF-8 for SQLite and JSON: undecodable bytes of a file name (Python's
    surrogate escapes, e.g. a Latin-1 name on a UTF-8 system) become visible ``\\xNN``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # lone surrogates that are not escaped bytes
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def storable_info(info: CaptureInfo) -> CaptureInfo:
    """``info`` with every text field made storable (:func:`storable_text`)."""
    changes: dict[str, Any] = {
        f.name: storable_text(value)
        for f in dataclasses.fields(info)
        if isinstance(value := getattr(info, f.name), str) and storable_text(value) != value
    }
    reasons = {storable_text(k): v for k, v in info.reasons.items()}
    if reasons != info.reasons:
        changes["reasons"] = reasons
    return dataclasses.replace(info, **changes) if changes else info


def default_store_root() -> Path:
    """``$SKIN_CAPTURE_HOME/captures`` if set, else platformdirs' user data dir + ``captures``."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home) / "captures"
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME)) / "captures"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def new_capture_id(now: datetime | None = None) -> str:
    """Time-ordered, collision-resistant, file-name-safe id.

    Example: ``c20250101T120000123456-1a2b3c4d``.
    """
    now = now or datetime.now(UTC)
    return f"c{now:%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}"


def has_image(sidecar: Path) -> bool:
    return sidecar.with_suffix(".jpg").exists() or sidecar.with_suffix(".png").exists()


def created_from_id(capture_id: str) -> str:
    try:
        stamp = datetime.strptime(capture_id[1:21], "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)
    except ValueError:
        return utc_now()
    return stamp.isoformat(timespec="microseconds")


def nan_if_null(value: Any) -> Any:
    # SQLite stores NaN as NULL; an unknown score (recovered capture, model error) reads back NaN.
    return float("nan") if value is None else value


def req_str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} is not text ({type(value).__name__})")
    return value


def opt_str(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {type(value).__name__}")
    return value


def req_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} is not a number ({type(value).__name__})")
    return float(value)


def req_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} is not an integer ({type(value).__name__})")
    return value


def safe_id(row: sqlite3.Row) -> str | None:
    try:
        value = row["id"]
    except (IndexError, KeyError):
        return None
    return value if isinstance(value, str) else None
