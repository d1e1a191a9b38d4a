"""From model results to what the user sees: the gate state, one plain guidance message, and the
auto-capture timer. No Qt here.

Live frames are noisy (a hand moves, the exposure settles), so :class:`LiveGate` smooths the score
over the last few results, uses hysteresis around the threshold (the state does not flicker when
the score hovers at it), and keeps a guidance message on screen for a minimum time before another
reason may replace it. A captured still is judged on its own by :func:`judge_capture`.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

# One short instruction per reason the model may report (model contract reason names, plus the
# names of the training pipeline's reason columns).
REASON_GUIDANCE: dict[str, str] = {
    "motion": "Hold still",
    "blur": "Hold steady / focus",
    "dark": "Too dark: add light",
    "bright": "Glare: tilt the camera",
    "glare": "Glare: tilt the camera",
    "colour": "Check the lighting colour",
    "framing": "Centre the lesion",
    "distance": "Move closer",
    "noise": "Image is noisy: add light",
    "resolution": "Move closer",
    "obstruction": "Clear the view of the skin",
    "compression": "Check the camera's image quality setting",
}
# Among the reasons that fire, the one to fix first: the model's reason outputs are per-reason
# decisions at 0.5 (each reason's tuned threshold is folded in at export), not probabilities to
# compare, and the causes come first: a blurred or dark photo also sets off framing or noise.
REASON_PRIORITY: tuple[str, ...] = (
    "motion",
    "blur",
    "dark",
    "bright",
    "glare",
    "framing",
    "distance",
    "noise",
    "colour",
    "obstruction",
    "resolution",
    "compression",
)
GOOD_LIVE_MESSAGE = "Looks good: hold still"
GOOD_CAPTURE_MESSAGE = "Good photo: ready to submit"
GENERIC_POOR_MESSAGE = "Not clear enough yet: hold steady, good light, lesion in the centre"
WAITING_MESSAGE = "Checking the picture…"
NO_MODEL_GATE_MESSAGE = "No quality check: no usable model"


def guidance_for(reason: str) -> str:
    """The plain instruction for a reason name (unknown names get a readable fallback)."""
    return REASON_GUIDANCE.get(reason, f"Improve the photo ({reason.replace('_', ' ')})")


def _priority(reason: str) -> int:
    try:
        return REASON_PRIORITY.index(reason)
    except ValueError:
        return len(REASON_PRIORITY)


def top_reason(reasons: Mapping[str, float], min_probability: float = 0.5) -> str | None:
    """The reason to fix first among those at or above ``min_probability`` (by
    :data:`REASON_PRIORITY`; equal priority, e.g. unknown names: the higher output)."""
    candidates = [
        (_priority(name), -p, name) for name, p in reasons.items() if p >= min_probability
    ]
    if not candidates:
        return None
    return min(candidates)[2]


class GateState(enum.Enum):
    NO_MODEL = "no_model"
    WAITING = "waiting"
    RETAKE = "retake"
    GOOD = "good"


@dataclass(frozen=True)
class GateView:
    """What the live view shows after one result.

    ``score`` is the smoothed score, ``raw_score`` the latest; ``reason`` the reason behind
    ``message`` (None when the message is not about a reason); ``auto_capture_progress`` in
    [0, 1]; ``capture_due`` is True once, when auto-capture should take the photo.
    """

    state: GateState
    score: float
    raw_score: float
    threshold: float
    message: str
    reason: str | None = None
    auto_capture_progress: float = 0.0
    capture_due: bool = False


class AutoCaptureTimer:
    """Fires once when the live score has stayed at or above the threshold for ``hold_s``.

    After firing it stays quiet until :meth:`rearm` (the user retakes or the screen resets), so
    one steady moment gives one capture.
    """

    def __init__(self, hold_s: float = 1.5) -> None:
        self.hold_s = max(0.0, hold_s)
        self._good_since: float | None = None
        self._fired = False

    def rearm(self) -> None:
        self._good_since = None
        self._fired = False

    @property
    def fired(self) -> bool:
        return self._fired

    def update(self, above_threshold: bool, now: float) -> tuple[float, bool]:
        """-> (progress in [0, 1], due now)."""
        if self._fired:
            return (1.0, False)
        if not above_threshold:
            self._good_since = None
            return (0.0, False)
        if self._good_since is None:
            self._good_since = now
        held = now - self._good_since
        progress = 1.0 if self.hold_s == 0 else min(1.0, held / self.hold_s)
        if held >= self.hold_s:
            self._fired = True
            return (1.0, True)
        return (progress, False)


class LiveGate:
    """Smoothed, hysteretic gate over live results with one steady guidance message.

    ``window``: how many recent results are averaged (score and reason probabilities).
    ``margin``: the smoothed score must rise to ``threshold + margin`` to turn GOOD and fall below
    ``threshold - margin`` to leave it. ``min_message_s``: a message stays at least this long
    before another reason replaces it. ``auto_capture_hold_s``: None disables auto-capture.
    """

    def __init__(
        self,
        threshold: float,
        window: int = 5,
        margin: float = 0.03,
        reason_probability: float = 0.5,
        min_message_s: float = 0.8,
        auto_capture_hold_s: float | None = None,
    ) -> None:
        self.threshold = threshold
        self.window = max(1, window)
        self.margin = max(0.0, margin)
        self.reason_probability = reason_probability
        self.min_message_s = min_message_s
        self.auto_capture = (
            AutoCaptureTimer(auto_capture_hold_s) if auto_capture_hold_s is not None else None
        )
        self._scores: deque[float] = deque(maxlen=self.window)
        self._reasons: deque[Mapping[str, float]] = deque(maxlen=self.window)
        self._state = GateState.WAITING
        self._shown_reason: str | None = None
        self._shown_since = 0.0

    @property
    def state(self) -> GateState:
        return self._state

    def set_auto_capture(self, hold_s: float | None) -> None:
        self.auto_capture = AutoCaptureTimer(hold_s) if hold_s is not None else None

    def reset(self) -> None:
        """Forget recent results (new source, new patient, back from a capture)."""
        self._scores.clear()
        self._reasons.clear()
        self._state = GateState.WAITING
        self._shown_reason = None
        if self.auto_capture is not None:
            self.auto_capture.rearm()

    def _enter_level(self) -> float:
        # Never demand more than halfway between the threshold and a perfect score.
        return min(self.threshold + self.margin, (self.threshold + 1.0) / 2.0)

    def _exit_level(self) -> float:
        return max(self.threshold - self.margin, self.threshold / 2.0)

    def update(self, score: float, reasons: Mapping[str, float], now: float) -> GateView:
        """Take one live result (pooled ``score``, reason probabilities) at time ``now`` (s)."""
        self._scores.append(float(score))
        self._reasons.append(dict(reasons))
        smoothed = sum(self._scores) / len(self._scores)
        if self._state == GateState.GOOD:
            good = smoothed >= self._exit_level()
        else:
            good = smoothed >= self._enter_level()
        self._state = GateState.GOOD if good else GateState.RETAKE
        progress, due = 0.0, False
        if self.auto_capture is not None:
            progress, due = self.auto_capture.update(score >= self.threshold and good, now)
        if good:
            self._shown_reason = None
            message, reason = GOOD_LIVE_MESSAGE, None
        else:
            reason = self._steady_reason(now)
            message = guidance_for(reason) if reason else GENERIC_POOR_MESSAGE
        return GateView(
            state=self._state,
            score=smoothed,
            raw_score=float(score),
            threshold=self.threshold,
            message=message,
            reason=reason,
            auto_capture_progress=progress,
            capture_due=due,
        )

    def _mean_reasons(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for item in self._reasons:
            for name, p in item.items():
                totals[name] = totals.get(name, 0.0) + p
        n = len(self._reasons)
        return {name: total / n for name, total in totals.items()}

    def _steady_reason(self, now: float) -> str | None:
        candidate = top_reason(self._mean_reasons(), self.reason_probability)
        if candidate == self._shown_reason:
            return candidate
        if self._shown_reason is None or now - self._shown_since >= self.min_message_s:
            self._shown_reason = candidate
            self._shown_since = now
        return self._shown_reason


@dataclass(frozen=True)
class CaptureJudgement:
    """The verdict on a captured still: Submit allowed only when ``accepted``."""

    accepted: bool
    score: float
    threshold: float
    message: str
    reasons: tuple[str, ...]


def judge_capture(
    score: float, threshold: float, reasons: Mapping[str, float], min_probability: float = 0.5
) -> CaptureJudgement:
    """Accept iff ``score >= threshold``; otherwise say why, in the most useful words."""
    named = tuple(
        sorted(
            (n for n, p in reasons.items() if p >= min_probability),
            key=lambda n: (_priority(n), -reasons[n]),
        )
    )
    if score >= threshold:
        return CaptureJudgement(True, score, threshold, GOOD_CAPTURE_MESSAGE, named)
    reason = top_reason(reasons, min_probability)
    message = f"Retake: {guidance_for(reason)}" if reason else f"Retake: {GENERIC_POOR_MESSAGE}"
    return CaptureJudgement(False, score, threshold, message, named)
