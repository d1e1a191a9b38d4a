"""Getting accepted captures to the record exactly once: targets and a persistent retry queue.

Exactly-once: every capture's DICOM SOP Instance UID (and its outbox file name) is derived from
the capture id and stored with the row before anything is sent. The attempt is recorded before
sending and ``submitted`` only after the target confirmed, so a crash in between leads to a resend
of the *same* instance, which the target stores once (Orthanc keeps one copy of a SOP Instance UID;
the outbox overwrites the same file names atomically).
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from desktop_app.core.credentials import redact_text, redact_url, url_has_credentials
from desktop_app.core.dicom_content import (
    Code,
    body_site_coding,
    check_lo,
    clean_lo,
    clean_text,
    person_name,
    study_id,
)
from desktop_app.core.store import (
    TEMP_PREFIX,
    CaptureRecord,
    CaptureStore,
    StorageError,
    atomic_write_bytes,
    default_store_root,
    ensure_private_dir,
    fsync_dir,
    os_error_message,
)
from desktop_app.core.submit_policy import submit_blocker

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

BASE_BACKOFF_S = 5.0
# How long a claimed capture is kept from other queues while one sends it (longer than any send:
# DICOMweb's overall deadline is well below this).
SEND_LEASE_S = 600.0
MAX_BACKOFF_S = 900.0

VL_PHOTOGRAPHIC_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.77.1.4"
PRIVATE_CREATOR = "SkinCaptureAssist 1"
PRIVATE_GROUP = 0x0011
# Private element offsets in block (0011,10xx):
PRIVATE_SCORE = 0x01  # FD quality score
PRIVATE_THRESHOLD = 0x02  # FD decision threshold
PRIVATE_MODEL_VERSION = 0x03  # LO
PRIVATE_DECISION = 0x04  # CS accepted | overridden
PRIVATE_REASONS = 0x05  # LT JSON {reason: probability}
PRIVATE_CAPTURE_ID = 0x06  # LO


class SubmissionError(RuntimeError):
    """Sending failed. ``transient``: worth retrying later (network, server busy or down)."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


class SubmissionRefused(StorageError):
    """The submit rule (``core.submit_policy``) forbids sending this capture; the message says
    why, for the person at the screen."""


class SubmissionTarget(Protocol):
    """Where accepted captures go. ``submit`` must be idempotent per capture id."""

    name: str
    # the target refuses photos without a patient or encounter reference (core.submit_policy)
    needs_patient_ref: bool

    def submit(self, record: CaptureRecord, image_path: Path) -> str:
        """Deliver one capture; return the remote id. Raise :class:`SubmissionError`."""
        ...

    def cancel_pending(self) -> None:
        """From another thread (app shutdown): make a send in progress give up now (a
        transient failure: the capture stays queued)."""
        ...


# --------------------------------------------------------------------------------------------
# Outbox folder


def capture_metadata(record: CaptureRecord) -> dict[str, Any]:
    """The JSON-able description of a capture that travels with it."""
    info = record.info
    return {
        "capture_id": record.id,
        "created_utc": record.created_utc,
        "mode": info.mode,
        "operator": info.operator,
        "patient_ref": info.patient_ref,
        "body_site": info.body_site,
        "note": info.note,
        "score": info.score,
        "threshold": info.threshold,
        "accepted_by_model": info.accepted,
        "model_version": info.model_version,
        "reasons": info.reasons,
        "source": info.source,
        "decision": "overridden" if record.review_action == "override" else "accepted",
        "reviewer": record.reviewer,
        "reviewed_utc": record.reviewed_utc,
        "review_reason": record.review_reason,
        "study_instance_uid": record.study_uid,
        "series_instance_uid": record.series_uid,
        "sop_instance_uid": record.sop_instance_uid,
    }


