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
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import errno
import io
import json
import logging
import os
import re
import secrets
import shutil
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from PIL import Image

from desktop_app.core.image_io import ImageLoadError, decode_rgb
from desktop_app.core.model_meta import REASON_NAMES_V1

logger = logging.getLogger(__name__)

APP_NAME = "skin-capture-assist"
HOME_ENV = "SKIN_CAPTURE_HOME"
SCHEMA_VERSION = 1
DB_NAME = "captures.sqlite3"
IMAGES_DIR = "images"
TEMP_PREFIX = ".tmp-"
JPEG_QUALITY = 95
RESERVE_NAME = "space-reserve.bin"
_T = TypeVar("_T")

CAPTURE_STATES = ("captured", "accepted", "rejected", "overridden", "queued", "submitted", "failed")
CAPTURE_MODES = ("staff", "kiosk")
REVIEW_ACTIONS = ("override", "confirm_reject")
#: Training label given to a review decision when the reviewer gave no 1-5 rating.
DECISION_RATING = {"override": 4, "confirm_reject": 2}
MISSING_IMAGE_PROBLEM = "image file missing"

# EXIF kept in stored originals: an allow-list of orientation, exposure and colour tags (what a
# reviewer or a quality model can use). Everything else goes: text fields that may hold a name,
# date of birth or record number (ImageDescription, XP* tags, UserComment, Artist, Copyright,
# DocumentName, HostComputer), dates, GPS, serial numbers, maker notes, thumbnails.
_EXIF_SUB_IFD = 0x8769
_EXIF_KEEP_IFD0 = frozenset(
    {
        0x0112,  # Orientation
        0x011A,  # XResolution
        0x011B,  # YResolution
        0x0128,  # ResolutionUnit
        0x0213,  # YCbCrPositioning
    }
)
_EXIF_KEEP_SUB = frozenset(
    {
        0x829A,  # ExposureTime
        0x829D,  # FNumber
        0x8822,  # ExposureProgram
        0x8827,  # ISOSpeedRatings
        0x9000,  # ExifVersion
        0x9101,  # ComponentsConfiguration
        0x9201,  # ShutterSpeedValue
        0x9202,  # ApertureValue
        0x9203,  # BrightnessValue
        0x9204,  # ExposureBiasValue
        0x9205,  # MaxApertureValue
        0x9207,  # MeteringMode
        0x9208,  # LightSource
        0x9209,  # Flash
        0x920A,  # FocalLength
        0xA001,  # ColorSpace
        0xA002,  # PixelXDimension
        0xA003,  # PixelYDimension
        0xA217,  # SensingMethod
        0xA402,  # ExposureMode
        0xA403,  # WhiteBalance
        0xA404,  # DigitalZoomRatio
        0xA405,  # FocalLengthIn35mmFilm
        0xA406,  # SceneCaptureType
        0xA407,  # GainControl
        0xA408,  # Contrast
        0xA409,  # Saturation
        0xA40A,  # Sharpness
        0xA500,  # Gamma
    }
)
_ID_PATTERN = re.compile(r"^c\d{8}T\d{12}-[0-9a-f]{8}$")
JOURNAL_SUFFIX = ".jsonl"
# The workflow columns a state journal line records, with their types (restored on rebuild).
_JOURNAL_FIELDS: dict[str, type] = {
    "state": str,
    "reviewer": str,
    "reviewed_utc": str,
    "review_action": str,
    "review_reason": str,
    "review_rating": int,
    "submission_attempts": int,
    "last_error": str,
    "last_attempt_utc": str,
    "next_attempt_utc": str,
    "submitted_utc": str,
    "remote_uid": str,
}
_NOT_NULL_JOURNAL_FIELDS = frozenset({"state", "submission_attempts"})
_SENDABLE_STATES = frozenset({"accepted", "overridden", "queued"})


class StorageError(RuntimeError):
    """Saving or reading a capture failed; the message is written for clinic staff."""


