"""What the patient kiosk says and highlights (no Qt): the steps, the step each quality problem
concerns, plain-language messages without numbers or camera jargon, the body sites a patient
chooses from, the warning countdown before an idle screen is cleared, and the lockout after
wrong staff PINs (kept in a small JSON file next to the settings, so that restarting the app does
not give another round of guesses).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from desktop_app.core.gating import GateState, GateView, top_reason
from desktop_app.core.settings import BODY_SITES, settings_path

logger = logging.getLogger(__name__)

# The steps on the capture screen, in order (index = step number - 1).
STEP_UNCOVER = 0
STEP_AIM = 1
STEP_HOLD = 2
STEP_SEND = 3
STEP_NONE = -1  # no step is highlighted (e.g. a practice photo: there is nothing to send)
STEPS: tuple[str, ...] = (
    "Uncover the skin and hold the camera about a hand's width away.",
    "Put the spot in the middle of the picture. Good light, no shadow.",
    "Hold still. The photo is taken by itself when it is sharp.",
    "Check the photo and press Send.",
)
# The step each reason the model reports is about (unknown reasons: the aiming step).
REASON_STEP: dict[str, int] = {
    "motion": STEP_HOLD,
    "blur": STEP_HOLD,
    "dark": STEP_AIM,
    "bright": STEP_AIM,
    "glare": STEP_AIM,
    "colour": STEP_AIM,
    "noise": STEP_AIM,
    "framing": STEP_AIM,
    "distance": STEP_UNCOVER,
    "resolution": STEP_UNCOVER,
    "obstruction": STEP_UNCOVER,
    "compression": STEP_AIM,
}
# Plain words for a patient: no numbers, no camera terms.
PATIENT_PHRASES: dict[str, str] = {
    "motion": "Please hold the camera still.",
    "blur": "The picture is not sharp yet. Hold still for a moment.",
    "dark": "It is too dark. Please turn on more light.",
    "bright": "There is a shiny spot. Tilt the camera a little.",
    "glare": "There is a shiny spot. Tilt the camera a little.",
    "colour": "Please use normal white room light.",
    "noise": "It is too dark. Please turn on more light.",
    "framing": "Put the spot in the middle of the picture.",
    "distance": "Move the camera a little closer.",
    "resolution": "Move the camera a little closer.",
    "obstruction": "Move clothing, hair or fingers out of the way.",
    "compression": "Please ask a staff member for help with the camera.",
}
GENERIC_PHRASE = "Not clear enough yet. Hold still, use good light, spot in the middle."
LIVE_GOOD = "Looks good. Hold still…"
LIVE_WAITING = "Getting ready…"
LIVE_NO_CHECK = "The photo cannot be checked right now. Please ask a staff member."
OUTCOME_GOOD = "Good photo. Please press Send."
OUTCOME_RETRY = "Let's take it again. {advice}"
OUTCOME_NOT_CHECKED = "The photo could not be checked. Please ask a staff member."
OUTCOME_NOT_SAVED = "The photo could not be saved. Please ask a staff member."

# The body-site step: the staff window's list, so both windows file photos the same way.
KIOSK_BODY_SITES: tuple[str, ...] = BODY_SITES
BODY_SITE_QUESTION = "Where on your body is the spot?"
BODY_SITE_HINT = "Left and right: your own left and right."

IDLE_WARNING_S = 15


def step_for_reason(reason: str | None) -> int:
    """The step a quality problem concerns (no reason named: the aiming step)."""
    if reason is None:
        return STEP_AIM
    return REASON_STEP.get(reason, STEP_AIM)


def patient_phrase(reason: str | None) -> str:
    """What a patient is told to do about a quality problem."""
    if reason is None:
        return GENERIC_PHRASE
    return PATIENT_PHRASES.get(reason, GENERIC_PHRASE)


def live_step(view: GateView) -> int:
    """The step to highlight for a live result."""
    if view.state == GateState.GOOD:
        return STEP_HOLD
    if view.state == GateState.RETAKE:
        return step_for_reason(view.reason)
    return STEP_UNCOVER


def live_message(view: GateView) -> str:
    """The patient's line for a live result."""
    if view.state == GateState.GOOD:
        return LIVE_GOOD
    if view.state == GateState.RETAKE:
        return patient_phrase(view.reason)
    if view.state == GateState.NO_MODEL:
        return LIVE_NO_CHECK
    return LIVE_WAITING


@dataclass(frozen=True)
class KioskVerdict:
    """What the kiosk shows for a captured photo: the step to highlight and the patient's line."""

    step: int
    message: str
    good: bool


