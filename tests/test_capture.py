"""process_capture: score, judge and store every still, whatever goes wrong."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from desktop_app.core.capture import CaptureContext, process_capture
from desktop_app.core.inference import QualityEngine
from desktop_app.core.store import CaptureStore

CONTEXT = CaptureContext("staff", "nurse", "ENC-1", "Forearm (left)", "itchy")


def sharp_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)


@pytest.fixture
def engine(test_model_path: Path) -> QualityEngine:
    return QualityEngine(test_model_path, providers="cpu", intra_op_threads=1)


def test_sharp_still_is_accepted_and_stored(engine: QualityEngine, store: CaptureStore) -> None:
    outcome = process_capture(engine, store, sharp_image(), "RGB", CONTEXT, "camera:0")
    assert outcome.judgement.accepted and outcome.can_submit
    assert outcome.result is not None and outcome.result.grid == "capture"
    assert outcome.record is not None and outcome.record.state == "accepted"
    assert outcome.record.info.patient_ref == "ENC-1"
    assert outcome.record.info.score == pytest.approx(outcome.result.score)
    assert store.load_image(outcome.record.id).shape == (240, 320, 3)


def test_blurred_still_is_rejected_with_blur_reason_and_still_stored(
    engine: QualityEngine, store: CaptureStore
) -> None:
    blurred = cv2.GaussianBlur(sharp_image(), (0, 0), 8)
    outcome = process_capture(engine, store, blurred, "RGB", CONTEXT, "demo")
    assert not outcome.judgement.accepted and not outcome.can_submit
    assert outcome.judgement.message == "Retake: Hold steady / focus"
    assert outcome.record is not None and outcome.record.state == "rejected"


def test_bgr_input_is_stored_as_rgb(engine: QualityEngine, store: CaptureStore) -> None:
    image = sharp_image()
    outcome = process_capture(engine, store, image[:, :, ::-1], "BGR", CONTEXT, "camera:0")
    assert np.array_equal(outcome.image_rgb, image)


def test_without_model_the_photo_is_kept_unscored(store: CaptureStore) -> None:
    outcome = process_capture(None, store, sharp_image(), "RGB", CONTEXT, "demo")
    assert not outcome.can_submit and "not checked" in outcome.judgement.message
    assert outcome.record is not None and math.isnan(outcome.record.info.score)


def test_storage_failure_keeps_image_in_memory_and_says_why(
    engine: QualityEngine, tmp_path: Path
) -> None:
    store = CaptureStore(tmp_path / "store")
    store.close()  # a store that can no longer write
    outcome = process_capture(engine, store, sharp_image(), "RGB", CONTEXT, "demo")
    assert outcome.record is None and outcome.store_error
    assert outcome.judgement.accepted and not outcome.can_submit
    assert outcome.image_rgb.shape == (240, 320, 3)


def test_engine_run_can_be_cancelled_from_another_thread(engine: QualityEngine) -> None:
    """The live scoring gives way to a capture: a terminated RunOptions aborts the run."""
    import onnxruntime as ort

    run = ort.RunOptions()
    run.terminate = True
    with pytest.raises(Exception, match="terminate"):
        engine.score(sharp_image(), grid="live", run_options=run)
    assert engine.score(sharp_image(), grid="live").grid == "live"  # the engine still works


def test_engine_without_memory_arena_scores_the_same(
    engine: QualityEngine, test_model_path: Path
) -> None:
    lean = QualityEngine(test_model_path, providers="cpu", memory_arena=False)
    assert lean._session.get_session_options().enable_cpu_mem_arena is False
    assert engine._session.get_session_options().enable_cpu_mem_arena is True
    image = sharp_image(3)
    assert lean.score(image).score == pytest.approx(engine.score(image).score, abs=1e-6)