class OutboxTarget:
    """Default target: ``<folder>/<capture id>.<jpg|png>`` plus ``<capture id>.json``.

    Both are written atomically, image first; the JSON sidecar's presence means "delivered".
    Resending a capture rewrites the same two names, so a capture appears in the outbox once.
    """

    name = "outbox"
    needs_patient_ref = False

    def cancel_pending(self) -> None:
        """A local folder write is not interruptible, and is quick."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        # Temporary files left by an interrupted earlier run are not deliveries: remove them.
        if self.folder.is_dir():
            for stale in self.folder.glob(f"{TEMP_PREFIX}*"):
                with contextlib.suppress(OSError):
                    stale.unlink()

    def submit(self, record: CaptureRecord, image_path: Path) -> str:
        try:
            ensure_private_dir(self.folder)
            data = image_path.read_bytes()
        except OSError as exc:
            raise SubmissionError(
                os_error_message(exc, "The outbox copy", self.folder), transient=True
            ) from exc
        meta = json.dumps(capture_metadata(record), indent=2, sort_keys=True).encode("utf-8")
        image_out = self.folder / f"{record.id}{image_path.suffix}"
        try:
            atomic_write_bytes(image_out, data, sync_dir=False)
            atomic_write_bytes(self.folder / f"{record.id}.json", meta, sync_dir=False)
            fsync_dir(self.folder)
        except OSError as exc:
            raise SubmissionError(
                os_error_message(exc, "The outbox copy", self.folder), transient=True
            ) from exc
        return record.id


# --------------------------------------------------------------------------------------------
# DICOMweb (STOW-RS)


def _dicom_datetime(iso_utc: str) -> tuple[str, str, str]:
    """(DA, TM, DT) strings in UTC from an ISO timestamp."""
    stamp = datetime.fromisoformat(iso_utc).astimezone(UTC)
    da = stamp.strftime("%Y%m%d")
    tm = stamp.strftime("%H%M%S.%f")
    return da, tm, f"{da}{tm}+0000"


def _code_item(code: Code) -> Any:
    """A code sequence item (Code Value, Coding Scheme Designator, Code Meaning)."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme
    item.CodeMeaning = code.meaning
    return item


