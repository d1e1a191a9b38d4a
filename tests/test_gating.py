"""Live gate: smoothing, hysteresis, steady guidance, auto-capture; capture judgement."""

from __future__ import annotations

import pytest

from desktop_app.core.gating import (
    GENERIC_POOR_MESSAGE,
    GOOD_CAPTURE_MESSAGE,
    GOOD_LIVE_MESSAGE,
    REASON_GUIDANCE,
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
