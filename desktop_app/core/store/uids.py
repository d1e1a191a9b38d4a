"""Deterministic DICOM UIDs of a capture."""

from __future__ import annotations

from desktop_app.core.store.records import CaptureInfo


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