class DiskFullError(StorageError):
    """The disk is full (and the space reserve, where allowed, did not help)."""


StoreUnavailableReason = Literal["locked", "read_only", "io_error", "unavailable"]


class StoreUnavailableError(StorageError):
    """The capture database is not damaged but cannot be used now: another program holds it
    locked, the folder is read-only, or the disk reported an I/O error. Nothing was changed (in
    particular the database was not rebuilt); trying again once the cause is gone is safe.

    ``reason`` is ``locked`` | ``read_only`` | ``io_error`` | ``unavailable``.
    """

    def __init__(self, message: str, reason: StoreUnavailableReason) -> None:
        super().__init__(message)
        self.reason: StoreUnavailableReason = reason


class _DatabaseCorrupt(sqlite3.DatabaseError):
    """The integrity check failed (raised by the store itself; real corruption)."""


# SQLite primary result codes (extended codes carry these in their low byte).
_SQLITE_PERM = 3
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26


def _sqlite_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_database_corruption(exc: BaseException) -> bool:
    """True only for real damage to the database file: "database disk image is malformed",
    "file is not a database", or a failed integrity check. Locks, read-only folders and I/O
    errors are not corruption (a rebuild would throw away a healthy database's workflow state)."""
    if isinstance(exc, _DatabaseCorrupt):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = _sqlite_code(exc)
    if code is not None:
        return code in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def store_unavailable(
    exc: BaseException, root: Path, what: str | None = None
) -> StoreUnavailableError:
    """A plain-language :class:`StoreUnavailableError` for a SQLite or OS error that is not
    corruption (the caller may try again later). ``what`` names the change that failed, if
    any ("The review")."""
    code = _sqlite_code(exc)
    text = str(exc).lower()
    errno_ = getattr(exc, "errno", None)
    reason: StoreUnavailableReason
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED) or "locked" in text or "busy" in text:
        reason = "locked"
        body = (
            f"The capture database in {root} is in use by another program (it stayed locked). "
            "Close any other program that has it open (a database viewer, a backup or sync "
            "tool, another copy of this app), then try again."
        )
    elif (
        code in (_SQLITE_READONLY, _SQLITE_PERM)
        or "readonly" in text
        or "read-only" in text
        or errno_ in (errno.EACCES, errno.EPERM, errno.EROFS)
    ):
        reason = "read_only"
        body = (
            f"The capture folder is read-only: {root}. Ask IT to make it writable for this user "
            "(or choose another data folder), then try again."
        )
    elif code == _SQLITE_IOERR or "i/o error" in text or errno_ == errno.EIO:
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
                mode=_req_str(raw["mode"], "mode"),
                operator=_req_str(raw["operator"], "operator"),
                patient_ref=_req_str(raw["patient_ref"], "patient_ref"),
                body_site=_req_str(raw["body_site"], "body_site"),
                note=_req_str(raw["note"], "note"),
                score=_req_float(raw["score"], "score"),
                threshold=_req_float(raw["threshold"], "threshold"),
                model_version=_req_str(raw["model_version"], "model_version"),
                reasons={str(k): _req_float(v, f"reason {k}") for k, v in reasons_raw.items()},
                accepted=bool(raw["accepted"]),
                source=_req_str(raw["source"], "source"),
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


# Words and phrases in a reviewer's free-text reason that name a reason column.
REASON_PHRASES: dict[str, tuple[str, ...]] = {
    "blur": ("blur", "blurry", "blurred", "out of focus", "unsharp", "not sharp", "soft focus"),
    "motion": ("motion", "shake", "shaky", "shaken", "camera moved", "movement"),
    "dark": ("dark", "underexposed", "under-exposed", "too dim", "dim"),
    "bright": ("bright", "overexposed", "over-exposed", "washed out", "burnt out", "blown"),
    "glare": ("glare", "reflection", "shiny", "specular", "sheen", "flash spot"),
    "colour": ("colour", "color", "colour cast", "color cast", "tint", "white balance"),
    "framing": ("framing", "off-centre", "off-center", "off centre", "off center", "cut off"),
    "distance": ("distance", "too far", "too small", "far away", "move closer"),
    "noise": ("noise", "noisy", "grainy", "grain"),
    "resolution": ("resolution", "pixelated", "low res"),
    "compression": ("compression", "compressed", "jpeg", "artefacts", "artifacts", "blocky"),
    "obstruction": ("obstruction", "obstructed", "covered", "hair", "finger", "sleeve"),
}


