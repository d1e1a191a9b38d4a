"""The capture/submit state machine of one window (staff or kiosk), without Qt.

States (``FlowState``)::

    IDLE ----start_live----> LIVE ----capture_requested----> CHECKING
      ^                       ^  ^                              |
      |                       |  +-------retake-----+     verdict_arrived
      |                       |                     |           v
      +----new_patient----- SUBMITTED <--submit-- ACCEPTED | REJECTED
                              |
                              +--start_live--> LIVE (the staff window goes straight on)

* ``IDLE``: nobody at the screen (the kiosk between patients): the preview runs, nothing is
  scored and nothing may be captured.
* ``LIVE``: live frames are scored (auto-capture may fire); a capture may be taken.
* ``CHECKING``: a still is being checked and stored; live scoring is paused. A hot folder's
  file is always checked, so ``capture_requested`` is accepted in any state (the photo on screen
  stays until the new verdict replaces it).
* ``ACCEPTED`` / ``REJECTED``: a verdict is on screen (``outcome``): Submit (if accepted) or
  retake.
* ``SUBMITTED``: the photo is queued; live scoring stays off until the next patient or live.

``retake`` and ``new_patient`` during ``CHECKING`` clear the screen but the check goes on: its
verdict arrives as usual (stored either way). The windows ask this object "are we showing a
capture?" (``showing_capture``), "may we capture now?" (``capture_blocker``) and "may we
submit?" (``submit_blocker``, which ends with the one rule of ``core.submission.policy``).
"""

from __future__ import annotations

from enum import StrEnum

from desktop_app.core.capture import CaptureOutcome
from desktop_app.core.submission.policy import PRACTICE_SOURCE_MESSAGE, is_practice_source
from desktop_app.core.submission.policy import submit_blocker as policy_submit_blocker

CHECKING_PHOTO = "Checking the photo…"
HOT_FOLDER_WAITING = "Waiting for the next photo from the camera"
SHOWING_BLOCKER = "Submit or retake the current photo first."
IDLE_BLOCKER = "Not on the capture screen."


class FlowState(StrEnum):
    IDLE = "idle"
    LIVE = "live"
    CHECKING = "checking"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SUBMITTED = "submitted"


class FlowError(RuntimeError):
    """An event that the current state does not allow (a bug in the caller)."""


class CaptureFlow:
    """One window's capture state; every event is a method, every question a property."""

    def __init__(self, state: FlowState = FlowState.LIVE) -> None:
        self.state = state
        self.outcome: CaptureOutcome | None = None  # the verdict on screen, if any

    # ---- questions --------------------------------------------------------------------------
    @property
    def showing_capture(self) -> bool:
        """A photo and its verdict are on screen (also while a hot-folder file is checked)."""
        return self.outcome is not None

    @property
    def checking(self) -> bool:
        return self.state is FlowState.CHECKING

    @property
    def scoring_live(self) -> bool:
        """Live frames are scored (and may auto-capture) only in ``LIVE``."""
        return self.state is FlowState.LIVE

    def capture_blocker(self) -> str:
        """Why a capture (button, key or auto-capture) may not be taken now ("" = it may)."""
        if self.showing_capture:
            return SHOWING_BLOCKER
        if self.state is FlowState.CHECKING:
            return CHECKING_PHOTO
        if self.state is not FlowState.LIVE:
            return IDLE_BLOCKER
        return ""

    @property
    def may_capture(self) -> bool:
        return not self.capture_blocker()

    def submit_blocker(
        self,
        *,
        queue_configured: bool,
        queue_error: str = "",
        needs_patient_ref: bool = False,
        model_problem: str = "no quality model",
        hot_folder: bool = False,
    ) -> str:
        """Why Submit is off, in words for the staff ("" when it is on).

        ``model_problem``: why a photo may not have been scored (shown when it was not).
        """
        outcome = self.outcome
        if outcome is None:
            if self.checking:
                return CHECKING_PHOTO
            if hot_folder:
                return f"{HOT_FOLDER_WAITING}."
            return "Take a photo first (Space)."
        if outcome.result is None:
            return f"Submit is off: the photo was not quality-checked ({model_problem})."
        if not outcome.judgement.accepted:
            return f"Submit is off: the score is below the threshold. {outcome.judgement.message}."
        if outcome.record is None:
            return f"Submit is off: the photo could not be saved. {outcome.store_error}"
        if is_practice_source(outcome.record.info.source):
            return f"Submit is off. {PRACTICE_SOURCE_MESSAGE}"
        if not outcome.record.info.patient_ref:
            return (
                "Submit is off: no valid patient ID was entered when this photo arrived. It is "
                "kept in Review."
            )
        if not queue_configured:
            return f"Submit is off: sending is not configured. {queue_error}"
        policy = policy_submit_blocker(outcome.record, needs_patient_ref)
        return f"Submit is off. {policy}" if policy else ""

    # ---- events -----------------------------------------------------------------------------
    def start_live(self) -> None:
        """Score live frames (a patient is at the screen, or the staff window goes on)."""
        self.outcome = None
        if self.state is not FlowState.CHECKING:
            self.state = FlowState.LIVE

    def capture_requested(self) -> None:
        """A still is on its way to be checked (from any state: a hot folder's file always is)."""
        self.state = FlowState.CHECKING

    def verdict_arrived(self, outcome: CaptureOutcome) -> None:
        self.outcome = outcome
        self.state = FlowState.ACCEPTED if outcome.judgement.accepted else FlowState.REJECTED

    def retake(self) -> None:
        """Drop the verdict on screen and go back to live (a running check goes on)."""
        self.start_live()

    def submit(self) -> CaptureOutcome:
        """The accepted photo on screen is handed to the queue: ``SUBMITTED``.

        Raises ``FlowError`` when no accepted photo is on screen."""
        outcome = self.outcome
        if outcome is None or not outcome.judgement.accepted:
            raise FlowError(f"nothing to submit in state {self.state.value}")
        self.outcome = None
        if self.state is not FlowState.CHECKING:  # a hot-folder file being checked goes on
            self.state = FlowState.SUBMITTED
        return outcome

    def new_patient(self) -> None:
        """Clear the screen for the next patient: nothing is scored until ``start_live``."""
        self.outcome = None
        if self.state is not FlowState.CHECKING:
            self.state = FlowState.IDLE
