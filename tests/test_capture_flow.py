"""The capture/submit state machine (``core.capture_flow``), without Qt."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from store_helpers import make_info, smooth_image

from desktop_app.core.capture import CaptureContext, CaptureOutcome
from desktop_app.core.capture_flow import (
    CHECKING_PHOTO,
    HOT_FOLDER_WAITING,
    IDLE_BLOCKER,
    SHOWING_BLOCKER,
    CaptureFlow,
    FlowError,
    FlowState,
)
from desktop_app.core.gating import CaptureJudgement
from desktop_app.core.store import CaptureStore

SCORED = cast(Any, object())  # stands for a QualityResult: the flow only asks "was it scored?"


@pytest.fixture
def store(tmp_path: Path) -> CaptureStore:
    return CaptureStore(tmp_path / "store")


def make_outcome(
    store: CaptureStore | None,
    accepted: bool = True,
    source: str = "camera:0",
    patient_ref: str = "P-1001",
    scored: bool = True,
) -> CaptureOutcome:
    judgement = CaptureJudgement(accepted, 0.9 if accepted else 0.2, 0.5, "Too blurry", ())
    info = make_info(source=source, patient_ref=patient_ref, accepted=accepted)
    record = store.add(smooth_image(), info) if store is not None else None
    context = CaptureContext("staff", "nurse", patient_ref, "forearm", "")
    image = np.zeros((8, 8, 3), np.uint8)
    return CaptureOutcome(
        image, SCORED if scored else None, judgement, record, "disk full", source, context
    )


def test_live_capture_verdict_retake() -> None:
    flow = CaptureFlow()
    assert flow.state is FlowState.LIVE and flow.scoring_live and flow.may_capture
    assert not flow.showing_capture
    flow.capture_requested()
    assert flow.state is FlowState.CHECKING and not flow.scoring_live
    assert flow.capture_blocker() == CHECKING_PHOTO
    flow.verdict_arrived(make_outcome(None, accepted=False))
    assert flow.state is FlowState.REJECTED and flow.showing_capture
    assert flow.capture_blocker() == SHOWING_BLOCKER
    flow.retake()
    assert flow.state is FlowState.LIVE and flow.outcome is None and flow.may_capture


def test_submit_only_an_accepted_photo(store: CaptureStore) -> None:
    flow = CaptureFlow()
    with pytest.raises(FlowError):
        flow.submit()
    flow.capture_requested()
    flow.verdict_arrived(make_outcome(store, accepted=False))
    with pytest.raises(FlowError):
        flow.submit()
    flow.retake()
    flow.capture_requested()
    outcome = make_outcome(store)
    flow.verdict_arrived(outcome)
    assert flow.state is FlowState.ACCEPTED
    assert flow.submit() is outcome
    assert flow.state is FlowState.SUBMITTED and not flow.scoring_live and not flow.may_capture
    flow.start_live()  # the staff window goes straight on
    assert flow.state is FlowState.LIVE


def test_kiosk_idle_between_patients() -> None:
    flow = CaptureFlow(FlowState.IDLE)
    assert not flow.scoring_live and flow.capture_blocker() == IDLE_BLOCKER
    flow.start_live()
    flow.capture_requested()
    flow.verdict_arrived(make_outcome(None))
    flow.new_patient()
    assert flow.state is FlowState.IDLE and flow.outcome is None


def test_a_check_in_progress_survives_retake_and_new_patient() -> None:
    """The still is checked and stored whatever the screen does; its verdict still arrives."""
    flow = CaptureFlow()
    flow.capture_requested()
    flow.new_patient()
    assert flow.checking
    flow.retake()
    assert flow.checking
    flow.verdict_arrived(make_outcome(None))
    assert flow.state is FlowState.ACCEPTED


def test_hot_folder_file_replaces_the_photo_on_screen(store: CaptureStore) -> None:
    flow = CaptureFlow()
    first = make_outcome(store)
    flow.capture_requested()
    flow.verdict_arrived(first)
    flow.capture_requested()  # the next file arrives while the first is shown
    assert flow.checking and flow.showing_capture and flow.outcome is first
    assert flow.submit() is first  # the shown photo may still be sent
    assert flow.checking  # and the new file's check goes on
    second = make_outcome(store, accepted=False)
    flow.verdict_arrived(second)
    assert flow.outcome is second and flow.state is FlowState.REJECTED


def test_submit_blocker_messages(store: CaptureStore) -> None:
    flow = CaptureFlow()
    ok = {"queue_configured": True}
    assert flow.submit_blocker(**ok) == "Take a photo first (Space)."
    assert flow.submit_blocker(**ok, hot_folder=True) == f"{HOT_FOLDER_WAITING}."
    flow.capture_requested()
    assert flow.submit_blocker(**ok) == CHECKING_PHOTO

    def shown(outcome: CaptureOutcome) -> str:
        flow.retake()
        flow.capture_requested()
        flow.verdict_arrived(outcome)
        return flow.submit_blocker(queue_configured=True, needs_patient_ref=True)

    assert "not quality-checked" in shown(make_outcome(store, scored=False))
    assert "below the threshold" in shown(make_outcome(store, accepted=False))
    assert "could not be saved. disk full" in shown(make_outcome(None))
    assert "demo feed" in shown(make_outcome(store, source="demo"))
    assert "no valid patient ID" in shown(make_outcome(store, patient_ref=""))
    assert shown(make_outcome(store)) == ""
    assert "not configured. bad URL" in flow.submit_blocker(
        queue_configured=False, queue_error="bad URL"
    )


def test_submit_blocker_ends_with_the_submit_policy(store: CaptureStore) -> None:
    """What core.submission.policy refuses (here: a photo reviewed away) is never offered."""
    flow = CaptureFlow()
    accepted = make_outcome(store)
    assert accepted.record is not None
    outcome = replace(accepted, record=replace(accepted.record, state="rejected"))
    flow.capture_requested()
    flow.verdict_arrived(outcome)
    assert "only photos that passed" in flow.submit_blocker(queue_configured=True)