def verdict_for(
    accepted: bool, score: float, reasons: Mapping[str, float], stored: bool, sendable: bool
) -> KioskVerdict:
    """The kiosk's verdict on a capture (``score`` NaN: not checked; ``stored``: it was saved;
    ``sendable``: the capture may be sent, ``CaptureOutcome.can_submit``)."""
    if not stored:
        return KioskVerdict(STEP_SEND, OUTCOME_NOT_SAVED, False)
    if math.isnan(score):
        return KioskVerdict(STEP_SEND, OUTCOME_NOT_CHECKED, False)
    if accepted and sendable:
        return KioskVerdict(STEP_SEND, OUTCOME_GOOD, True)
    if accepted:  # a practice feed: good, but it is not sent
        return KioskVerdict(STEP_NONE, "Good photo (practice only: it is not sent).", False)
    reason = top_reason(reasons)
    advice = patient_phrase(reason)
    return KioskVerdict(step_for_reason(reason), OUTCOME_RETRY.format(advice=advice), False)


def idle_warning_text(seconds_left: int) -> str:
    """The countdown line shown before an idle kiosk is cleared."""
    return f"Are you still there? Clearing in {max(0, seconds_left)} s"


class IdleCountdown:
    """The warning before an idle screen is cleared: started, ticked once a second, stopped by
    any touch; :meth:`tick` returns True when the screen should be cleared now."""

    def __init__(self, seconds: int = IDLE_WARNING_S) -> None:
        self.seconds = max(1, int(seconds))
        self.left = 0
        self.running = False

    def start(self) -> None:
        self.left = self.seconds
        self.running = True

    def stop(self) -> None:
        self.running = False
        self.left = 0

    def tick(self) -> bool:
        if not self.running:
            return False
        self.left -= 1
        if self.left <= 0:
            self.stop()
            return True
        return False

    @property
    def text(self) -> str:
        return idle_warning_text(self.left)


MAX_PIN_ATTEMPTS = 5
PIN_LOCKOUT_S = 30.0
PIN_LOCKOUT_FILE = "kiosk-pin-lockout.json"


def default_pin_lockout_path() -> Path:
    """``kiosk-pin-lockout.json`` in the app's config folder (next to ``settings.json``)."""
    return settings_path().parent / PIN_LOCKOUT_FILE


class PinLockout:
    """Wrong staff PINs: after ``max_attempts`` in a row, every PIN (even the right one) is
    refused for ``lockout_s`` seconds.

    ``clock`` is wall-clock seconds (``time.time``), so that the state means the same after a
    restart; a lockout never lasts longer than ``lockout_s`` from now (a clock set back does not
    lock the kiosk for hours). With a ``path`` the count and the end of the lockout are saved
    there after every change and read back at start; a missing or damaged file means no lockout
    (it cannot stop the kiosk from starting), a file that cannot be written is logged.
    """

    def __init__(
        self,
        max_attempts: int = MAX_PIN_ATTEMPTS,
        lockout_s: float = PIN_LOCKOUT_S,
        clock: Callable[[], float] = time.time,
        path: Path | None = None,
    ) -> None:
        self.max_attempts = max(1, int(max_attempts))
        self.lockout_s = float(lockout_s)
        self.clock = clock
        self.path = path
        self.failed_attempts = 0
        self.locked_until = 0.0
        self._load()

    def seconds_left(self) -> float:
        """How long PINs are still refused (0 when they are not)."""
        left = self.locked_until - self.clock()
        return min(max(0.0, left), self.lockout_s)

    @property
    def locked(self) -> bool:
        return self.seconds_left() > 0

    def record_failure(self) -> bool:
        """A wrong PIN; True when it starts the lockout."""
        self.failed_attempts += 1
        started = self.failed_attempts >= self.max_attempts
        if started:
            self.failed_attempts = 0
            self.locked_until = self.clock() + self.lockout_s
        self._save()
        return started

    def record_success(self) -> None:
        self.failed_attempts = 0
        self.locked_until = 0.0
        self._save()

    def clear(self) -> None:
        """Forget wrong PINs and any lockout (as after the right PIN)."""
        self.record_success()

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            failed = int(raw.get("failed_attempts", 0))
            until = float(raw.get("locked_until", 0.0))
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            logger.warning("ignoring the kiosk PIN lockout file %s: %s", self.path, exc)
            return
        if math.isfinite(until):
            self.failed_attempts = max(0, failed)
            self.locked_until = until

    def _save(self) -> None:
        if self.path is None:
            return
        data = {"failed_attempts": self.failed_attempts, "locked_until": self.locked_until}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            logger.warning("could not save the kiosk PIN lockout to %s: %s", self.path, exc)