def reasons_named_in(text: str) -> set[str]:
    """The reason names that a reviewer's free text names (whole words or phrases, any case)."""
    lowered = " ".join(re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower()))
    padded = f" {lowered} "
    return {
        name
        for name, phrases in REASON_PHRASES.items()
        if any(f" {phrase} " in padded for phrase in phrases)
    }


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


# --------------------------------------------------------------------------------------------
# Durable file writing


def fsync_dir(directory: Path) -> None:
    """Make a rename/creation/unlink in ``directory`` durable (POSIX; a no-op on Windows,
    where directories cannot be opened for fsync and NTFS journals the rename itself)."""
    if os.name == "nt":
        return
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) with mode 0700 on the folders this call creates."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            d.mkdir(mode=0o700)
        os.chmod(d, 0o700)
        fsync_dir(d.parent)


def atomic_write_bytes(target: Path, data: bytes, *, sync_dir: bool = True) -> None:
    """Write ``data`` to ``target`` via temp file + fsync + rename (+ fsync of the folder).

    On any failure the temporary file is removed and the original ``OSError`` propagates; the
    target is either untouched or completely written.
    """
    tmp = target.with_name(f"{TEMP_PREFIX}{target.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(target.parent)


def append_journal_lines(path: Path, entries: Iterable[Mapping[str, Any]]) -> None:
    """Append JSON lines to a state journal and fsync it (and its folder when the journal is
    new). Raises OSError."""
    line = b"".join(
        (json.dumps(entry, sort_keys=True, allow_nan=True) + "\n").encode("utf-8")
        for entry in entries
    )
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0), 0o600)
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        fsync_dir(path.parent)


def read_journal(
    path: Path,
) -> tuple[builtins.list[dict[str, Any]], dict[str, Any] | None]:
    """(audit entries, workflow state after the last one) from a state journal; ([], None) if
    there is none. Lines that do not parse (a torn last line after a crash) are skipped."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], None
    except OSError as exc:
        logger.error("state journal %s unreadable: %s", path.name, exc.strerror)
        return [], None
    entries: builtins.list[dict[str, Any]] = []
    state: dict[str, Any] | None = None
    for number, line in enumerate(raw.splitlines(), 1):
        try:
            entry = json.loads(line)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
            clean = {k: _req_str(entry[k], k) for k in ("utc", "actor", "action", "detail")}
            fields = entry.get("set")
            if fields is not None:
                state = _journal_state(fields)
        except (ValueError, KeyError, TypeError) as exc:
            logger.warning("state journal %s: line %d skipped (%s)", path.name, number, exc)
            continue
        entries.append(clean)
    return entries, state


def _journal_state(fields: Any) -> dict[str, Any]:
    """The workflow columns of one journal line, type-checked; raises ValueError."""
    if not isinstance(fields, dict):
        raise ValueError("state is not an object")
    state: dict[str, Any] = {}
    for name, kind in _JOURNAL_FIELDS.items():
        value = fields.get(name)
        if value is None and name not in _NOT_NULL_JOURNAL_FIELDS:
            state[name] = None
        elif kind is int:
            state[name] = _req_int(value, name)
        else:
            state[name] = _req_str(value, name)
    if state["state"] not in CAPTURE_STATES:
        raise ValueError(f"unknown state {state['state']!r}")
    return state


def os_error_message(exc: OSError, what: str, where: Path) -> str:
    """Plain-language message for a failed disk operation."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"The disk is full: {what} could not be saved in {where}. Free some disk space "
            "(or ask IT), then try again. Nothing was half-saved."
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"No permission to write in {where}: {what} could not be saved. Please call IT."
    return f"{what} could not be saved in {where}: {exc.strerror or exc}. Please call IT."


