"""The one submit rule (core.submission.policy), enforced by the queue for every window: demo and
replayed frames never reach a target, a PACS gets no photo without a patient reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from store_helpers import make_info, smooth_image

from desktop_app.core.capture import CaptureContext, CaptureOutcome
from desktop_app.core.gating import CaptureJudgement
from desktop_app.core.store import CaptureStore
from desktop_app.core.submission import (
    DicomWebTarget,
    OutboxTarget,
    SubmissionQueue,
    SubmissionRefused,
)
from desktop_app.core.submission.policy import (
    PRACTICE_SOURCE_MESSAGE,
    is_practice_source,
    submit_blocker,
)


def test_practice_sources() -> None:
    assert is_practice_source("demo")
    assert is_practice_source("replay:/videos/lesion.mp4")
    assert not is_practice_source("camera:0")
    assert not is_practice_source("hotfolder:/tether/IMG_0001.JPG")
    assert not is_practice_source("hotfolder:/data/demo/IMG_1.JPG")  # a folder named demo


@pytest.mark.parametrize("source", ["demo", "replay:/tmp/frames"])
def test_demo_and_replay_captures_are_kept_but_never_sent(
    store: CaptureStore, tmp_path: Path, source: str
) -> None:
    outbox = tmp_path / "outbox"
    queue = SubmissionQueue(store, OutboxTarget(outbox))
    record = store.add(smooth_image(), make_info(source=source))
    with pytest.raises(SubmissionRefused, match="never sent"):
        queue.enqueue(record.id)
    # a reviewer's "accept anyway" does not make it sendable either
    store.review(record.id, "override", "dr", "looks fine")
    with pytest.raises(SubmissionRefused, match="never sent"):
        queue.enqueue(record.id)
    queue.process_pending()
    assert not outbox.exists() or not any(outbox.iterdir())
    kept = store.get(record.id)
    assert kept.image_path.is_file() and kept.state == "overridden"


def test_a_practice_capture_queued_before_the_rule_fails_visibly_unsent(
    store: CaptureStore, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    queue = SubmissionQueue(store, OutboxTarget(outbox))
    record = store.add(smooth_image(), make_info(source="demo"))
    store.update_queue_state(record.id, "system", "enqueue", "outbox", state="queued")  # an old row
    status = queue.process_pending()
    assert status.failed == 1 and status.submitted == 0
    failed = store.get(record.id)
    assert failed.state == "failed" and failed.last_error == PRACTICE_SOURCE_MESSAGE
    assert not outbox.exists() or not any(outbox.iterdir())
    assert queue.retry_failed() == 0  # stays failed: retrying cannot send it


def test_a_pacs_gets_no_photo_without_a_patient_reference(
    store: CaptureStore, tmp_path: Path
) -> None:
    queue = SubmissionQueue(store, DicomWebTarget("http://127.0.0.1:9/dicom-web"))
    anonymous = store.add(smooth_image(), make_info(patient_ref="  "))
    with pytest.raises(SubmissionRefused, match="patient or encounter reference"):
        queue.enqueue(anonymous.id)
    assert store.get(anonymous.id).state == "accepted"
    # the outbox takes it (a folder another system reads; the reference may follow there)
    assert submit_blocker(store.get(anonymous.id), OutboxTarget.needs_patient_ref) == ""


def test_rejected_and_damaged_captures_are_refused(store: CaptureStore) -> None:
    rejected = store.add(smooth_image(), make_info(score=0.1, accepted=False))
    assert "only photos that passed" in submit_blocker(rejected, needs_patient_ref=False)
    damaged = store.get(store.add(smooth_image(), make_info()).id)
    from dataclasses import replace

    assert "cannot be sent" in submit_blocker(
        replace(damaged, problem="image file missing"), needs_patient_ref=False
    )


def test_capture_outcome_from_the_demo_feed_cannot_be_submitted(store: CaptureStore) -> None:
    context = CaptureContext("staff", "nurse", "P-1", "forearm", "")
    judgement = CaptureJudgement(True, 0.9, 0.5, "Good photo", ())

    def outcome(source: str) -> CaptureOutcome:
        record = store.add(smooth_image(), make_info(source=source))
        image = np.zeros((8, 8, 3), np.uint8)
        return CaptureOutcome(image, None, judgement, record, "", source, context)

    assert not outcome("demo").can_submit
    assert outcome("camera:0").can_submit
