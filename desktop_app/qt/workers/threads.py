"""Workers that keep the GUI thread free: camera capture, inference, submission.

Each worker is a QObject moved to its own QThread. Frames travel through one-slot "latest wins"
mailboxes (``core.mailbox.LatestSlot``): the camera never waits for anyone, the preview shows the
newest frame, and the inference worker scores the newest frame when it is ready. Results come
back by queued signals; only GUI-thread slots touch widgets. Shutdown is a stop flag, then
``quit()`` and ``wait()`` on the thread, never ``terminate()``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from desktop_app.core.bench import synthetic_frame
from desktop_app.core.capture import CaptureContext, process_capture
from desktop_app.core.cues import CueAnalyzer, FrameCues, view_difference
from desktop_app.core.inference import QualityEngine, QualityResult, describe_model_error
from desktop_app.core.mailbox import LatestSlot
from desktop_app.core.model_meta import ModelContractError
from desktop_app.core.sources import Frame, FrameSource, ReportsProblems, ResilientSource
from desktop_app.core.store import CaptureStore, StorageError, prepare_image_bytes
from desktop_app.core.submission import SubmissionQueue

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreviewFrame:
    """A frame plus its copy for display, already scaled to the view: uint8 ``[h, w, 4]`` in
    BGRX byte order (Qt's RGB32: painted without a per-frame format conversion)."""

    frame: Frame
    display_bgrx: np.ndarray
    cues: FrameCues | None = None


@dataclass(frozen=True)
class LiveScore:
    """A live frame's result; ``frame_size`` (width, height) of the frame it was computed on."""

    frame_index: int
    frame_size: tuple[int, int]
    frame_timestamp: float
    result: QualityResult


@dataclass(frozen=True)
class CaptureRequest:
    """A still to score on the capture grid and store (``encoded``: a hot-folder file's bytes)."""

    image: np.ndarray
    colour_order: str
    context: CaptureContext
    source: str
    encoded: bytes | None
    requested_at: float
    # a hot-folder file: marks it done once stored (core.sources.Frame.on_stored)
    on_stored: Callable[[], None] | None = None
    notice: str = ""  # core.sources.Frame.notice: told to staff with the outcome


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    name: str
    version: str
    precision: str
    provider: str
    threshold: float
    load_ms: float
    reason_names: tuple[str, ...]


class DisplaySize:
    """The preview's target size in pixels, written by the GUI thread, read by the camera thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._size = (0, 0)

    def set(self, width: int, height: int) -> None:
        with self._lock:
            self._size = (max(0, width), max(0, height))

    def get(self) -> tuple[int, int]:
        with self._lock:
            return self._size


def fit_size(width: int, height: int, box_w: int, box_h: int) -> tuple[int, int]:
    """Largest (w, h) with the aspect ratio of ``width x height`` that fits the box."""
    if box_w <= 0 or box_h <= 0:
        return (width, height)
    scale = min(box_w / width, box_h / height)
    return (max(1, round(width * scale)), max(1, round(height * scale)))


class StoppableWorker(QObject):
    """What :class:`WorkerThread` runs: a QObject whose ``request_stop`` (called from the GUI
    thread) makes its queued and running work end soon."""

    def request_stop(self) -> None:
        raise NotImplementedError


#: An unchanged view (by the cues' thumbnail) is scored again only after this many seconds: the
#: verdict on screen already belongs to it, and every live run costs both cores about a quarter
#: of a second. Any change of view, or of the cues' verdict, is scored at once.
RESCORE_UNCHANGED_S = 6.0


class CameraWorker(StoppableWorker):
    """Reads a source in a loop on its thread.

    Live frames go to the preview mailbox (scaled to the view and converted to RGB here, off the
    GUI thread) and, unless paused, to the inference mailbox. Hot-folder files are captures and go
    out through ``sig_capture_frame``.

    ``capture_hold``: while a capture is being checked the source is not read at all (the preview
    holds still on the captured moment, as a camera's does), so the capture's scoring has the CPU
    to itself on a small machine. A source's frames or files wait for the next read.
    """

    sig_preview_ready = Signal()
    sig_inference_ready = Signal()
    sig_capture_frame = Signal(object)  # Frame
    sig_status = Signal(str, bool)  # message, ok
    sig_problem = Signal(str)  # a file that could not be read (the source goes on)

    def __init__(
        self,
        source: FrameSource,
        preview_slot: LatestSlot[PreviewFrame],
        inference_slot: LatestSlot[Frame],
        display_size: DisplaySize,
        retry_interval_s: float = 1.0,
        live_interval_s: float = 0.1,
        rescore_s: float = RESCORE_UNCHANGED_S,
        cues: CueAnalyzer | None = None,
    ) -> None:
        super().__init__()
        if isinstance(source, ReportsProblems):  # e.g. the hot folder's unreadable files
            source.on_problem = self.sig_problem.emit
        self.source = ResilientSource(source, self.sig_status.emit, retry_interval_s)
        self.preview_slot = preview_slot
        self.inference_slot = inference_slot
        self.display_size = display_size
        self.inference_paused = threading.Event()
        self.capture_hold = threading.Event()
        self._stop = threading.Event()
        self._latest_lock = threading.Lock()
        self._latest: Frame | None = None
        # The gate needs a few results a second, not one per frame: feeding the model at most
        # every ``live_interval_s`` leaves CPU to the preview on small machines.
        self.live_interval_s = live_interval_s
        self._last_live_put = 0.0
        self.rescore_s = rescore_s
        self.cues = cues if cues is not None else CueAnalyzer()
        self.on_scene_change: Callable[[], None] | None = None
        self._sent_thumb: np.ndarray | None = None
        self._sent_problem: str | None = None
        self._was_paused = True
        self.live_skipped_unchanged = 0
        self.cue_ms: deque[float] = deque(maxlen=600)  # recent per-frame cue times (bench)
        self.min_cancel_interval_s = 0.5
        self._cue_failed = False
        self._last_cancel = -math.inf

    def latest_frame(self) -> Frame | None:
        """The newest full-resolution live frame (thread-safe)."""
        with self._latest_lock:
            return self._latest

    def request_stop(self) -> None:
        """Ask the loop to end (any thread); the owner then calls ``quit()`` and ``wait()``."""
        self._stop.set()
        self.source.interrupt()

    @Slot()
    def run(self) -> None:
        try:
            self.source.open()
            while not self._stop.is_set():
                if self.capture_hold.is_set():
                    self._stop.wait(0.01)
                    continue
                try:
                    frame = self.source.read()
                except Exception:  # a source bug must not kill the thread silently
                    logger.exception("reading %s failed", self.source.name)
                    self.sig_status.emit(f"{self.source.name} failed; trying again.", False)
                    self._stop.wait(1.0)
                    continue
                if frame is None:
                    continue
                if frame.is_capture:
                    self.sig_capture_frame.emit(frame)
                    continue
                self._publish(frame)
        finally:
            self.source.close()

    def _publish(self, frame: Frame) -> None:
        with self._latest_lock:
            self._latest = frame
        box_w, box_h = self.display_size.get()
        w, h = fit_size(frame.width, frame.height, box_w, box_h)
        image = frame.image
        if (w, h) != (frame.width, frame.height):
            # area averaging only where linear would alias (more than 2x smaller): it costs
            # several times more per frame at 30 fps
            interp = cv2.INTER_AREA if 2 * w < frame.width else cv2.INTER_LINEAR
            image = cv2.resize(image, (w, h), interpolation=interp)
        code = cv2.COLOR_BGR2BGRA if frame.colour_order == "BGR" else cv2.COLOR_RGB2BGRA
        display = cv2.cvtColor(image, code)  # always a new buffer, never the source's
        cues: FrameCues | None = None
        # While the model is paused (a capture is being checked, the kiosk waits for a patient)
        # nobody reads the cues: their ~5 ms a frame goes to the capture check instead.
        if not self.inference_paused.is_set():
            try:
                cues = self.cues.analyse(frame.image, frame.colour_order, frame.timestamp)
                self.cue_ms.append(cues.compute_ms)
            except Exception:  # a cue bug must not stop the preview (the model still gates)
                if not self._cue_failed:
                    logger.exception("frame cues failed")
                self._cue_failed = True
        if self.preview_slot.put(PreviewFrame(frame, display, cues)):
            self.sig_preview_ready.emit()
        if self.inference_paused.is_set():
            self._was_paused = True
            return
        self._send_to_model(frame, cues)

    def _send_to_model(self, frame: Frame, cues: FrameCues | None) -> None:
        since = frame.timestamp - self._last_live_put
        fresh_start = self._was_paused
        self._was_paused = False
        verdict_changed = cues is not None and cues.problem != self._sent_problem
        # the last frame sent shows an older view than this one: its result will be dropped
        outdated = cues is not None and cues.changed_at > self._last_live_put
        if not fresh_start and not verdict_changed:
            if since < self.live_interval_s:
                return
            if (
                not outdated
                and cues is not None
                and self._sent_thumb is not None
                and since < self.rescore_s
                and view_difference(cues.thumb, self._sent_thumb)
                < self.cues.thresholds.unchanged_difference
            ):
                self.live_skipped_unchanged += 1
                return
        if (
            verdict_changed
            and not fresh_start
            and self.on_scene_change is not None
            and frame.timestamp - self._last_cancel >= self.min_cancel_interval_s
        ):
            # the result on the old view would only be dropped; a verdict that flickers must
            # not cancel every run, hence the minimum interval
            self._last_cancel = frame.timestamp
            self.on_scene_change()
        self._last_live_put = frame.timestamp
        if cues is not None:
            self._sent_thumb, self._sent_problem = cues.thumb, cues.problem
        if self.inference_slot.put(frame):
            self.sig_inference_ready.emit()


class InferenceWorker(StoppableWorker):
    """Owns the quality engine; scores the newest live frame, captures and gallery images."""

    sig_model_ready = Signal(object)  # ModelInfo
    sig_model_failed = Signal(str)
    sig_live_scored = Signal(object)  # LiveScore
    sig_capture_done = Signal(object)  # CaptureOutcome
    sig_image_scored = Signal(str, object)  # key, QualityResult | None
    sig_image_loaded = Signal(str, int, object, str)  # capture id, request, RGB | None, error

    def __init__(self, inference_slot: LatestSlot[Frame], store: CaptureStore | None) -> None:
        super().__init__()
        self.inference_slot = inference_slot
        self.store = store
        self.engine: QualityEngine | None = None
        self.stopping = False
        self.live_scored = 0
        self.live_cancelled = 0
        self._live_run_lock = threading.Lock()
        self._live_run: Any = None  # onnxruntime.RunOptions of the live run in progress
        self.warm_frame_hw = (720, 1280)  # the frame size the capture path is warmed up with
        self.warm_up_ms = 0.0

    def request_stop(self) -> None:
        """Called from the GUI thread at shutdown: queued work is dropped from now on."""
        self.stopping = True

    @Slot(str, str, bool)
    def _on_load_model(self, path: str, provider: str, low_memory: bool) -> None:
        self.engine = None
        try:
            engine = QualityEngine(Path(path), providers=provider, memory_arena=not low_memory)
        except ModelContractError as exc:
            self.sig_model_failed.emit(str(exc))
            return
        except Exception as exc:  # onnxruntime may raise anything on a broken install
            logger.exception("model load failed")
            self.sig_model_failed.emit(describe_model_error(exc, "load", Path(path).name))
            return
        self.engine = engine
        meta = engine.meta
        self.sig_model_ready.emit(
            ModelInfo(
                path=Path(path),
                name=meta.model_name,
                version=meta.model_version,
                precision=meta.precision,
                provider=engine.provider,
                threshold=engine.threshold,
                load_ms=engine.load_ms,
                reason_names=tuple(meta.reason_names),
            ),
        )
        self._warm_capture_path(engine)

    def _warm_capture_path(self, engine: QualityEngine) -> None:
        """One dummy capture-grid scoring right after loading, here in the worker thread: the
        first run of a new input shape is slow (onnxruntime plans and allocates), and it would
        otherwise land on the session's first capture."""
        if self.stopping:
            return
        import onnxruntime as ort

        t0 = time.perf_counter()
        frame = synthetic_frame(*self.warm_frame_hw, seed=3)
        for grid in ("capture", "live"):
            run = ort.RunOptions()
            run.log_severity_level = 4
            with self._live_run_lock:  # a capture asked for meanwhile cancels the warm-up
                self._live_run = run
            try:
                engine.score(frame, grid=grid, run_options=run)  # type: ignore[arg-type]
            except Exception:  # only a warm-up: the real capture reports its own failure
                if not run.terminate:
                    logger.warning("capture warm-up failed", exc_info=True)
                return
            finally:
                with self._live_run_lock:
                    self._live_run = None
        prepare_image_bytes(np.ascontiguousarray(frame[:64, :64]), None)  # the JPEG encoder
        self.warm_up_ms = (time.perf_counter() - t0) * 1000.0
        logger.info("capture path warmed up in %.0f ms", self.warm_up_ms)

    @Slot()
    def _on_unload_model(self) -> None:
        self.engine = None

    @Slot()
    def _on_frame_available(self) -> None:
        frame = self.inference_slot.take()
        if frame is None or self.engine is None or self.stopping:
            return
        import onnxruntime as ort

        run = ort.RunOptions()
        run.log_severity_level = 4  # a capture cancelling this run is not an error to log
        with self._live_run_lock:
            self._live_run = run
        try:
            result = self.engine.score(
                frame.image, grid="live", colour_order=frame.colour_order, run_options=run
            )
        except Exception:
            if run.terminate:
                self.live_cancelled += 1  # a capture asked for the CPU: not an error
            else:
                logger.exception("live scoring failed")
            return
        finally:
            with self._live_run_lock:
                self._live_run = None
        self.live_scored += 1
        self.sig_live_scored.emit(
            LiveScore(frame.index, (frame.width, frame.height), frame.timestamp, result),
        )

    def cancel_live(self) -> None:
        """Abort the live scoring in progress, if any (any thread): a capture goes first."""
        with self._live_run_lock:
            if self._live_run is not None:
                self._live_run.terminate = True

    @Slot(object)
    def _on_capture(self, request: CaptureRequest) -> None:
        outcome = process_capture(
            self.engine,
            self.store,
            request.image,
            "BGR" if request.colour_order == "BGR" else "RGB",
            request.context,
            request.source,
            request.encoded,
            on_stored=request.on_stored,
        )
        elapsed = (time.monotonic() - request.requested_at) * 1000.0
        self.sig_capture_done.emit(
            dataclasses.replace(outcome, elapsed_ms=elapsed, notice=request.notice)
        )

    @Slot(str, int, bool)
    def _on_load_image(self, capture_id: str, request: int, score: bool) -> None:
        """Decode a stored photo here, not in the GUI thread (a 12 MP JPEG takes a few hundred
        ms); then, if asked, score it for the heat map (``sig_image_scored``)."""
        if self.store is None:
            self.sig_image_loaded.emit(
                capture_id, request, None, "The capture store is not available."
            )
            return
        try:
            image = self.store.load_image(capture_id)
        except (StorageError, KeyError) as exc:
            message = str(exc) if isinstance(exc, StorageError) else "This capture was deleted."
            self.sig_image_loaded.emit(capture_id, request, None, message)
            return
        self.sig_image_loaded.emit(capture_id, request, image, "")
        if score:
            self._on_score_image(capture_id, image)

    @Slot(str, object)
    def _on_score_image(self, key: str, image_rgb: np.ndarray) -> None:
        if self.engine is None or self.stopping:
            self.sig_image_scored.emit(key, None)
            return
        try:
            result = self.engine.score(image_rgb, grid="capture")
        except Exception:
            logger.exception("scoring %s failed", key)
            result = None
        self.sig_image_scored.emit(key, result)


class SubmissionWorker(StoppableWorker):
    """Runs ``SubmissionQueue.process_pending`` passes in its thread when asked.

    The periodic ask comes from a timer in the GUI thread (no timer lives in this thread, so
    nothing thread-bound outlives the thread); ``busy`` lets the asker skip a tick while a slow
    pass (an unreachable server) is still running.
    """

    sig_status = Signal(object)  # QueueStatus
    sig_error = Signal(str)

    def __init__(self, queue: SubmissionQueue) -> None:
        super().__init__()
        self.queue = queue
        self.stopping = False
        self.busy = threading.Event()

    def request_stop(self) -> None:
        """Called from the GUI thread at shutdown: a send in progress gives up now, so the
        thread finishes within the stop timeout (the capture stays queued)."""
        self.stopping = True
        self.queue.target.cancel_pending()

    @Slot(str)
    def _on_enqueue(self, capture_id: str) -> None:
        try:
            self.queue.enqueue(capture_id)
        except Exception as exc:
            logger.exception("enqueue %s failed", capture_id)
            self.sig_error.emit(str(exc))
        self._on_tick()

    @Slot()
    def _on_tick(self) -> None:
        if self.stopping:
            return
        self.busy.set()
        try:
            status = self.queue.process_pending()
        except Exception as exc:  # the queue must never take the app down
            logger.exception("submission pass failed")
            self.sig_error.emit(f"Sending failed: {exc}")
            return
        finally:
            self.busy.clear()
        self.sig_status.emit(status)


def lower_current_thread_priority(niceness: int) -> None:
    """Run the calling thread (and threads it creates later, such as onnxruntime's pool) at a
    lower CPU priority, so that on a small machine the GUI thread is served first (Linux only:
    nice values are per thread there)."""
    if not sys.platform.startswith("linux") or niceness <= 0:
        return
    try:
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, current + niceness))
    except OSError as exc:
        logger.debug("cannot lower thread priority: %s", exc)


class WorkerThread:
    """A QThread with one worker moved onto it; :meth:`stop` is flag + ``quit()`` + ``wait()``.

    ``niceness`` > 0 lowers the thread's CPU priority as it starts (see
    :func:`lower_current_thread_priority`).
    """

    def __init__(self, worker: StoppableWorker, name: str, niceness: int = 0) -> None:
        self.worker = worker
        self.thread = QThread()
        self.thread.setObjectName(name)
        worker.moveToThread(self.thread)
        if niceness > 0:
            self.thread.started.connect(
                lambda: lower_current_thread_priority(niceness),
                Qt.ConnectionType.DirectConnection,
            )

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_ms: int = 10_000) -> bool:
        """Stop cleanly; True when the thread has finished within ``timeout_ms``."""
        self.worker.request_stop()
        self.thread.quit()
        finished = bool(self.thread.wait(timeout_ms))
        if not finished:
            logger.error(
                "thread %s did not finish within %d ms", self.thread.objectName(), timeout_ms
            )
        return finished
