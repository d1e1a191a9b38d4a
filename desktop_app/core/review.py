"""The rules of the Review tab (no Qt): accepting a photo anyway, completing an accepted photo's
patient ID and body site before it is sent, and which photos are accepted but not sent yet.

Sending itself is decided by the one submit rule, :func:`desktop_app.core.submission.policy.
submit_blocker`; the functions here only say whether the reviewer has given what a decision
needs (a name, a reason from the fixed list, a patient ID and a body site).
"""

from __future__ import annotations

from collections.abc import Iterable

from desktop_app.core.patient_ref import patient_ref_problem
from desktop_app.core.settings import BODY_SITES
from desktop_app.core.store import CaptureRecord, CaptureStore
from desktop_app.core.submission.policy import is_practice_source

# Why a reviewer accepts a photo the quality check rejected: a fixed list (no free text), so that
# every override is comparable and the training export can read which fault the reviewer saw
# (the wording names the fault in the terms of ``storage.REASON_PHRASES``).
OVERRIDE_REASONS: tuple[str, ...] = (
    "Quality check wrong: the lesion is clearly visible",
    "Slight blur, lesion border still assessable",
    "Slight motion, lesion border still assessable",
    "Somewhat dark, lesion still assessable",
    "Glare away from the lesion",
    "Off-centre, but the whole lesion is in view",
    "Best photo possible for this body site",
    "Recovered photo, checked by eye",
)
CONFIRM_REJECT_REASON = "confirmed: not usable"
# States a reviewer may accept anyway (``CaptureStore.review`` accepts these).
OVERRIDABLE_STATES: tuple[str, ...] = ("captured", "rejected")
# Accepted by the gate or by a reviewer, and not handed to the queue yet.
UNSENT_ACCEPTED_STATES: tuple[str, ...] = ("accepted", "overridden")
# States whose patient ID and body site may still be completed (nothing was sent yet).
COMPLETABLE_STATES: tuple[str, ...] = ("captured", "rejected", "accepted", "overridden")


def override_blocker(record: CaptureRecord | None, reviewer: str, reason: str) -> str:
    """Why "Accept anyway" is off for ``record`` ("" when it may be pressed)."""
    if record is None:
        return "Select a photo."
    if record.problem:
        return f"This photo cannot be accepted: {record.problem}."
    if record.state not in OVERRIDABLE_STATES:
        return f"This photo is {record.state}; there is nothing to accept."
    if not reviewer.strip():
        return "Enter your name as reviewer."
    if reason not in OVERRIDE_REASONS:
        return "Choose why the photo is usable."
    return ""


def details_blocker(patient_ref: str, body_site: str) -> str:
    """Why a photo with these details may not be sent yet ("" when the details are complete).
    The patient ID is checked by the same rule as at capture (:mod:`core.patient_ref`)."""
    problem = patient_ref_problem(patient_ref)
    if problem:
        return problem
    if body_site not in BODY_SITES:
        return "Choose the body site."
    return ""


def send_blocker(
    record: CaptureRecord | None, reviewer: str, patient_ref: str, body_site: str
) -> str:
    """Why Review's "Send" is off for an accepted photo ("" when the reviewer may send it once
    the submit policy agrees). The submit policy itself is checked with the completed record."""
    if record is None:
        return "Select a photo."
    if record.state not in UNSENT_ACCEPTED_STATES:
        return "Only accepted photos that were not sent yet can be sent here."
    if is_practice_source(record.info.source):
        return "Practice photo (demo or replay): it is never sent."
    if record.problem:
        return f"This photo cannot be sent: {record.problem}."
    if not reviewer.strip():
        return "Enter your name as reviewer."
    return details_blocker(patient_ref, body_site)


def is_unsent_accepted(record: CaptureRecord) -> bool:
    """Accepted (by the gate or a reviewer), intact, from a real camera, and not queued yet: a
    photo that reaches the record only if someone sends it."""
    return (
        record.state in UNSENT_ACCEPTED_STATES
        and not record.problem
        and not is_practice_source(record.info.source)
    )


def unsent_accepted(records: Iterable[CaptureRecord], since_utc: str = "") -> list[CaptureRecord]:
    """The unsent accepted photos among ``records`` taken at or after ``since_utc`` (ISO UTC, as
    in ``CaptureRecord.created_utc``; "" = all)."""
    return [r for r in records if is_unsent_accepted(r) and r.created_utc >= since_utc]


def unsent_accepted_in_store(store: CaptureStore, since_utc: str = "") -> list[CaptureRecord]:
    """:func:`unsent_accepted` over the store (e.g. since this window was opened)."""
    return unsent_accepted(store.list(UNSENT_ACCEPTED_STATES), since_utc)


def quit_warning(unsent: list[CaptureRecord]) -> str:
    """The question to ask before quitting with unsent accepted photos ("" = none to ask)."""
    if not unsent:
        return ""
    count = len(unsent)
    photos = "1 accepted photo was" if count == 1 else f"{count} accepted photos were"
    return (
        f'{photos} not sent to the record. They stay in Review under "Accepted, not sent", '
        "where you can add the patient ID and body site and send them.\n\nQuit anyway?"
    )
