"""The one rule for what may be sent to the record (staff window, kiosk and Review alike).

A capture may reach a submission target only when all of these hold:

* it was stored and its photo is intact (no ``problem`` recorded);
* it is accepted by the quality gate, or a reviewer accepted it anyway (``overridden``); a
  ``failed`` or ``queued`` capture may be (re)queued, a rejected or reviewed-away one not;
* it comes from a real camera or a tethered camera's hot folder: frames of the built-in demo
  feed or of a replayed video or image folder are practice material, stored and reviewable but
  never sent under a patient's reference;
* it carries a patient or encounter reference when the target needs one (a PACS does);
* its patient ID, body site, note and operator name fit their DICOM value representations
  (``core.submission.dicom.validate_patient_fields``: a backslash would split the patient ID, a tab
  or an over-long value makes the DICOM object invalid).

:func:`submit_blocker` says why not, in words for the person at the screen ("" = allowed). The
submission queue enforces it too, so no window can send what the rule forbids.
"""

from __future__ import annotations

from desktop_app.core.store import CaptureRecord
from desktop_app.core.submission.dicom import validate_patient_fields

SENDABLE_STATES: tuple[str, ...] = ("accepted", "overridden", "failed", "queued")
PRACTICE_SOURCE_MESSAGE = (
    "This photo came from the demo feed or a replayed recording, not a camera: it is kept for "
    "practice and review and is never sent to the record."
)


def is_practice_source(source: str) -> bool:
    """True for the demo feed (``demo``) and replayed recordings (``replay:...``)."""
    return source == "demo" or source.startswith(("demo:", "replay:"))


def submit_blocker(record: CaptureRecord, needs_patient_ref: bool) -> str:
    """Why ``record`` may not be sent to a target ("" when it may).

    ``needs_patient_ref``: the target refuses photos without a patient or encounter reference.
    """
    if record.problem:
        return f"This photo cannot be sent: {record.problem}."
    if is_practice_source(record.info.source):
        return PRACTICE_SOURCE_MESSAGE
    if record.state not in SENDABLE_STATES:
        return (
            f"This photo is {record.state}; only photos that passed the quality check, or that a "
            "reviewer accepted anyway, can be sent."
        )
    if needs_patient_ref and not record.info.patient_ref.strip():
        return (
            "This photo has no patient or encounter reference; add one before sending it to the "
            "PACS."
        )
    info = record.info
    problems = validate_patient_fields(info.patient_ref, info.body_site, info.note, info.operator)
    if problems:
        return "This photo cannot be sent: " + " ".join(problems)
    return ""
