"""The capture session: one source, one model, the live gate, captures and the submission queue.

A GUI-thread QObject that owns the worker threads (camera, inference, submission) and turns their
signals into what the windows show. Both the staff window and the kiosk use it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal, Slot

from desktop_app.app.services import AppServices
from desktop_app.core.capture import CaptureContext, CaptureOutcome
from desktop_app.core.capture_flow import CaptureFlow, FlowState
from desktop_app.core.gating import LiveGate
from desktop_app.core.inference import NO_MODEL_MESSAGE
from desktop_app.core.mailbox import LatestSlot
from desktop_app.core.sources import Frame, FrameSource, source_label
from desktop_app.core.store import CaptureRecord, CaptureStore
from desktop_app.core.submission import QueueStatus, SubmissionQueue
from desktop_app.core.submission.policy import is_practice_source, submit_blocker
from desktop_app.qt.workers.threads import (
    CameraWorker,
    CaptureRequest,
    DisplaySize,
    InferenceWorker,
    LiveScore,
    ModelInfo,
    PreviewFrame,
    SubmissionWorker,
    WorkerThread,
)

logger = logging.getLogger(__name__)


class CaptureSession(QObject):
    """Runs the workers and the gate. Every public method is for the GUI thread."""

    sig_preview = Signal(object)  # PreviewFrame
    sig_live = Signal(object, object)  # GateView, LiveScore (None: a view from the cheap cues)
    sig_capture_started = Signal(str)  # the capture's source ("camera:0", "hotfolder:/x/a.jpg")
    sig_capture_done = Signal(object)  # CaptureOutcome
    sig_capture_refused = Signal(str)
    sig_source_status = Signal(str, bool)
    sig_source_problem = Signal(str)
    sig_model_status = Signal(str, bool)
    sig_queue_status = Signal(object)  # QueueStatus
    sig_queue_error = Signal(str)
    sig_image_scored = Signal(str, object)  # key, QualityResult | None
    sig_image_loaded = Signal(str, int, object, str)  # capture id, request, RGB | None, error

    # requests into the worker threads (queued connections)
    _sig_load_model = Signal(str, str, bool)
    _sig_unload_model = Signal()
    _sig_capture = Signal(object)
    _sig_score_image = Signal(str, object)
    _sig_load_image = Signal(str, int, bool)
    _sig_enqueue = Signal(str)
    _sig_process_queue = Signal()

    def __init__(
        self,
        store: CaptureStore | None,
        queue: SubmissionQueue | None,
        context_provider: Callable[[], CaptureContext],
        auto_capture_hold_s: float | None = None,
        submission_interval_s: float = 5.0,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.queue = queue
        self.context_provider = context_provider
        self.capture_blocker: Callable[[], str] = lambda: ""
        self.display_size = DisplaySize()
        self.preview_slot: LatestSlot[PreviewFrame] = LatestSlot()
        self.inference_slot: LatestSlot[Frame] = LatestSlot()
        self.gate = LiveGate(threshold=0.5, auto_capture_hold_s=auto_capture_hold_s)
        self.model_info: ModelInfo | None = None
        self.model_error = ""
        self.model_loading = False
        self.source_name = ""
        self.source_kind = ""
        self.hot_folder: Path | None = None
        self.source_is_practice = False
        self.source_ok = False
        self.source_message = ""
        self.flow = CaptureFlow(FlowState.LIVE)  # the one answer to "showing a capture?"
        self.last_capture_request_at = 0.0
        self._camera: WorkerThread | None = None
        self._camera_worker: CameraWorker | None = None

        self._inference_worker = InferenceWorker(self.inference_slot, store)
        self._inference = WorkerThread(self._inference_worker, "inference", niceness=10)
        w = self._inference_worker
        self._sig_load_model.connect(w._on_load_model)
        self._sig_unload_model.connect(w._on_unload_model)
        self._sig_capture.connect(w._on_capture)
        self._sig_score_image.connect(w._on_score_image)
        self._sig_load_image.connect(w._on_load_image)
        w.sig_model_ready.connect(self._on_model_ready)
        w.sig_model_failed.connect(self._on_model_failed)
        w.sig_live_scored.connect(self._on_live_scored)
        w.sig_capture_done.connect(self._on_capture_done)
        w.sig_image_scored.connect(self.sig_image_scored)
        w.sig_image_loaded.connect(self.sig_image_loaded)
        self._inference.start()

        self._submission: WorkerThread | None = None
        self._submission_worker: SubmissionWorker | None = None
        self._queue_timer = QTimer(self)
        self._queue_timer.timeout.connect(self._on_queue_timer)
        self.set_queue(queue, submission_interval_s)

    # ---- model -----------------------------------------------------------------------------
    @property
    def model_ready(self) -> bool:
        return self.model_info is not None

    def load_model(
        self, path: Path | None, provider: str = "auto", low_memory: bool = True
    ) -> None:
        """Load in the inference thread; ``sig_model_status`` reports the outcome.

        ``low_memory``: onnxruntime's memory arena off (see ``QualityEngine``)."""
        self.model_info = None
        if path is None:
            self._sig_unload_model.emit()
            self._on_model_failed(NO_MODEL_MESSAGE)
            return
        self.model_loading = True
        self.model_error = ""
        self.sig_model_status.emit(f"Loading model {Path(path).name}…", True)
        self._sig_load_model.emit(str(path), provider, low_memory)

    @Slot(object)
    def _on_model_ready(self, info: ModelInfo) -> None:
        self.model_loading = False
        self.model_info = info
        self.model_error = ""
        self.gate.threshold = info.threshold
        self.gate.reset()
        self.sig_model_status.emit(
            f"Model {info.name} {info.version} ({info.precision}, {info.provider}), "
            f"threshold {info.threshold:.2f}",
            True,
        )

    @Slot(str)
    def _on_model_failed(self, message: str) -> None:
        self.model_loading = False
        self.model_info = None
        self.model_error = message
        logger.warning("no usable model: %s", message)
        self.sig_model_status.emit(message, False)

    # ---- source ----------------------------------------------------------------------------
    def set_source(self, source: FrameSource) -> None:
        """Stop the current source (if any) and start ``source`` in a fresh camera thread."""
        self.stop_source()
        self.source_name = source.name
        label = source_label(source)
        self.source_kind = str(source.kind)
        self.hot_folder = Path(label.split(":", 1)[1]) if label.startswith("hotfolder:") else None
        self.source_is_practice = is_practice_source(label)
        self.source_ok = False
        worker = CameraWorker(source, self.preview_slot, self.inference_slot, self.display_size)
        thread = WorkerThread(worker, "camera")
        thread.thread.started.connect(worker.run)
        worker.on_scene_change = self._inference_worker.cancel_live
        worker.sig_preview_ready.connect(self._on_preview_ready)
        worker.sig_inference_ready.connect(self._inference_worker._on_frame_available)
        worker.sig_capture_frame.connect(self._on_capture_frame)
        worker.sig_status.connect(self._on_source_status)
        worker.sig_problem.connect(self.sig_source_problem)
        if not self.flow.scoring_live:
            worker.inference_paused.set()
        if self.flow.checking:
            worker.capture_hold.set()
        self._camera_worker = worker
        self._camera = thread
        self.gate.reset()
        thread.start()

    def stop_source(self) -> None:
        if self._camera is not None:
            self._camera.stop()
            self._camera = None
            self._camera_worker = None
        self.preview_slot.clear()
        self.inference_slot.clear()

    @property
    def is_hot_folder(self) -> bool:
        """True when photos come from a tethered camera's hot folder (no live picture)."""
        return self.hot_folder is not None

    @property
    def source_resolution(self) -> tuple[int, int] | None:
        worker = self._camera_worker
        return worker.source.resolution if worker is not None else None

    @Slot(str, bool)
    def _on_source_status(self, message: str, ok: bool) -> None:
        self.source_ok = ok
        self.source_message = message
        self.sig_source_status.emit(message, ok)

    @Slot()
    def _on_preview_ready(self) -> None:
        item = self.preview_slot.take()
        if item is not None:
            self.sig_preview.emit(item)
            if item.cues is not None and self._live_gate_on():
                view = self.gate.update_cues(item.cues, time.monotonic())
                if view is not None:  # the cheap cues changed what the gate shows
                    self.sig_live.emit(view, None)
                    if view.capture_due:
                        self.capture(auto=True)

    def _live_gate_on(self) -> bool:
        return self.flow.scoring_live and self.model_info is not None

    # ---- live gate -------------------------------------------------------------------------
    @Slot(object)
    def _on_live_scored(self, live: LiveScore) -> None:
        if not self._live_gate_on():
            return
        result = live.result
        now = time.monotonic()
        view = self.gate.update(result.score, result.reasons, now, live.frame_timestamp, result)
        self.sig_live.emit(view, live)
        if view.capture_due:
            self.capture(auto=True)

    def set_auto_capture(self, hold_s: float | None) -> None:
        self.gate.set_auto_capture(hold_s)

    @property
    def auto_capture_on(self) -> bool:
        return self.gate.auto_capture is not None

    # ---- capture ---------------------------------------------------------------------------
    def capture(self, auto: bool = False) -> bool:
        """Take the newest full-resolution frame as a still; False (and a message) if not now."""
        if self.flow.checking:
            return False
        blocker = self.capture_blocker()
        if blocker:
            if not auto:
                self.sig_capture_refused.emit(blocker)
            return False
        worker = self._camera_worker
        frame = worker.latest_frame() if worker is not None else None
        if worker is None or frame is None:
            self.sig_capture_refused.emit("No picture from the camera yet.")
            return False
        self._submit_capture(frame.image.copy(), frame.colour_order, source_label(worker.source))
        return True

    @Slot(object)
    def _on_capture_frame(self, frame: Frame) -> None:
        """A hot-folder file: always evaluated and stored as a capture, whatever the screen."""
        worker = self._camera_worker
        folder = source_label(worker.source) if worker is not None else "hotfolder:"
        self._submit_capture(
            frame.image,
            frame.colour_order,
            f"{folder}/{frame.label}",
            frame.encoded,
            frame.on_stored,
            frame.notice,
        )

    def _submit_capture(
        self,
        image: np.ndarray,
        colour_order: str,
        source: str,
        encoded: bytes | None = None,
        on_stored: Callable[[], None] | None = None,
        notice: str = "",
    ) -> None:
        self.flow.capture_requested()
        self.gate.note_capture()
        self.last_capture_request_at = time.monotonic()
        if self._camera_worker is not None:
            self._camera_worker.inference_paused.set()
            self._camera_worker.capture_hold.set()
        self.inference_slot.clear()
        self._inference_worker.cancel_live()
        self.sig_capture_started.emit(source)
        self._sig_capture.emit(
            CaptureRequest(
                image,
                colour_order,
                self.context_provider(),
                source,
                encoded,
                time.monotonic(),
                on_stored,
                notice,
            ),
        )

    @Slot(object)
    def _on_capture_done(self, outcome: CaptureOutcome) -> None:
        self.flow.verdict_arrived(outcome)
        self.gate.capture_judged(outcome.judgement.accepted)
        if self._camera_worker is not None:
            self._camera_worker.capture_hold.clear()
        self.sig_capture_done.emit(outcome)

    def pause_live(self) -> None:
        """Stop scoring live frames (the preview goes on), e.g. while the kiosk waits for the
        next patient (``CaptureFlow.new_patient``)."""
        self.flow.new_patient()
        if self._camera_worker is not None:
            self._camera_worker.inference_paused.set()

    def resume_live(self) -> None:
        """Back to the live view (after Submit or Retake): the gate starts afresh."""
        self.flow.start_live()
        self.gate.reset()
        if self._camera_worker is not None and not self.flow.checking:
            self._camera_worker.inference_paused.clear()

    # ---- gallery scoring and submission ----------------------------------------------------
    def load_image(self, capture_id: str, request: int, score: bool) -> None:
        """Decode a stored capture in the inference thread (``sig_image_loaded``, which carries
        ``request`` back so that the asker can drop stale answers), then score it when ``score``
        (``sig_image_scored``)."""
        self._sig_load_image.emit(capture_id, request, score)

    def score_image(self, key: str, image_rgb: np.ndarray) -> None:
        """Score an image on the capture grid in the inference thread (``sig_image_scored``)."""
        self._sig_score_image.emit(key, image_rgb)

    def send_blocker(self, record: CaptureRecord) -> str:
        """Why ``record`` may not be sent to the configured target ("" = it may), by the one
        rule in ``core.submission.policy``."""
        needs_ref = self.queue.target.needs_patient_ref if self.queue is not None else False
        return submit_blocker(record, needs_ref)

    @property
    def capture_busy(self) -> bool:
        """A still is being checked (``CaptureFlow.checking``)."""
        return self.flow.checking

    @property
    def showing_capture(self) -> bool:
        return self.flow.showing_capture

    def submit_shown(self) -> bool:
        """Queue the accepted photo on screen (``CaptureFlow.submit``); live scoring stays off
        until ``resume_live`` or ``pause_live``."""
        outcome = self.flow.submit()
        if self._camera_worker is not None:
            self._camera_worker.inference_paused.set()
        return outcome.record is not None and self.submit(outcome.record.id)

    def submit(self, capture_id: str) -> bool:
        """Queue a stored capture (the gallery's resend too); the flow is not changed."""
        if self._submission_worker is None:
            return False
        self._sig_enqueue.emit(capture_id)
        return True

    def set_queue(self, queue: SubmissionQueue | None, interval_s: float = 5.0) -> None:
        """Replace the submission queue (new target): the old worker thread is stopped first."""
        self._queue_timer.stop()
        if self._submission is not None and self._submission_worker is not None:
            self._submission.stop()
            self._sig_enqueue.disconnect(self._submission_worker._on_enqueue)
            self._sig_process_queue.disconnect(self._submission_worker._on_tick)
        self._submission = None
        self._submission_worker = None
        self.queue = queue
        if queue is None:
            return
        worker = SubmissionWorker(queue)
        thread = WorkerThread(worker, "submission", niceness=10)
        thread.thread.started.connect(worker._on_tick)
        self._sig_enqueue.connect(worker._on_enqueue)
        self._sig_process_queue.connect(worker._on_tick)
        worker.sig_status.connect(self.sig_queue_status)
        worker.sig_error.connect(self.sig_queue_error)
        self._submission_worker = worker
        self._submission = thread
        self._queue_timer.setInterval(max(100, int(interval_s * 1000)))
        self._queue_timer.start()
        thread.start()

    @Slot()
    def _on_queue_timer(self) -> None:
        worker = self._submission_worker
        if worker is not None and not worker.busy.is_set():
            self._sig_process_queue.emit()

    def process_queue_now(self) -> None:
        """Run a submission pass now (e.g. after "Retry failed"), in the submission thread."""
        self._sig_process_queue.emit()

    # ---- shutdown --------------------------------------------------------------------------
    def shutdown(self) -> bool:
        """Stop every worker thread (flag + quit + wait); True when all finished cleanly."""
        clean = True
        if self._camera is not None:
            clean &= self._camera.stop()
            self._camera = None
            self._camera_worker = None
        clean &= self._inference.stop()
        self._queue_timer.stop()
        if self._submission is not None:
            clean &= self._submission.stop()
            self._submission = None
        return clean

    @property
    def threads(self) -> list[WorkerThread]:
        return [t for t in (self._camera, self._inference, self._submission) if t is not None]


