"""The DICOMweb target: STOW-RS to a PACS, with an overall deadline and plain-language errors."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from desktop_app.core.store import CaptureRecord
from desktop_app.core.submission.credentials import redact_url, url_has_credentials
from desktop_app.core.submission.dicom import build_dicom
from desktop_app.core.submission.target import SubmissionError

logger = logging.getLogger(__name__)

CREDENTIALS_IN_URL_MESSAGE = (
    "The DICOMweb server address contains a user name or password; remove it from the address "
    "and enter them in the User and Password fields instead."
)
INSECURE_HTTP_MESSAGE = (
    "The DICOMweb server address uses plain http://, so the password would be sent "
    "unencrypted. Use an https:// address, or, on a trusted network only, tick 'Allow "
    "unencrypted http' in Settings."
)


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
