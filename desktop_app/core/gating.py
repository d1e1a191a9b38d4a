"""From model results and cheap picture cues to what the user sees: the gate state, one plain
guidance message, the score bar, the heat map to draw and the auto-capture timer. No Qt here.

Two inputs feed one :class:`LiveGate`, and every cue on screen (text, bar, heat map) comes from
the one :class:`GateView` it returns, so they never disagree:

* the cheap per-frame cues (``core.cues``, every camera frame): a fault they see (blur, dark,
  glare, lesion outside the framing guide or too small) is shown at once and overrides the model's
  "Looks good". They can only make the gate stricter;
* the model's live results (a few a second). "Looks good" needs the model's confirmation on a
  frame taken after the last change of the view (a change of the cues' verdict, or a view that
  differs from the one before): results on older frames are dropped, not averaged in.

Among the results since the last change the score is smoothed over the last few, with hysteresis
around the threshold, and a model reason stays on screen a short minimum time before another
model reason replaces it. A captured still is judged on its own by :func:`judge_capture`.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from desktop_app.core.cues import FrameCues, view_difference

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
GOOD_CAPTURE_NOT_SENDABLE_MESSAGE = "Good photo, but Submit is off: see why beside the buttons"
GENERIC_POOR_MESSAGE = "Not clear enough yet: hold steady, good light, lesion in the centre"
WAITING_MESSAGE = "Checking the picture…"
NO_MODEL_GATE_MESSAGE = "No quality check: no usable model"


def good_capture_message(submit_blocker: str) -> str:
    """The line under an accepted photo: "ready to submit" only when Submit is on (a missing
    patient ID or a practice feed keep it off, and the line must not say otherwise)."""
    return GOOD_CAPTURE_NOT_SENDABLE_MESSAGE if submit_blocker else GOOD_CAPTURE_MESSAGE


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
    """What the live view shows, all of it: text, bar, heat map and auto-capture progress.

    ``score`` is the smoothed model score since the last change (NaN when there is none),
    ``raw_score`` the latest; ``bar_score`` the score the bar shows (None: "waiting"; a score
    that would contradict the state, such as a high score while the cues see glare, is not
    shown); ``result`` the model result whose heat map to draw (None: draw none), opaque here
    (a ``core.inference.QualityResult``); ``reason`` the reason behind ``message`` (None when the
    message is not about a reason); ``from_cues`` True when the cheap cues set the message;
    ``auto_capture_progress`` in [0, 1]; ``capture_due`` is True once, when auto-capture should
    take the photo; ``waiting_for_new_view``: auto-capture waits for a view that differs from the
    last capture's (after Retake).
    """

    state: GateState
    score: float
    raw_score: float
    threshold: float
    message: str
    reason: str | None = None
    auto_capture_progress: float = 0.0
    capture_due: bool = False
    bar_score: float | None = None
    result: object | None = None
    from_cues: bool = False
    framing_ok: bool | None = None
    waiting_for_new_view: bool = False


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
    """The live gate over model results and cheap cues (see the module docstring).

    ``window``: how many recent model results since the last change are averaged (score and
    reason probabilities). ``margin``: the smoothed score must rise to ``threshold + margin`` to
    turn GOOD and fall below ``threshold - margin`` to leave it. ``min_message_s``: a model
    reason stays at least this long before another model reason replaces it (a change of the
    view, or a fault the cues see, replaces it at once). ``auto_capture_hold_s``: None disables
    auto-capture. ``changed_difference``: thumbnail difference (``core.cues.view_difference``)
    above which the view counts as changed (for auto-capture after a rejected photo).
    """

    def __init__(
        self,
        threshold: float,
        window: int = 3,
        margin: float = 0.03,
        reason_probability: float = 0.5,
        min_message_s: float = 0.5,
        auto_capture_hold_s: float | None = None,
        changed_difference: float = 6.0,
    ) -> None:
        self.threshold = threshold
        self.window = max(1, window)
        self.margin = max(0.0, margin)
        self.reason_probability = reason_probability
        self.min_message_s = min_message_s
        self.changed_difference = changed_difference
        self.auto_capture = (
            AutoCaptureTimer(auto_capture_hold_s) if auto_capture_hold_s is not None else None
        )
        self._scores: deque[float] = deque(maxlen=self.window)
        self._reasons: deque[Mapping[str, float]] = deque(maxlen=self.window)
        self._result: object | None = None
        self._model_good = False
        self._shown_reason: str | None = None
        self._shown_since = 0.0
        self._state = GateState.WAITING
        # cues
        self._cues: FrameCues | None = None
        self._cue_problem: str | None = None
        self._changed_at = -math.inf
        self._captured_thumb: np.ndarray | None = None
        self._await_change_from: np.ndarray | None = None
        self._last_key: tuple[object, ...] | None = None

    @property
    def state(self) -> GateState:
        return self._state

    @property
    def changed_at(self) -> float:
        """Frame time of the last change of the view (-inf: none seen)."""
        return self._changed_at

    @property
    def cue_problem(self) -> str | None:
        return self._cue_problem

    def set_auto_capture(self, hold_s: float | None) -> None:
        self.auto_capture = AutoCaptureTimer(hold_s) if hold_s is not None else None

    def _forget_model(self) -> None:
        self._scores.clear()
        self._reasons.clear()
        self._result = None
        self._model_good = False
        self._shown_reason = None

    def reset(self) -> None:
        """Forget recent results (new source, new patient, back from a capture): only model
        results on frames taken from now on count. After a capture, auto-capture waits for a
        view that differs from the captured one."""
        self._forget_model()
        self._state = GateState.WAITING
        self._last_key = None
        if self._cues is not None:
            self._changed_at = self._cues.timestamp
        if self._captured_thumb is not None:
            self._await_change_from = self._captured_thumb
            self._captured_thumb = None
        if self.auto_capture is not None:
            self.auto_capture.rearm()

    def note_capture(self) -> None:
        """A photo is being taken of the current view (by hand or auto-capture)."""
        if self._cues is not None:
            self._captured_thumb = self._cues.thumb

    def capture_judged(self, accepted: bool) -> None:
        """The verdict on the photo of :meth:`note_capture`: after a rejected one ("Try again",
        Retake) auto-capture waits for a changed view; an accepted one asks for nothing."""
        if accepted:
            self._captured_thumb = None

    def _enter_level(self) -> float:
        # Never demand more than halfway between the threshold and a perfect score.
        return min(self.threshold + self.margin, (self.threshold + 1.0) / 2.0)

    def _exit_level(self) -> float:
        return max(self.threshold - self.margin, self.threshold / 2.0)

    # ---- inputs ----------------------------------------------------------------------------
    def update(
        self,
        score: float,
        reasons: Mapping[str, float],
        now: float,
        frame_timestamp: float | None = None,
        result: object | None = None,
    ) -> GateView:
        """Take one model result (pooled ``score``, reason probabilities) at time ``now`` (s).

        ``frame_timestamp``: when its frame was taken (same clock as the cues' timestamps); a
        result on a frame older than the last change of the view is dropped. ``result``: the
        model result itself, handed back in :attr:`GateView.result` for the heat map.
        """
        if frame_timestamp is None or frame_timestamp >= self._changed_at:
            self._scores.append(float(score))
            self._reasons.append(dict(reasons))
            self._result = result
            smoothed = sum(self._scores) / len(self._scores)
            level = self._exit_level() if self._model_good else self._enter_level()
            self._model_good = smoothed >= level
        view = self._compose(now)
        self._last_key = self._key(view)
        return view

    def update_cues(self, cues: FrameCues, now: float) -> GateView | None:
        """Take one frame's cheap cues at time ``now``; the new view, or None when nothing on
        screen would change. The cues' verdict (``cues.problem``) and the date of the current
        view (``cues.changed_at``) come from the camera thread's analyser, which sees every
        frame (this gate may see only some)."""
        self._cues = cues
        self._cue_problem = cues.problem
        if cues.changed_at > self._changed_at:
            self._changed_at = cues.changed_at
            self._forget_model()
        if self._await_change_from is not None and (
            view_difference(cues.thumb, self._await_change_from) > self.changed_difference
        ):
            self._await_change_from = None
        view = self._compose(now)
        key = self._key(view)
        if key == self._last_key and not view.capture_due:
            return None
        self._last_key = key
        return view

    # ---- output ----------------------------------------------------------------------------
    @staticmethod
    def _key(view: GateView) -> tuple[object, ...]:
        return (
            view.state,
            view.message,
            round(view.auto_capture_progress, 2),
            view.bar_score,
            id(view.result),
            view.waiting_for_new_view,
        )

    def _compose(self, now: float) -> GateView:
        have_model = bool(self._scores)
        smoothed = sum(self._scores) / len(self._scores) if have_model else math.nan
        raw = self._scores[-1] if have_model else math.nan
        cue = self._cue_problem
        bar: float | None = None
        result: object | None = None
        reason: str | None
        if cue is not None:
            state, message, reason = GateState.RETAKE, guidance_for(cue), cue
            self._shown_reason = None
            if have_model and not self._model_good:  # the model agrees: its bar and heat map
                bar, result = smoothed, self._result
        elif have_model and self._model_good:
            self._shown_reason = None
            state, message, reason = GateState.GOOD, GOOD_LIVE_MESSAGE, None
            bar, result = smoothed, self._result
        elif have_model:
            state = GateState.RETAKE
            reason = self._steady_reason(now)
            message = guidance_for(reason) if reason else GENERIC_POOR_MESSAGE
            bar, result = smoothed, self._result
        else:
            state, message, reason = GateState.WAITING, WAITING_MESSAGE, None
        self._state = state
        cues = self._cues
        framing_ok = cues.framing_ok if cues is not None else None
        waiting = self._await_change_from is not None
        progress, due = 0.0, False
        if self.auto_capture is not None:
            ready = (
                state == GateState.GOOD
                and raw >= self.threshold
                and framing_ok is not False
                and not waiting
            )
            progress, due = self.auto_capture.update(ready, now)
            if due and cues is not None:
                self._captured_thumb = cues.thumb
        return GateView(
            state=state,
            score=smoothed,
            raw_score=raw,
            threshold=self.threshold,
            message=message,
            reason=reason,
            auto_capture_progress=progress,
            capture_due=due,
            bar_score=bar,
            result=result,
            from_cues=cue is not None,
            framing_ok=framing_ok,
            waiting_for_new_view=waiting,
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