def make_session(
    services: AppServices,
    context_provider: Callable[[], CaptureContext],
    capture_blocker: Callable[[], str],
    auto_capture: bool,
    parent: QObject,
) -> CaptureSession:
    """The capture session a window runs (staff and kiosk differ only in auto-capture)."""
    settings = services.settings
    session = CaptureSession(
        services.store,
        services.queue,
        context_provider,
        auto_capture_hold_s=settings.auto_capture_hold_s if auto_capture else None,
        submission_interval_s=settings.submission_interval_s,
        parent=parent,
    )
    session.capture_blocker = capture_blocker
    return session


def start_session(session: CaptureSession, services: AppServices) -> None:
    """Load the configured model and open the frame source (after the window's signals are
    connected, so the first status messages reach it)."""
    settings = services.settings
    session.load_model(services.model_path, settings.provider, settings.low_memory_inference)
    session.set_source(services.source)


def queue_summary(status: QueueStatus | None) -> str:
    """One line for the UI about the submission queue."""
    if status is None:
        return "Sending: not configured"
    parts = [f"{status.queued} waiting", f"{status.submitted} sent"]
    if status.failed:
        parts.append(f"{status.failed} failed")
    line = f"Sending to {status.target or 'target'}: " + ", ".join(parts)
    if status.last_error and (status.queued or status.failed):
        line += f" - last problem: {status.last_error}"
    return line
