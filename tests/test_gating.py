"""Live gate: smoothing, hysteresis, steady guidance, auto-capture; capture judgement."""

from __future__ import annotations

import numpy as np
import pytest

from desktop_app.core.cues import FrameCues
from desktop_app.core.gating import (
    GENERIC_POOR_MESSAGE,
    GOOD_CAPTURE_MESSAGE,
    GOOD_LIVE_MESSAGE,
    REASON_GUIDANCE,
    WAITING_MESSAGE,
    AutoCaptureTimer,
    GateState,
    LiveGate,
    guidance_for,
    judge_capture,
    top_reason,
)


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("motion", "Hold still"),
        ("blur", "Hold steady / focus"),
        ("dark", "Too dark: add light"),
        ("bright", "Glare: tilt the camera"),
        ("colour", "Check the lighting colour"),
        ("framing", "Centre the lesion"),
        ("distance", "Move closer"),
        ("noise", "Image is noisy: add light"),
    ],
)
def test_each_contract_reason_has_its_message(reason: str, message: str) -> None:
    assert guidance_for(reason) == message


def test_unknown_reason_gets_readable_fallback() -> None:
    assert "lens smudge" in guidance_for("lens_smudge")
    assert "lens_smudge" not in REASON_GUIDANCE


def test_top_reason_is_the_cause_to_fix_first_among_those_that_fire() -> None:
    assert top_reason({"blur": 0.4, "dark": 0.3}) is None
    assert top_reason({"blur": 0.6, "dark": 0.9}) == "blur"
    # a defocused photo also sets off framing: the guidance is about focus
    assert top_reason({"framing": 0.99, "blur": 0.95, "distance": 0.34}) == "blur"
    assert top_reason({"framing": 0.7, "dark": 0.4}) == "framing"
    assert top_reason({"colour": 0.7, "motion": 0.7}) == "motion"
    assert top_reason({"odd_a": 0.6, "odd_b": 0.8}) == "odd_b"  # unknown names: higher output


def test_gate_turns_good_only_above_threshold_plus_margin_and_leaves_below_minus() -> None:
    gate = LiveGate(threshold=0.5, window=1, margin=0.05)
    assert gate.update(0.53, {}, 0.0).state == GateState.RETAKE  # inside the band: not yet
    assert gate.update(0.56, {}, 0.1).state == GateState.GOOD
    assert gate.update(0.47, {}, 0.2).state == GateState.GOOD  # hysteresis keeps it
    assert gate.update(0.44, {}, 0.3).state == GateState.RETAKE


def test_gate_smooths_one_bad_frame_away() -> None:
    gate = LiveGate(threshold=0.5, window=5, margin=0.02)
    for i in range(5):
        view = gate.update(0.9, {}, i * 0.1)
    assert view.state == GateState.GOOD
    view = gate.update(0.1, {"blur": 0.9}, 0.6)  # one blurred frame among good ones
    assert view.state == GateState.GOOD
    assert view.message == GOOD_LIVE_MESSAGE
    assert view.raw_score == pytest.approx(0.1)
    assert view.score == pytest.approx((0.9 * 4 + 0.1) / 5)


def test_blur_guidance_shown_when_poor() -> None:
    gate = LiveGate(threshold=0.5, window=3)
    view = gate.update(0.1, {"blur": 0.9, "dark": 0.1}, 0.0)
    assert view.state == GateState.RETAKE
    assert view.message == "Hold steady / focus"
    assert view.reason == "blur"


def test_poor_without_reason_gets_generic_message() -> None:
    gate = LiveGate(threshold=0.5, window=1)
    assert gate.update(0.2, {"blur": 0.2}, 0.0).message == GENERIC_POOR_MESSAGE


def test_message_does_not_flicker_between_reasons() -> None:
    gate = LiveGate(threshold=0.5, window=1, min_message_s=1.0)
    assert gate.update(0.1, {"blur": 0.9, "dark": 0.1}, 0.0).reason == "blur"
    # dark becomes most likely, but only 0.3 s later: blur stays on screen
    assert gate.update(0.1, {"blur": 0.2, "dark": 0.9}, 0.3).reason == "blur"
    assert gate.update(0.1, {"blur": 0.2, "dark": 0.9}, 0.9).reason == "blur"
    assert gate.update(0.1, {"blur": 0.2, "dark": 0.9}, 1.1).reason == "dark"


def test_enter_level_never_above_halfway_to_one() -> None:
    gate = LiveGate(threshold=0.98, window=1, margin=0.05)
    assert gate.update(0.995, {}, 0.0).state == GateState.GOOD