# --------------------------------------------------------------------------------------------
# Metadata stripping


def encode_jpeg(image_rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """Encode uint8 RGB ``[H, W, 3]`` as a metadata-free JPEG."""
    buf = io.BytesIO()
    Image.fromarray(image_rgb, "RGB").save(buf, "JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def encode_png(image_rgb: np.ndarray) -> bytes:
    """Encode uint8 RGB ``[H, W, 3]`` as a metadata-free (lossless) PNG."""
    buf = io.BytesIO()
    Image.fromarray(image_rgb, "RGB").save(buf, "PNG", compress_level=3)
    return buf.getvalue()


def _clean_exif(payload: bytes) -> bytes:
    """The APP1 Exif payload rebuilt from the allow-listed tags only (``_EXIF_KEEP_*``)."""
    exif = Image.Exif()
    exif.load(payload)
    kept = Image.Exif()
    for tag in _EXIF_KEEP_IFD0:
        if tag in exif:
            kept[tag] = exif[tag]
    if _EXIF_SUB_IFD in exif:
        source = exif.get_ifd(_EXIF_SUB_IFD)
        wanted = {tag: source[tag] for tag in _EXIF_KEEP_SUB if tag in source}
        if wanted:
            kept.get_ifd(_EXIF_SUB_IFD).update(wanted)
    cleaned = kept.tobytes()
    return cleaned if cleaned.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + cleaned


def _clean_app0(payload: bytes) -> bytes | None:
    """A JFIF header without its thumbnail; None for anything else (JFXX thumbnails...)."""
    if not payload.startswith(b"JFIF\x00") or len(payload) < 14:
        return None
    return payload[:12] + b"\x00\x00"  # identifier, version, units, densities; no thumbnail


def _clean_exif_or_raise(payload: bytes) -> bytes:
    """:func:`_clean_exif`, with any parser failure reported as ValueError.

    Found by fuzzing: Pillow's Exif parser raises SyntaxError, struct.error, KeyError, ... on
    damaged Exif blocks that its JPEG decoder itself tolerates.
    """
    try:
        return _clean_exif(payload)
    except Exception as exc:  # see docstring; the caller falls back to re-encoding
        raise ValueError(f"unreadable Exif block ({type(exc).__name__}: {exc})") from exc


def strip_jpeg_metadata(data: bytes) -> bytes:
    """Losslessly remove location/identity metadata from a JPEG file.

    Keeps JFIF (APP0, without its thumbnail), an allow-listed Exif (APP1: orientation, exposure
    and colour tags only), ICC profiles (APP2) and Adobe (APP14, colour transform); drops JFXX
    thumbnails, XMP, IPTC/Photoshop, comments, other APPn segments and
    everything after the end-of-image marker (multi-picture trailers carry their own Exif).
    The entropy-coded data is copied unchanged. Raises ValueError if the structure is not valid.
    """
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    out = bytearray(b"\xff\xd8")
    pos = 2
    n = len(data)
    in_scan = False
    while pos < n:
        if in_scan:
            # Entropy-coded data: 0xFF is stuffed as FF00; FFD0-FFD7 are restart markers.
            start = pos
            while True:
                idx = data.find(b"\xff", pos)
                if idx < 0 or idx + 1 >= n:
                    raise ValueError("scan data is truncated")
                nxt = data[idx + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
                    pos = idx + (1 if nxt == 0xFF else 2)
                    continue
                break
            out += data[start:idx]
            pos = idx
            in_scan = False
        if data[pos] != 0xFF:
            raise ValueError(f"expected a marker at byte {pos}")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            raise ValueError("truncated marker")
        marker = data[pos]
        pos += 1
        if marker == 0xD9:  # EOI: drop any trailer
            out += b"\xff\xd9"
            return bytes(out)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            out += bytes((0xFF, marker))
            continue
        if pos + 2 > n:
            raise ValueError("truncated segment length")
        (length,) = struct.unpack(">H", data[pos : pos + 2])
        if length < 2 or pos + length > n:
            raise ValueError("segment runs past the end of the file")
        payload = data[pos + 2 : pos + length]
        pos += length
        keep: bytes | None
        if marker == 0xE0:
            keep = _clean_app0(payload)
        elif marker == 0xEE:
            keep = payload
        elif marker == 0xE1:
            keep = _clean_exif_or_raise(payload) if payload.startswith(b"Exif\x00\x00") else None
        elif marker == 0xE2:
            keep = payload if payload.startswith(b"ICC_PROFILE\x00") else None
        elif 0xE3 <= marker <= 0xEF or marker == 0xFE:
            keep = None
        else:
            keep = payload
        if keep is not None:
            if len(keep) + 2 > 0xFFFF:
                raise ValueError("cleaned segment too large")
            out += bytes((0xFF, marker)) + struct.pack(">H", len(keep) + 2) + keep
        if marker == 0xDA:
            in_scan = True
    raise ValueError("no end-of-image marker")


def prepare_image_bytes(image_rgb: np.ndarray, encoded: bytes | None) -> tuple[bytes, str]:
    """Choose the bytes to store and their suffix.

    * no ``encoded``: JPEG q95 of ``image_rgb`` (no metadata at all);
    * an original JPEG: kept bit-exact in its pixels, metadata stripped (see
      :func:`strip_jpeg_metadata`); if that fails or the result does not decode to exactly
      ``image_rgb``, the pixels are re-encoded as JPEG q95;
    * any other original (PNG, TIFF, WebP, BMP): stored as lossless PNG of ``image_rgb`` (the
      decoded, orientation-corrected pixels), which carries no metadata.
    """
    if encoded is None:
        return encode_jpeg(image_rgb), ".jpg"
    if encoded[:3] == b"\xff\xd8\xff":
        try:
            stripped = strip_jpeg_metadata(encoded)
            if np.array_equal(decode_rgb(stripped), image_rgb):
                return stripped, ".jpg"
            logger.warning("stripped JPEG decodes differently; storing re-encoded pixels")
        except (ValueError, ImageLoadError) as exc:
            logger.warning("could not strip JPEG metadata losslessly (%s); re-encoding", exc)
        return encode_jpeg(image_rgb), ".jpg"
    return encode_png(image_rgb), ".png"


# --------------------------------------------------------------------------------------------
# The store

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


def derive_uids(capture_id: str, info: CaptureInfo, created_utc: str) -> tuple[str, str, str]:
    """Deterministic DICOM (study, series, SOP instance) UIDs for a capture.

    The instance UID depends only on the capture id, so a resend after a crash is the same
    instance to the server. Captures of one patient on one day share a study; one body site in
    one mode within that study shares a series. Without a patient reference the capture gets its
    own study. UIDs are ``2.25.<128-bit int>`` (ISO/IEC 9834-8 style, no registered root needed).
    """
    from hashlib import sha256

    def uid(*parts: str) -> str:
        digest = sha256("\x1f".join(("skin-capture-assist", *parts)).encode()).digest()
        return "2.25." + str(int.from_bytes(digest[:16], "big"))

    day = created_utc[:10]
    if info.patient_ref:
        study = uid("study", info.patient_ref, day)
        series = uid("series", info.patient_ref, day, info.body_site, info.mode)
    else:
        study = uid("study", capture_id)
        series = uid("series", capture_id)
    return study, series, uid("instance", capture_id)


class CaptureStore:
    """Durable local store of captures (SQLite + image files). Thread-safe.

    Opening the store reconciles database and files; see :attr:`startup_report`.
    ``reserve_bytes`` of disk are kept allocated (``space-reserve.bin``) and released when the
    disk is full, so that deletions and state changes still work then.
    """

    reserve_bytes: int = 2 * 1024 * 1024
    #: How long a statement waits for another program's lock before giving up (SQLite busy
    #: timeout); then :class:`StoreUnavailableError` ("in use by another program").
    busy_timeout_s: float = 30.0

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

    # ---- database opening, schema, reconciliation -----------------------------------------

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
            self._migrate(conn)
            # for CaptureStore.add(dedupe=True); an index only (older versions ignore it)
            conn.execute("CREATE INDEX IF NOT EXISTS captures_sha256 ON captures(image_sha256)")
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise _DatabaseCorrupt(f"quick_check: {check}")
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
        if _is_disk_full(exc) or getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
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

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
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

    def _reconcile(self) -> None:
        """Bring database and files into agreement (see module docstring)."""
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
                    damaged = DamagedRow(int(row["rowid"]), _safe_id(row), str(exc))
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
                    if cid not in known and cid not in report.recovered and not _has_image(sidecar):
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
                and _ID_PATTERN.match(p.stem)
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
        created = _created_from_id(capture_id)
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

    # ---- row mapping -----------------------------------------------------------------------

    def _row_to_record(self, row: sqlite3.Row) -> CaptureRecord:
        """Map a row to a record; raises ValueError describing the damage if it is inconsistent."""
        try:
            capture_id = row["id"]
            if not isinstance(capture_id, str) or not _ID_PATTERN.match(capture_id):
                raise ValueError(f"invalid id {capture_id!r}")
            state = row["state"]
            if state not in CAPTURE_STATES:
                raise ValueError(f"unknown state {state!r}")
            reasons = json.loads(_req_str(row["reasons_json"], "reasons"))
            info = CaptureInfo.from_json_dict(
                {
                    "mode": row["mode"],
                    "operator": row["operator"],
                    "patient_ref": row["patient_ref"],
                    "body_site": row["body_site"],
                    "note": row["note"],
                    "score": _nan_if_null(row["score"]),
                    "threshold": _nan_if_null(row["threshold"]),
                    "model_version": row["model_version"],
                    "reasons": reasons,
                    "accepted": _req_int(row["accepted"], "accepted"),
                    "source": row["source"],
                }
            )
            rel = _req_str(row["image_relpath"], "image path")
            image_path = (self.root / rel).resolve()
            if not image_path.is_relative_to(self.images_dir.resolve()):
                raise ValueError("image path points outside the store")
            rating = row["review_rating"]
            return CaptureRecord(
                id=capture_id,
                created_utc=_req_str(row["created_utc"], "created_utc"),
                image_path=image_path,
                info=info,
                state=state,
                reviewer=_opt_str(row["reviewer"]),
                reviewed_utc=_opt_str(row["reviewed_utc"]),
                review_reason=_opt_str(row["review_reason"]),
                submission_attempts=_req_int(row["submission_attempts"], "attempts"),
                last_error=_opt_str(row["last_error"]),
                submitted_utc=_opt_str(row["submitted_utc"]),
                remote_uid=_opt_str(row["remote_uid"]),
                review_action=_opt_str(row["review_action"]),
                review_rating=None if rating is None else _req_int(rating, "rating"),
                next_attempt_utc=_opt_str(row["next_attempt_utc"]),
                study_uid=_req_str(row["study_uid"], "study uid"),
                series_uid=_req_str(row["series_uid"], "series uid"),
                sop_instance_uid=_req_str(row["sop_instance_uid"], "instance uid"),
                problem=_opt_str(row["problem"]),
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
                if _is_disk_full(exc):
                    if use_reserve and attempt == 1 and self._release_reserve():
                        continue
                    raise DiskFullError(
                        f"The disk is full: {what} could not be saved in {self.root}. Free some "
                        "disk space (or ask IT), then try again. Nothing was half-saved."
                    ) from exc
                if not is_database_corruption(exc) and _sqlite_code(exc) in (
                    _SQLITE_BUSY,
                    _SQLITE_LOCKED,
                    _SQLITE_READONLY,
                    _SQLITE_PERM,
                    _SQLITE_IOERR,
                    _SQLITE_CANTOPEN,
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
            f"SELECT image_relpath, {', '.join(_JOURNAL_FIELDS)} FROM captures WHERE id=?",
            (capture_id,),
        ).fetchone()
        if row is None:
            return entry
        entry["set"] = {name: row[name] for name in _JOURNAL_FIELDS}
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
                logger.error("skipping damaged capture row %s: %s", _safe_id(row), exc)
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
                damaged.append(DamagedRow(int(row["rowid"]), _safe_id(row), str(exc)))
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

    # ---- submission bookkeeping (used by core.submission) ------------------------------------

    def _update(self, capture_id: str, actor: str, action: str, detail: str, **fields: Any) -> None:
        cols = ", ".join(f"{k}=?" for k in fields)

        def body(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                f"UPDATE captures SET {cols} WHERE id=?", (*fields.values(), capture_id)
            )
            if cur.rowcount != 1:
                raise KeyError(capture_id)
            self._audit(conn, capture_id, actor, action, detail)

        self._write(body, "The submission state")

    def claim_for_sending(
        self, capture_id: str, target: str, now_utc: str, lease_until_utc: str
    ) -> CaptureRecord | None:
        """Atomically take a due queued capture for one send attempt; None if it is not due or
        another queue (another process on this data home) took it first.

        The claim counts the attempt and leases the capture until ``lease_until_utc`` (ISO UTC):
        no other queue picks it before then. A crash during the send leaves the lease to expire,
        and the capture is retried; one that was delivered is marked submitted by the claimant.
        """

        def body(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE captures SET submission_attempts = submission_attempts + 1, "
                "last_attempt_utc=?, next_attempt_utc=? WHERE id=? AND state='queued' AND "
                "problem IS NULL AND (next_attempt_utc IS NULL OR next_attempt_utc <= ?)",
                (now_utc, lease_until_utc, capture_id, now_utc),
            )
            if cur.rowcount != 1:
                return False
            row = conn.execute(
                "SELECT submission_attempts FROM captures WHERE id=?", (capture_id,)
            ).fetchone()
            self._audit(conn, capture_id, "system", "attempt", f"{target} #{row[0]}")
            return True

        if not self._write(body, "The submission state"):
            return None
        return self.get(capture_id)

    def release_claims(self) -> int:
        """Make every queued capture due now (claims and back-offs of an earlier run); returns
        how many. Only for the one process that holds the data-home lock, at start-up: any
        claim it finds belongs to a run that died during a send."""

        def body(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "UPDATE captures SET next_attempt_utc=NULL "
                "WHERE state='queued' AND next_attempt_utc IS NOT NULL"
            )
            return int(cur.rowcount)

        return self._write(body, "The submission state")

    def _due_ids(self, now_utc: str, limit: int | None) -> builtins.list[str]:
        query = (
            "SELECT id FROM captures WHERE state='queued' AND problem IS NULL AND "
            "(next_attempt_utc IS NULL OR next_attempt_utc <= ?) "
            "ORDER BY created_utc"  # oldest due capture first
        )
        params: tuple[Any, ...] = (now_utc,)
        if limit is not None:
            query += " LIMIT ?"
            params = (now_utc, int(limit))
        with self._lock:
            self._check_open()
            return [str(r[0]) for r in self._conn.execute(query, params)]

    def _queue_summary(self) -> tuple[dict[str, int], str | None, str | None]:
        with self._lock:
            self._check_open()
            counts = {
                str(s): int(n)
                for s, n in self._conn.execute(
                    "SELECT state, COUNT(*) FROM captures GROUP BY state"
                )
            }
            err = self._conn.execute(
                "SELECT last_error FROM captures WHERE state IN ('queued','failed') AND "
                "last_error IS NOT NULL ORDER BY last_attempt_utc DESC LIMIT 1"
            ).fetchone()
            nxt = self._conn.execute(
                "SELECT MIN(next_attempt_utc) FROM captures WHERE state='queued'"
            ).fetchone()
        return counts, (err[0] if err else None), (nxt[0] if nxt else None)

    # ---- export ------------------------------------------------------------------------------

    def export_training_csv(self, out_csv: Path, ids: Iterable[str] | None = None) -> int:
        """Write reviewed captures in the training pipeline's CSV format; returns rows written.

        Columns: ``image`` (relative to the CSV; images are copied to ``images/`` beside it),
        ``rater_1`` (the reviewer's 1-5 rating, else override -> 4, confirm_reject -> 2),
        ``cohort`` (``app-<mode>``), ``split`` (``review``), ``source_path`` (``capture:<id>``),
        and one column per reason name: 1 where the reviewer's reason text names it
        (:func:`reasons_named_in`), else blank (unknown).
        Captures without a review decision carry no human label and are skipped.
        """
        import csv

        out_csv = Path(out_csv)
        wanted = set(ids) if ids is not None else None
        records = [
            r
            for r in reversed(self.list())
            if r.review_action in DECISION_RATING and (wanted is None or r.id in wanted)
        ]
        reason_names = list(REASON_NAMES_V1)
        for r in records:
            reason_names += [k for k in r.info.reasons if k not in reason_names]
        image_dir = out_csv.parent / "images"
        image_dir.mkdir(parents=True, exist_ok=True)
        written = 0
        tmp_csv = out_csv.with_name(f"{TEMP_PREFIX}{out_csv.name}")
        with tmp_csv.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["image", "rater_1", "cohort", "split", "source_path", *reason_names])
            for r in records:
                dest = image_dir / r.image_path.name
                try:
                    shutil.copyfile(r.image_path, dest)
                except OSError as exc:
                    logger.warning("export: capture %s skipped (%s)", r.id, exc)
                    continue
                rating = r.review_rating or DECISION_RATING[str(r.review_action)]
                named = reasons_named_in(r.review_reason or "")
                writer.writerow(
                    [
                        f"images/{dest.name}",
                        rating,
                        f"app-{r.info.mode}",
                        "review",
                        f"capture:{r.id}",
                        # 1 where the reviewer named it; blank (unknown), never 0: free text
                        # that does not name a fault does not say the fault is absent
                        *("1" if name in named else "" for name in reason_names),
                    ]
                )
                written += 1
        os.replace(tmp_csv, out_csv)
        return written

    # ---- lifecycle ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("The capture store is closed.")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self._conn.close()

    def __enter__(self) -> CaptureStore:
        return self

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

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# helpers


def _split_sql(script: str) -> builtins.list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _is_disk_full(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code == 13 or "disk is full" in str(exc) or "database or disk is full" in str(exc)


def _safe_id(row: sqlite3.Row) -> str | None:
    try:
        value = row["id"]
    except (IndexError, KeyError):
        return None
    return value if isinstance(value, str) else None


def _has_image(sidecar: Path) -> bool:
    return sidecar.with_suffix(".jpg").exists() or sidecar.with_suffix(".png").exists()


def _created_from_id(capture_id: str) -> str:
    try:
        stamp = datetime.strptime(capture_id[1:21], "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)
    except ValueError:
        return utc_now()
    return stamp.isoformat(timespec="microseconds")


def _nan_if_null(value: Any) -> Any:
    # SQLite stores NaN as NULL; an unknown score (recovered capture, model error) reads back NaN.
    return float("nan") if value is None else value


def _req_str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} is not text ({type(value).__name__})")
    return value


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {type(value).__name__}")
    return value


def _req_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} is not a number ({type(value).__name__})")
    return float(value)


def _req_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} is not an integer ({type(value).__name__})")
    return value