def build_dicom(record: CaptureRecord, image_rgb: np.ndarray, lossy: bool) -> bytes:
    """A DICOM VL Photographic Image (Part 10 file bytes) for one capture.

    ``image_rgb``: uint8 ``[H, W, 3]``, stored uncompressed (Explicit VR Little Endian, RGB), so
    the pixels read back are exactly the stored photo's decoded pixels. ``lossy``: whether the
    stored photo was JPEG (Lossy Image Compression = 01).
    """
    import io

    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian

    info = record.info
    problems = check_lo("The patient or encounter ID", info.patient_ref)
    if problems:  # stored before the checks at entry: never split or cut a patient ID
        raise SubmissionError(" ".join(problems) + " Correct it before sending.", transient=False)
    coding = body_site_coding(info.body_site)
    da, tm, dt = _dicom_datetime(record.created_utc)
    now_da, now_tm, _ = _dicom_datetime(datetime.now(UTC).isoformat())

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(VL_PHOTOGRAPHIC_IMAGE_STORAGE)
    meta.MediaStorageSOPInstanceUID = UID(record.sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = UID("2.25.184113196474350330219377254012345718641")
    meta.ImplementationVersionName = "SKINCAPTURE1"

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = VL_PHOTOGRAPHIC_IMAGE_STORAGE
    ds.SOPInstanceUID = record.sop_instance_uid
    ds.StudyInstanceUID = record.study_uid
    ds.SeriesInstanceUID = record.series_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = now_da, now_tm
    ds.TimezoneOffsetFromUTC = "+0000"
    # Patient / study (Type 2 attributes present, empty where unknown)
    ds.PatientID = info.patient_ref
    ds.PatientName = ""
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyDate, ds.StudyTime = da, tm
    ds.StudyID = study_id(record.study_uid)
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Skin photographs"
    # Series / equipment
    ds.Modality = "XC"
    ds.SeriesNumber = 1
    ds.SeriesDate, ds.SeriesTime = da, tm
    ds.SeriesDescription = clean_lo(f"Skin photo: {info.body_site}")
    ds.Manufacturer = "Skin Capture Assist"
    ds.SoftwareVersions = clean_lo(f"model {info.model_version}")
    ds.OperatorsName = person_name(info.operator)
    if coding.body_part:
        ds.BodyPartExamined = coding.body_part
    # Image
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = da, tm
    ds.AcquisitionDate, ds.AcquisitionTime = da, tm
    ds.AcquisitionDateTime = dt
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.LossyImageCompression = "01" if lossy else "00"
    ds.AcquisitionContextSequence = []
    ds.ImageLaterality = coding.image_laterality
    if coding.region is not None:
        region = _code_item(coding.region)
        if coding.laterality is not None:
            region.AnatomicRegionModifierSequence = [_code_item(coding.laterality)]
        ds.AnatomicRegionSequence = [region]
    ds.PatientOrientation = ""
    decision = "overridden" if record.review_action == "override" else "accepted"
    reasons = ", ".join(f"{k} {v:.2f}" for k, v in sorted(info.reasons.items()))
    ds.ImageComments = clean_text(
        f"Quality score {info.score:.4f} (threshold {info.threshold:.4f}, {decision}); "
        f"model {info.model_version}; reasons: {reasons or 'none'}; capture {record.id}; "
        f"body site: {info.body_site}; note: {info.note}"
    )
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(PRIVATE_SCORE, "FD", float(info.score))
    block.add_new(PRIVATE_THRESHOLD, "FD", float(info.threshold))
    block.add_new(PRIVATE_MODEL_VERSION, "LO", clean_lo(info.model_version))
    block.add_new(PRIVATE_DECISION, "CS", decision.upper())
    block.add_new(PRIVATE_REASONS, "LT", json.dumps(info.reasons, sort_keys=True))
    block.add_new(PRIVATE_CAPTURE_ID, "LO", record.id)
    # Pixels
    pixels = np.ascontiguousarray(image_rgb, dtype=np.uint8)
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


class DicomWebTarget:
    """STOW-RS to a DICOMweb server (e.g. ``http://pacs:8042/dicom-web``)."""

    name = "dicomweb"
    needs_patient_ref = True

    def __init__(
        self,
        base_url: str,
        timeout_s: float = 10,
        auth: tuple[str, str] | None = None,
        deadline_s: float = 60,
        verify: bool | str = True,
    ) -> None:
        if url_has_credentials(base_url):
            raise ValueError(CREDENTIALS_IN_URL_MESSAGE)
        self.base_url = base_url.rstrip("/")
        # shown in messages, logged and stored: never a query string or credentials
        self.display_url = redact_url(self.base_url)
        # True: the system's CA certificates; a path: a CA bundle file or folder (private CA)
        self.verify = verify
        self.timeout_s = float(timeout_s)
        self.auth = auth
        # The whole request, however the server trickles its answer: a per-read timeout alone
        # let a slow server hold the sending pass (and the app's shutdown) forever.
        self.deadline_s = float(deadline_s)
        self._cancel = threading.Event()

    def cancel_pending(self) -> None:
        self._cancel.set()

    def submit(self, record: CaptureRecord, image_path: Path) -> str:

        from desktop_app.core.image_io import ImageLoadError, load_rgb

        if not record.info.patient_ref.strip():
            raise SubmissionError(
                "This photo has no patient or encounter reference; add one before sending it "
                "to the PACS.",
                transient=False,
            )
        try:
            pixels = load_rgb(image_path)
        except ImageLoadError as exc:
            raise SubmissionError(f"The stored photo cannot be read: {exc}", False) from exc
        body_dicom = build_dicom(record, pixels, lossy=image_path.suffix.lower() == ".jpg")
        boundary = f"skincapture-{secrets.token_hex(12)}"
        body = (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + body_dicom
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        }
        url = f"{self.base_url}/studies"
        response = self._post_with_deadline(url, body, headers)
        self._raise_for_status(response)
        return self._confirmed_uid(response, record.sop_instance_uid)

    def _raise_for_status(self, response: Any) -> None:
        """A plain message for every answer that is not a STOW confirmation; the detail goes to
        the log (status, content type, Orthanc's error codes: never the body, which may echo
        the patient's data)."""
        status = int(response.status_code)
        if status < 300:
            return
        detail = _response_detail(response)
        logger.warning(
            "DICOMweb STOW to %s answered HTTP %d (%s)", self.display_url, status, detail
        )
        if 300 <= status < 400:
            location = str(getattr(response, "headers", {}).get("Location") or "")
            where = f" to {redact_url(location)}" if location else ""
            raise SubmissionError(
                f"The PACS address {self.display_url} redirects{where} (HTTP {status}). The "
                "app does not follow redirects (the login would be dropped or sent to another "
                "server): enter the address it redirects to in Settings.",
                transient=False,
            )
        if status in (408, 425, 429) or status >= 500:
            raise SubmissionError(
                f"The PACS is busy or failing (HTTP {status}); will retry.", transient=True
            )
        if status in (401, 403):
            raise SubmissionError(
                f"The PACS refused the login (HTTP {status}); check the DICOMweb user and "
                "password in the settings, then retry the failed photos.",
                transient=False,
            )
        if status in (404, 405):
            raise SubmissionError(
                f"The PACS has no DICOMweb service at {self.display_url} (HTTP {status}); "
                "check the server address in Settings (it usually ends in /dicom-web).",
                transient=False,
            )
        if status == 413:
            raise SubmissionError(
                "The PACS refused the photo as too large (HTTP 413).", transient=False
            )
        raise SubmissionError(
            f"The PACS rejected the photo (HTTP {status}); the details are in the app's log.",
            transient=False,
        )

    def _post_with_deadline(self, url: str, body: bytes, headers: dict[str, str]) -> Any:
        """POST within ``deadline_s`` in all: requests' timeouts are per read, so a server that
        trickles its answer a byte at a time held the sending pass (and the app's shutdown)
        forever. The request runs in a daemon thread that is abandoned at the deadline (it ends
        with its socket); a STOW the PACS completes late is harmless, the resend carries the
        same instance UID and the PACS keeps one copy."""
        import requests

        outcome: dict[str, Any] = {}

        def post() -> None:
            try:
                # No redirects: requests drops the login on a redirect to another host (which
                # then looked like a wrong password) or would send it on to another server.
                outcome["response"] = requests.post(
                    url,
                    data=body,
                    headers=headers,
                    timeout=self.timeout_s,
                    auth=self.auth,
                    verify=self.verify,
                    allow_redirects=False,
                )
            except Exception as exc:  # noqa: BLE001 - re-raised in the caller's thread below
                outcome["error"] = exc

        worker = threading.Thread(target=post, name="dicomweb-stow", daemon=True)
        worker.start()
        give_up_at = time.monotonic() + self.deadline_s
        while worker.is_alive() and time.monotonic() < give_up_at:
            if self._cancel.is_set():
                raise SubmissionError(
                    "Sending was stopped (the app is closing); the photo stays queued.",
                    transient=True,
                )
            worker.join(0.1)
        if worker.is_alive():
            raise SubmissionError(
                f"The PACS at {self.display_url} did not finish answering within "
                f"{self.deadline_s:.0f} s; the photo stays queued and is sent again later.",
                transient=True,
            )
        error = outcome.get("error")
        if isinstance(error, requests.exceptions.SSLError):
            logger.warning("TLS to %s failed: %s", self.display_url, type(error).__name__)
            raise SubmissionError(
                f"The secure connection to the PACS at {self.display_url} failed: its "
                "certificate is not trusted by this computer. If the PACS uses a hospital "
                "(private) certificate authority, set its CA bundle in Settings, then retry the "
                "failed photos.",
                transient=False,
            ) from error
        if isinstance(error, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
            raise SubmissionError(
                f"The PACS address {self.display_url} is not valid; correct it in Settings.",
                transient=False,
            ) from error
        if isinstance(error, requests.RequestException):
            raise SubmissionError(
                f"The PACS at {self.display_url} cannot be reached ({type(error).__name__}); "
                "the photo stays queued and is sent when it is back.",
                transient=True,
            ) from error
        if error is not None:
            raise error
        return outcome["response"]

    @staticmethod
    def _confirmed_uid(response: Any, sop_uid: str) -> str:
        """Check the STOW-RS response lists our instance as stored (not failed)."""
        try:
            payload = response.json()
        except ValueError as exc:
            raise SubmissionError(
                f"The PACS answered HTTP {response.status_code} without a readable "
                "confirmation; will retry.",
                transient=True,
            ) from exc
        if isinstance(payload, list):
            payload = payload[0] if payload else {}
        if not isinstance(payload, dict):
            raise SubmissionError(
                f"The PACS answered HTTP {response.status_code} with a confirmation this app "
                "cannot read; will retry.",
                transient=True,
            )
        failed = _json_values(payload, "00081198")
        stored = _json_values(payload, "00081199")
        stored_uids = {str((_json_values(item, "00081155") or [""])[0]) for item in stored}
        if sop_uid in stored_uids:
            return sop_uid
        if failed:
            reason = (_json_values(failed[0], "00081197") or ["?"])[0]
            raise SubmissionError(
                f"The PACS refused to store the photo (failure reason {reason}).",
                transient=False,
            )
        raise SubmissionError(
            "The PACS did not confirm that it stored the photo; will retry.", transient=True
        )


def _json_values(item: Any, tag: str) -> list[Any]:
    """The ``Value`` list of ``tag`` in a DICOM JSON object; [] for anything malformed."""
    if not isinstance(item, dict):
        return []
    element = item.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    return list(values) if isinstance(values, list) else []


def _response_detail(response: Any) -> str:
    """What of a failed answer is safe to log: its content type and length and, for Orthanc's
    JSON errors, the error codes (the body itself may echo the patient's data)."""
    headers = getattr(response, "headers", {}) or {}
    parts = [f"content type {headers.get('Content-Type', '?')}"]
    content = getattr(response, "content", b"") or b""
    parts.append(f"{len(content)} bytes")
    try:
        payload = response.json()
    except (ValueError, AttributeError):
        payload = None
    if isinstance(payload, dict):
        for key in ("HttpStatus", "OrthancError", "OrthancStatus"):
            if key in payload and isinstance(payload[key], int | str):
                parts.append(f"{key} {str(payload[key])[:60]}")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# Queue


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


CREDENTIALS_IN_URL_MESSAGE = (
    "The DICOMweb server address contains a user name or password; remove it from the address "
    "and enter them in the User and Password fields instead."
)
INSECURE_HTTP_MESSAGE = (
    "The DICOMweb server address uses plain http://, so the password would be sent "
    "unencrypted. Use an https:// address, or, on a trusted network only, tick 'Allow "
    "unencrypted http' in Settings."
)


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


def default_outbox_folder() -> Path:
    """``<data dir>/outbox`` beside the capture store."""
    return default_store_root().parent / "outbox"


def make_target(settings: Mapping[str, str]) -> SubmissionTarget:
    """Build the target chosen in settings.

    ``{"kind": "outbox", "folder": "..."}`` (folder optional) or
    ``{"kind": "dicomweb", "url": "https://host/dicom-web", "timeout_s": "10",
    "username": "...", "password": "...", "ca_bundle": "/path/ca.pem",
    "allow_insecure_http": "false"}``. Raises ValueError with a message for the user: a URL
    with ``user:password@`` in it, or a login over plain http without ``allow_insecure_http``.
    """
    kind = (settings.get("kind") or "outbox").strip().lower()
    if kind == "outbox":
        folder = settings.get("folder")
        return OutboxTarget(Path(folder) if folder else default_outbox_folder())
    if kind == "dicomweb":
        url = (settings.get("url") or "").strip()
        if not url.lower().startswith(("http://", "https://")):
            raise ValueError("DICOMweb needs a server address starting with http:// or https://")
        if url_has_credentials(url):
            raise ValueError(CREDENTIALS_IN_URL_MESSAGE)
        user = settings.get("username") or ""
        auth = (user, settings.get("password") or "") if user else None
        if (
            auth is not None
            and url.lower().startswith("http://")
            and not _true(settings.get("allow_insecure_http"))
        ):
            raise ValueError(INSECURE_HTTP_MESSAGE)
        try:
            timeout = float(settings.get("timeout_s") or 10)
        except ValueError as exc:
            raise ValueError("timeout_s must be a number of seconds") from exc
        verify: bool | str = True
        ca_bundle = (settings.get("ca_bundle") or "").strip()
        if ca_bundle:
            if not Path(ca_bundle).exists():
                raise ValueError(f"The CA bundle {ca_bundle} does not exist.")
            verify = ca_bundle
        return DicomWebTarget(url, timeout_s=timeout, auth=auth, verify=verify)
    raise ValueError(f"Unknown submission target {kind!r}: use 'outbox' or 'dicomweb'")