def test_auto_capture_fires_once_after_hold_time() -> None:
    timer = AutoCaptureTimer(hold_s=1.0)
    assert timer.update(True, 10.0) == (0.0, False)
    progress, due = timer.update(True, 10.5)
    assert progress == pytest.approx(0.5) and not due
    assert timer.update(True, 11.0) == (1.0, True)
    assert timer.update(True, 12.0) == (1.0, False)  # fired: quiet until re-armed
    timer.rearm()
    assert timer.update(True, 13.0) == (0.0, False)


def test_auto_capture_restarts_when_score_drops() -> None:
    timer = AutoCaptureTimer(hold_s=1.0)
    timer.update(True, 0.0)
    timer.update(True, 0.9)
    assert timer.update(False, 0.95) == (0.0, False)
    assert timer.update(True, 1.0)[1] is False
    assert timer.update(True, 2.0)[1] is True


def test_gate_auto_capture_needs_good_state_and_raw_score() -> None:
    gate = LiveGate(threshold=0.5, window=3, margin=0.02, auto_capture_hold_s=0.5)
    views = [gate.update(0.9, {}, t) for t in (0.0, 0.2, 0.4, 0.6)]
    assert [v.capture_due for v in views] == [False, False, False, True]
    gate.reset()
    assert gate.state == GateState.WAITING
    # one frame under the threshold restarts the hold time even though the smoothed state is good
    for t in (0.0, 0.2):
        gate.update(0.9, {}, t)
    gate.update(0.45, {}, 0.3)
    assert not gate.update(0.9, {}, 0.6).capture_due
    assert gate.update(0.9, {}, 1.2).capture_due


def test_auto_capture_off_reports_no_progress() -> None:
    gate = LiveGate(threshold=0.5, window=1)
    view = gate.update(0.9, {}, 0.0)
    assert view.auto_capture_progress == 0.0 and not view.capture_due


def test_judge_capture() -> None:
    good = judge_capture(0.7, 0.6, {"blur": 0.1})
    assert good.accepted and good.message == GOOD_CAPTURE_MESSAGE
    poor = judge_capture(0.3, 0.6, {"blur": 0.8, "dark": 0.6})
    assert not poor.accepted
    assert poor.message == "Retake: Hold steady / focus"
    assert poor.reasons == ("blur", "dark")
    assert judge_capture(0.6, 0.6, {}).accepted  # at the threshold counts as clearing it
    assert judge_capture(0.2, 0.6, {}).message.startswith("Retake: ")


# ---- cheap cues and the model together (one GateView drives every cue on screen) ----------
def _cues(
    ts: float,
    problem: str | None = None,
    framing_ok: bool = True,
    level: float = 100.0,
    since: float = 0.0,
) -> FrameCues:
    """Cues of a frame at ``ts``: the camera thread's analyser says ``problem`` and dates the
    current view from ``since``; ``level`` is the grey of its (flat) thumbnail."""
    return FrameCues(
        timestamp=ts,
        sharpness=100.0,
        blur_ratio=1.0,
        anisotropy=0.0,
        luma_mean=150.0,
        luma_p5=100.0,
        luma_p95=200.0,
        clipped_fraction=0.0,
        glare_fraction=0.0,
        blob=None,
        thumb=np.full((4, 4), level, np.float32),
        problem=problem,
        framing_ok=framing_ok,
        raw_problem=problem,
        changed_at=since,
    )


def _good_gate(**kwargs: float) -> LiveGate:
    gate = LiveGate(threshold=0.5, window=3, margin=0.02, **kwargs)  # type: ignore[arg-type]
    gate.update_cues(_cues(0.0), 0.0)
    for t in (0.1, 0.2, 0.3):
        view = gate.update(0.99, {}, t, frame_timestamp=t, result="heat")
    assert view.state == GateState.GOOD and view.message == GOOD_LIVE_MESSAGE
    assert view.bar_score == pytest.approx(0.99) and view.result == "heat"
    return gate


def test_a_fault_the_cues_see_overrides_looks_good_at_once() -> None:
    gate = _good_gate()
    view = gate.update_cues(_cues(0.37, "glare", since=0.33), 0.37)
    assert view is not None
    assert view.state == GateState.RETAKE and view.message == guidance_for("glare")
    assert view.from_cues and view.reason == "glare"
    # the bar and the heat map do not contradict the text: no 0.99 next to "Glare"
    assert view.bar_score is None and view.result is None
    # the model's results on frames before the change are dropped, not averaged in
    late = gate.update(0.99, {}, 0.45, frame_timestamp=0.30)
    assert late.message == guidance_for("glare") and late.bar_score is None


