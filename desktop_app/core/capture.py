"""Taking a capture: score the still on the capture grid, judge it, store it. No Qt here.

The still is stored in the :class:`~desktop_app.core.store.CaptureStore` before anything else
happens with it (before it is shown, submitted or discarded), whether it passed, failed, or could
not be scored at all, so that no photo is ever lost.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from desktop_app.core.gating import CaptureJudgement, judge_capture
from desktop_app.core.inference import (
    ColourOrder,
    QualityEngine,
    QualityResult,
    describe_model_error,
)
from desktop_app.core.store import CaptureInfo, CaptureRecord, CaptureStore, StorageError
from desktop_app.core.submission.policy import is_practice_source

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptureContext:
    """Who and what a capture is about (filled in before the photo is taken)."""

    mode: str  # "staff" | "kiosk"
    operator: str
    patient_ref: str
    body_site: str
    note: str


@dataclass(frozen=True)
class CaptureOutcome:
    """A taken still and what became of it.

    ``image_rgb`` uint8 ``[H, W, 3]``; ``result`` None when no model could score it; ``record``
    None when storing failed (``store_error`` says why; the image is still in memory).
    """

    image_rgb: np.ndarray
    result: QualityResult | None
    judgement: CaptureJudgement
    record: CaptureRecord | None
    store_error: str
    source: str
    context: CaptureContext
    elapsed_ms: float = 0.0
    #: What staff must be told with this photo (``core.sources.Frame.notice``), "" if nothing.
    notice: str = ""

    @property
    def can_submit(self) -> bool:
        """Accepted, stored and from a real camera (``core.submission.policy``; the target's own
        needs, such as a patient reference, are checked where the target is known)."""
        return (
            self.judgement.accepted
            and self.record is not None
            and not is_practice_source(self.source)
        )


def process_capture(
    engine: QualityEngine | None,
    store: CaptureStore | None,
    image: np.ndarray,
    colour_order: ColourOrder,
    context: CaptureContext,
    source: str,
    encoded: bytes | None = None,
    unscored_reason: str = "No quality model: this photo was not checked.",
    on_stored: Callable[[], None] | None = None,
) -> CaptureOutcome:
    """Score ``image`` (uint8 ``[H, W, 3]`` in ``colour_order``) on the capture grid, judge it and
    store it. Never raises for a bad image, a failing model or a failing disk.

    ``encoded`` (a file's original bytes, from the hot folder): a photo the store already holds
    (the same file offered again after a crash) is not stored twice; the outcome carries the
    existing record. ``on_stored`` is called once the photo is durably stored (the hot folder
    then marks the file done), not when storing failed."""
    rgb = image if colour_order == "RGB" else np.ascontiguousarray(image[:, :, ::-1])
    result: QualityResult | None = None
    if engine is not None:
        try:
            result = engine.score(rgb, grid="capture")
        except Exception as exc:  # a model failure must not lose the photo
            logger.exception("scoring the capture failed")
            unscored_reason = describe_model_error(exc, "run")
    if result is not None:
        judgement = judge_capture(result.score, result.threshold, result.reasons)
        score, threshold, version = result.score, result.threshold, result.model_version
        reasons = dict(result.reasons)
    else:
        judgement = CaptureJudgement(False, math.nan, math.nan, unscored_reason, ())
        score, threshold, version, reasons = math.nan, math.nan, "", {}
    info = CaptureInfo(
        mode=context.mode,
        operator=context.operator,
        patient_ref=context.patient_ref,
        body_site=context.body_site,
        note=context.note,
        score=score,
        threshold=threshold,
        model_version=version,
        reasons=reasons,
        accepted=judgement.accepted,
        source=source,
    )
    record: CaptureRecord | None = None
    store_error = ""
    if store is None:
        store_error = "The capture store is not available; this photo is not saved."
    else:
        try:
            record = store.add(rgb, info, encoded, dedupe=encoded is not None)
        except (StorageError, ValueError) as exc:
            store_error = str(exc)
            logger.error("capture not stored: %s", exc)
    if record is not None and on_stored is not None:
        try:
            on_stored()
        except Exception:  # marking the file done failed: it is offered again, deduplicated
            logger.exception("acknowledging the stored capture failed")
    return CaptureOutcome(rgb, result, judgement, record, store_error, source, context)
