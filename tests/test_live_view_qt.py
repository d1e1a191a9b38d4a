"""The live view's drawing (pytest-qt, offscreen): the heat map leaves the skin's colours alone,
the framing guide is drawn; the camera worker does not send an unchanged view to the model again;
the inference worker warms the capture path up at load."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QColor
from pytestqt.qtbot import QtBot

from desktop_app.core.mailbox import LatestSlot
from desktop_app.core.model_meta import GridSpec
from desktop_app.core.overlay import patch_cells
from desktop_app.core.sources import Frame
from desktop_app.core.tiling import plan_layout
from desktop_app.qt.compat import ensure_display
from desktop_app.qt.views.widgets import FrameView, HeatMap
from desktop_app.qt.workers.threads import CameraWorker, DisplaySize, InferenceWorker, PreviewFrame

ensure_display()


def _pixel(view: FrameView, x: float, y: float) -> QColor:
    image = view.grab().toImage()
    return image.pixelColor(round(x), round(y))


def test_heat_map_outlines_poor_regions_without_recolouring_the_skin(qtbot: QtBot) -> None:
    view = FrameView(legend=False)
    qtbot.addWidget(view)
    view.resize(320, 180)
    rgb = np.zeros((180, 320, 3), np.uint8)
    rgb[:] = (150, 90, 60)  # a brown lesion filling the frame
    view.set_image(rgb)
    layout = plan_layout(180, 320, 32, GridSpec(max_long_side=320))
    heat = HeatMap.from_result(layout, np.zeros(layout.n), threshold=0.5)  # every cell poor
    view.set_heat(heat)
    target = view.image_rect()
    for x0, y0, x1, y1 in patch_cells(layout):
        cx = target.x() + (x0 + x1) / 2 * target.width() / 320
        cy = target.y() + (y0 + y1) / 2 * target.height() / 180
        assert _pixel(view, cx, cy).getRgb()[:3] == (150, 90, 60)  # the lesion's own colour
    # the outline itself is drawn (around the whole poor region: the image's edge)
    edge = _pixel(view, target.x() + 1, target.y() + target.height() / 2).getRgb()[:3]
    assert edge != (150, 90, 60)


def test_framing_guide_is_drawn_in_the_centre(qtbot: QtBot) -> None:
    view = FrameView(legend=False)
    qtbot.addWidget(view)
    view.resize(320, 180)
    view.set_image(np.full((180, 320, 3), 128, np.uint8))
    target = view.image_rect()
    ring_x = target.x() + target.width() / 2 + 0.3 * min(target.width(), target.height())
    ring_y = target.y() + target.height() / 2
    assert _pixel(view, ring_x, ring_y).getRgb()[:3] == (128, 128, 128)
    view.set_guide(0.3, ok=True)
    assert _pixel(view, ring_x, ring_y).getRgb()[:3] != (128, 128, 128)


class _StillSource:
    name = "still"
    kind = "camera"
    resolution = (320, 180)

    def open(self) -> None: ...

    def read(self) -> Frame | None:
        return None

    def close(self) -> None: ...


def _still_worker(inference: LatestSlot[Frame], **settings: float) -> CameraWorker:
    """A camera worker fed by hand (``_publish``), its model mailbox ``inference``."""
    return CameraWorker(
        _StillSource(),  # type: ignore[arg-type]
        LatestSlot[PreviewFrame](),
        inference,
        DisplaySize(),
        **settings,
    )


def _times_sent_to_model(
    worker: CameraWorker, inference: LatestSlot[Frame], still: np.ndarray, frames: int
) -> list[float]:
    """Publish ``still`` ``frames`` times, 0.1 s apart from t = 100 s: when each went out."""
    sent: list[float] = []
    for i in range(frames):
        t = 100.0 + i * 0.1
        worker._publish(Frame(still, "RGB", i, t, "still"))
        if inference.take() is not None:
            sent.append(t)
    return sent


def test_an_unchanged_view_is_not_scored_again_until_the_rescore_interval(
    qtbot: QtBot,
) -> None:
    from desktop_app.core.demo_scene import render_skin

    inference: LatestSlot[Frame] = LatestSlot()
    worker = _still_worker(inference, live_interval_s=0.1, rescore_s=2.0)
    still = render_skin(180, 320, seed=3)
    sent = _times_sent_to_model(worker, inference, still, frames=30)  # 3 s at 10 frames a second
    assert sent == pytest.approx([100.0, 102.0])
    assert worker.live_skipped_unchanged > 20
    # a different view goes to the model at once
    worker._publish(Frame(255 - still, "RGB", 99, 103.1, "still"))
    assert inference.take() is not None


def test_by_default_an_unchanged_view_is_rescored_only_every_few_seconds(qtbot: QtBot) -> None:
    """Idle CPU: a steady view on screen is not re-scored every other second (each live run
    keeps both cores busy), while a change still goes to the model at once."""
    from desktop_app.core.demo_scene import render_skin
    from desktop_app.qt.workers.threads import RESCORE_UNCHANGED_S

    assert RESCORE_UNCHANGED_S >= 5.0
    inference: LatestSlot[Frame] = LatestSlot()
    worker = _still_worker(inference)
    still = render_skin(180, 320, seed=3)
    sent = _times_sent_to_model(worker, inference, still, frames=120)  # 12 s
    assert sent == pytest.approx([100.0, 100.0 + RESCORE_UNCHANGED_S])
    worker._publish(Frame(255 - still, "RGB", 999, 112.1, "still"))
    assert inference.take() is not None


def test_model_load_warms_up_the_capture_path(qtbot: QtBot, test_model_path: Path) -> None:
    worker = InferenceWorker(LatestSlot(), None)
    worker.warm_frame_hw = (180, 320)
    ready: list[object] = []
    worker.sig_model_ready.connect(ready.append)
    worker._on_load_model(str(test_model_path), "cpu", True)
    assert ready and worker.engine is not None
    assert worker.warm_up_ms > 0.0


def test_a_new_verdict_goes_to_the_model_at_once_and_cancels_the_old_run(qtbot: QtBot) -> None:
    from desktop_app.core.demo_scene import render_skin

    inference: LatestSlot[Frame] = LatestSlot()
    worker = _still_worker(inference, live_interval_s=0.1)
    cancelled: list[bool] = []
    worker.on_scene_change = lambda: cancelled.append(True)
    still = render_skin(180, 320, seed=3)
    dark = (still // 6).astype(np.uint8)
    worker._publish(Frame(still, "RGB", 0, 10.0, "still"))
    assert inference.take() is not None
    worker._publish(Frame(dark, "RGB", 1, 10.50, "still"))  # the light goes: one frame
    worker._publish(Frame(dark, "RGB", 2, 10.533, "still"))  # ... two: the verdict is "dark"
    sent = inference.take()
    assert sent is not None and sent.index == 2
    assert cancelled == [True]
    worker._publish(Frame(dark, "RGB", 3, 10.566, "still"))  # the same dark view: not again
    assert inference.take() is None


def test_no_frame_cues_are_computed_while_the_model_is_paused(qtbot: QtBot) -> None:
    """During a capture check the camera thread leaves the CPU to it: previews only."""
    from desktop_app.core.demo_scene import render_skin

    previews: LatestSlot[PreviewFrame] = LatestSlot()
    worker = CameraWorker(
        _StillSource(),  # type: ignore[arg-type]
        previews,
        LatestSlot[Frame](),
        DisplaySize(),
    )
    still = render_skin(180, 320, seed=3)
    worker.inference_paused.set()
    worker._publish(Frame(still, "RGB", 0, 100.0, "still"))
    preview = previews.take()
    assert preview is not None and preview.cues is None
    assert len(worker.cue_ms) == 0
    worker.inference_paused.clear()
    worker._publish(Frame(still, "RGB", 1, 100.1, "still"))
    preview = previews.take()
    assert preview is not None and preview.cues is not None
    assert len(worker.cue_ms) == 1


class _CountingSource(_StillSource):
    def __init__(self) -> None:
        self.reads = 0

    def read(self) -> Frame | None:
        self.reads += 1
        time.sleep(0.005)
        return None


def test_no_live_frame_is_read_or_converted_while_a_capture_is_checked(qtbot: QtBot) -> None:
    source = _CountingSource()
    preview: LatestSlot[PreviewFrame] = LatestSlot()
    worker = CameraWorker(source, preview, LatestSlot(), DisplaySize())  # type: ignore[arg-type]
    worker.capture_hold.set()  # a capture's verdict is pending: the preview holds the still
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        time.sleep(0.15)
        assert source.reads == 0 and preview.take() is None  # the CPU is the capture check's
        worker.capture_hold.clear()  # the verdict arrived: live frames again
        qtbot.waitUntil(lambda: source.reads > 0, timeout=2000)
    finally:
        worker.request_stop()
        thread.join(2.0)
    assert not thread.is_alive()