def test_looks_good_needs_the_model_on_a_frame_taken_after_the_change() -> None:
    gate = _good_gate()
    gate.update_cues(_cues(1.03, "dark", since=1.0), 1.03)
    assert gate.update(0.1, {"dark": 0.9}, 1.3, frame_timestamp=1.1).message == guidance_for("dark")
    view = gate.update_cues(_cues(2.03, since=2.0), 2.03)  # the light is back: no fault seen
    assert view is not None and view.state == GateState.WAITING
    assert view.message == WAITING_MESSAGE  # not "Too dark" from the old frames, not good yet
    stale = gate.update(0.95, {}, 2.1, frame_timestamp=1.9)  # scored on a frame before the change
    assert stale.state == GateState.WAITING
    # the first frame of the new view (the camera thread sends it at once) already counts
    fresh = gate.update(0.95, {}, 2.4, frame_timestamp=2.0)
    assert fresh.state == GateState.GOOD and fresh.message == GOOD_LIVE_MESSAGE


def test_a_new_view_drops_the_old_views_results() -> None:
    gate = _good_gate()
    view = gate.update_cues(_cues(1.0, level=180.0, since=1.0), 1.0)  # another picture, no fault
    assert view is not None and view.state == GateState.WAITING
    assert gate.update(0.2, {"framing": 0.9}, 1.4, frame_timestamp=1.1).message == guidance_for(
        "framing"
    )


def test_update_cues_is_quiet_when_nothing_on_screen_changes() -> None:
    gate = _good_gate()
    assert gate.update_cues(_cues(0.4), 0.4) is None
    assert gate.update_cues(_cues(0.43), 0.43) is None


def test_auto_capture_needs_the_finding_inside_the_guide() -> None:
    gate = LiveGate(threshold=0.5, window=1, auto_capture_hold_s=0.3)
    gate.update_cues(_cues(0.0, framing_ok=False), 0.0)
    for t in (0.1, 0.3, 0.5, 0.7):
        view = gate.update(0.95, {}, t, frame_timestamp=t)
        assert view.state == GateState.GOOD and not view.capture_due
    assert view.auto_capture_progress == 0.0
    gate.update_cues(_cues(0.8, framing_ok=True), 0.8)
    gate.update(0.95, {}, 0.9, frame_timestamp=0.85)
    assert gate.update(0.95, {}, 1.25, frame_timestamp=1.2).capture_due


def test_after_a_rejected_capture_auto_capture_waits_for_a_changed_view() -> None:
    gate = LiveGate(threshold=0.5, window=1, auto_capture_hold_s=0.2)
    gate.update_cues(_cues(0.0), 0.0)
    gate.update(0.95, {}, 0.1, frame_timestamp=0.1)
    assert gate.update(0.95, {}, 0.35, frame_timestamp=0.3).capture_due
    gate.capture_judged(accepted=False)
    gate.reset()  # "Try again": the same view is still in front of the camera
    for t in (0.5, 0.8, 1.1, 1.4):
        gate.update_cues(_cues(t), t)
        view = gate.update(0.95, {}, t + 0.05, frame_timestamp=t)
        assert view.waiting_for_new_view and not view.capture_due
    gate.update_cues(_cues(1.5, level=140.0, since=1.5), 1.5)  # the user moved the camera
    gate.update(0.95, {}, 1.6, frame_timestamp=1.55)
    view = gate.update(0.95, {}, 1.9, frame_timestamp=1.85)
    assert not view.waiting_for_new_view and view.capture_due


def test_after_an_accepted_capture_the_same_view_may_be_captured_again() -> None:
    gate = LiveGate(threshold=0.5, window=1, auto_capture_hold_s=0.2)
    gate.update_cues(_cues(0.0), 0.0)
    gate.update(0.95, {}, 0.1, frame_timestamp=0.1)
    assert gate.update(0.95, {}, 0.35, frame_timestamp=0.3).capture_due
    gate.capture_judged(accepted=True)
    gate.reset()  # next patient (kiosk)
    gate.update_cues(_cues(0.5), 0.5)
    gate.update(0.95, {}, 0.6, frame_timestamp=0.55)
    assert gate.update(0.95, {}, 0.85, frame_timestamp=0.8).capture_due
