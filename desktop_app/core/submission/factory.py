"""Building the submission target chosen in settings."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from desktop_app.core.submission.credentials import url_has_credentials
from desktop_app.core.submission.dicomweb import (
    CREDENTIALS_IN_URL_MESSAGE,
    INSECURE_HTTP_MESSAGE,
    DicomWebTarget,
)
from desktop_app.core.submission.outbox import OutboxTarget, default_outbox_folder
from desktop_app.core.submission.target import SubmissionTarget


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes")


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
