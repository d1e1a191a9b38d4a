"""The live picture with its heat overlay, guidance and score, and the verdict on a capture.

Used by the staff window and the kiosk; it listens to a :class:`CaptureSession` and never blocks:
the preview shows each frame as it arrives. The guidance line, the score bar, the heat outline and
the framing guide's colour all come from the one newest ``GateView`` (``core.gating``), so they
never disagree; the view holds no rules of its own.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from desktop_app.core.capture import CaptureOutcome
from desktop_app.core.cues import GUIDE_RADIUS
from desktop_app.core.gating import NO_MODEL_GATE_MESSAGE, WAITING_MESSAGE, GateState, GateView
from desktop_app.core.inference import QualityResult
from desktop_app.qt.views.widgets import (
    PATIENT_LEGEND,
    STAFF_LEGEND,
    STATE_COLOURS,
    FrameView,
    HeatMap,
    ScoreBar,
)
from desktop_app.qt.workers.session import CaptureSession
from desktop_app.qt.workers.threads import LiveScore, PreviewFrame

PRACTICE_BANNER = (
    "DEMO / REPLAY - not a camera. Photos taken from this feed are kept for practice and are "
    "never sent to the record."
)


class LiveCaptureView(QWidget):
    """Frame view + guidance line + score bar + a banner for source/model problems."""

    def __init__(self, session: CaptureSession, large: bool = False) -> None:
        super().__init__()
        self.session = session
        self.large = large
        # patients (the kiosk's large view) get plain words, not "threshold"
        self.frame_view = FrameView(legend_text=PATIENT_LEGEND if large else STAFF_LEGEND)
        self.banner = QLabel()
        self.banner.setWordWrap(True)
        self.banner.setObjectName("banner")
        self.banner.setStyleSheet(
            "QLabel#banner { background: #fff3cd; color: #5c4400; border: 1px solid #e0c060;"
            " border-radius: 6px; padding: 6px; }"
        )
        self.banner.hide()
        self.guidance = QLabel(WAITING_MESSAGE)
        self.guidance.setObjectName("guidance")
        self.guidance.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.guidance.setWordWrap(True)
        font = QFont(self.font())
        font.setPointSizeF(font.pointSizeF() * (2.2 if large else 1.6))
        font.setBold(True)
        self.guidance.setFont(font)
        self.score_bar = ScoreBar()
        if large:
            self.score_bar.setMinimumHeight(44)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.banner)
        layout.addWidget(self.frame_view, 1)
        layout.addWidget(self.guidance)
        layout.addWidget(self.score_bar)
        self.showing_outcome: CaptureOutcome | None = None
        self.last_view: GateView | None = None
        self._live_heat: HeatMap | None = None
        self._heat_of: object | None = None  # the result self._live_heat was made from
        self._guidance_key: tuple[str, GateState] | None = None
        self._source_problem = ""
        self._model_problem = ""
        self.frame_view.clear_image("Starting the camera…")
        self.frame_view.set_guide(GUIDE_RADIUS, None, repaint=False)
        self.frame_view.sig_resized.connect(self._on_view_resized)
        session.sig_preview.connect(self._on_preview)
        session.sig_live.connect(self._on_live)
        session.sig_model_status.connect(self._on_model_status)
        session.sig_source_status.connect(self._on_source_status)
        self._set_guidance(WAITING_MESSAGE, GateState.WAITING)

    # ---- live ------------------------------------------------------------------------------
    @Slot(int, int)
    def _on_view_resized(self, width: int, height: int) -> None:
        ratio = self.devicePixelRatioF() if self.isVisible() else 1.0
        self.session.display_size.set(round(width * ratio), round(height * ratio))

    @Slot(object)
    def _on_preview(self, item: PreviewFrame) -> None:
        # Hidden (kiosk welcome page, staff Review tab): nothing to paint, and a cleared kiosk
        # screen must stay cleared until the next patient starts.
        if self.showing_outcome is not None or not self.isVisible():
            return
        frame = item.frame
        self.frame_view.set_image(item.display_bgrx, (frame.width, frame.height))
        if self._live_heat is not None and self._live_heat.frame_size != (
            frame.width,
            frame.height,
        ):
            self._live_heat = None
        self.frame_view.set_heat(self._live_heat, repaint=False)

    @Slot(object, object)
    def _on_live(self, view: GateView, live: LiveScore | None) -> None:
        """One gate view (from a model result, ``live``, or from the cheap cues, ``live`` None):
        everything on screen follows it."""
        if self.showing_outcome is not None:
            return
        self.last_view = view
        result = view.result
        if result is not self._heat_of:
            self._heat_of = result
            self._live_heat = (
                HeatMap.from_result(result.layout, result.patch_scores, result.threshold)
                if isinstance(result, QualityResult)
                else None
            )
        self.frame_view.set_heat(self._live_heat, repaint=False)
        self.frame_view.set_guide(GUIDE_RADIUS, view.framing_ok, repaint=False)
        self.score_bar.set_values(view.bar_score, view.threshold, view.state)
        self._set_guidance(view.message, view.state)

    def _set_guidance(self, text: str, state: GateState) -> None:
        if self._guidance_key == (text, state):
            return
        self._guidance_key = (text, state)
        self.guidance.setText(text)
        colour = STATE_COLOURS.get(state)
        self.guidance.setStyleSheet(f"color: {colour.name()};" if colour else "")

    @Slot(str, bool)
    def _on_model_status(self, message: str, ok: bool) -> None:
        self._model_problem = "" if ok else message
        if not ok:
            self.score_bar.set_values(None, None, GateState.NO_MODEL)
            self._set_guidance(NO_MODEL_GATE_MESSAGE, GateState.NO_MODEL)
        elif self.session.model_info is not None:
            self.score_bar.set_values(None, self.session.model_info.threshold, GateState.WAITING)
            self._set_guidance(WAITING_MESSAGE, GateState.WAITING)
        self._update_banner()

    @Slot(str, bool)
    def _on_source_status(self, message: str, ok: bool) -> None:
        self._source_problem = "" if ok else message
        if not ok and self.showing_outcome is None:
            self.frame_view.clear_image(message)
        self._update_banner()

    def _update_banner(self) -> None:
        problems = [p for p in (self._source_problem, self._model_problem) if p]
        if self._model_problem:
            problems[-1] = (
                f"Quality check unavailable: {self._model_problem} Live view works; Submit stays "
                "off until a model is installed (Settings > Model file)."
            )
        if self.session.source_is_practice:
            problems.insert(0, PRACTICE_BANNER)
        self.banner.setText("\n".join(problems))
        self.banner.setVisible(bool(problems))

    @property
    def banner_text(self) -> str:
        return self.banner.text() if self.banner.isVisible() else ""

    # ---- capture verdict -------------------------------------------------------------------
    def show_outcome(self, outcome: CaptureOutcome) -> None:
        self.showing_outcome = outcome
        image = outcome.image_rgb
        self.frame_view.set_image(image)
        self.frame_view.set_badge("Captured photo")
        self.frame_view.set_guide(None, repaint=False)
        result = outcome.result
        if result is not None:
            self.frame_view.set_heat(
                HeatMap.from_result(result.layout, result.patch_scores, result.threshold)
            )
        else:
            self.frame_view.set_heat(None)
        judgement = outcome.judgement
        state = GateState.GOOD if judgement.accepted else GateState.RETAKE
        if result is None:
            state = GateState.NO_MODEL
        score = None if math.isnan(judgement.score) else judgement.score
        threshold = None if math.isnan(judgement.threshold) else judgement.threshold
        self.score_bar.set_values(score, threshold, state)
        self._set_guidance(judgement.message, state)

    def set_capture_guidance(self, text: str) -> None:
        """Reword the line under an accepted photo on screen (whether it can be sent)."""
        if self.showing_outcome is not None and self.showing_outcome.judgement.accepted:
            self._set_guidance(text, GateState.GOOD)

    def back_to_live(self) -> None:
        self.showing_outcome = None
        self.frame_view.set_badge("")
        self.frame_view.set_heat(None)
        self.frame_view.set_guide(GUIDE_RADIUS, None)
        self._live_heat = None
        self._heat_of = None
        if self.session.model_info is not None:
            self.score_bar.set_values(None, self.session.model_info.threshold, GateState.WAITING)
            self._set_guidance(WAITING_MESSAGE, GateState.WAITING)
        elif not self.session.model_loading:
            self.score_bar.set_values(None, None, GateState.NO_MODEL)
            self._set_guidance(NO_MODEL_GATE_MESSAGE, GateState.NO_MODEL)

    def clear_for_next_patient(self, placeholder: str = "") -> None:
        """Forget the shown capture and picture (kiosk idle reset)."""
        self.back_to_live()
        self.frame_view.clear_image(placeholder)
