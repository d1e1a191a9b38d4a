"""The staff window (capture + review gallery) and ``run_app``, the GUI entry point."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QAction, QCloseEvent, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_app import __version__
from desktop_app.core.capture import CaptureContext, CaptureOutcome
from desktop_app.core.frame_sources import (
    DemoSource,
    FrameSource,
    FrameSourceError,
    list_cameras,
    source_from_spec,
)
from desktop_app.core.inference import resolve_model_path as resolve_core_model_path
from desktop_app.core.instance_lock import AnotherInstanceError, acquire_data_home_lock
from desktop_app.core.settings import BODY_SITES, AppSettings, load_settings, save_settings
from desktop_app.core.storage import CaptureStore, StorageError, default_store_root
from desktop_app.core.submission import QueueStatus, SubmissionQueue, make_target
from desktop_app.core.submit_policy import PRACTICE_SOURCE_MESSAGE, is_practice_source
from desktop_app.qt.live_view import LiveCaptureView
from desktop_app.qt.session import CaptureSession, queue_summary

logger = logging.getLogger(__name__)

BODY_SITE_PROMPT = "Choose the body site…"


# ---- start-up helpers (no widgets) ----------------------------------------------------------


@dataclass
class AppServices:
    """What a window needs besides widgets; problems are messages, never exceptions."""

    settings: AppSettings
    store: CaptureStore | None
    queue: SubmissionQueue | None
    model_path: Path | None
    source: FrameSource
    store_error: str = ""
    queue_error: str = ""
    source_note: str = ""
    notes: list[str] = field(default_factory=list)


def make_session(
    services: AppServices,
    context_provider: Callable[[], CaptureContext],
    capture_blocker: Callable[[], str],
    auto_capture: bool,
    parent: QWidget,
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


def resolve_model_path(explicit: Path | None, settings: AppSettings) -> Path | None:
    """``--model`` first, then the model chosen in Settings, then the bundled default
    (``core.inference.resolve_model_path``)."""
    return resolve_core_model_path(explicit, settings.model_path)


def choose_source(spec: str | None, settings: AppSettings) -> tuple[FrameSource, str]:
    """(source, note): ``--source``, else Settings' camera, else the first camera, else demo."""
    names = {c.index: c.name for c in list_cameras()} if sys.platform.startswith("linux") else {}
    chosen = spec or settings.camera
    if chosen:
        try:
            return source_from_spec(chosen, settings.resolution, names), ""
        except FrameSourceError as exc:
            return DemoSource(), f"{exc} Showing the demo feed instead."
    cameras = list_cameras(probe=1)
    if cameras:
        first = cameras[0]
        return source_from_spec(
            str(first.index), settings.resolution, {first.index: first.name}
        ), ""
    return DemoSource(), "No camera found: showing the built-in demo feed."


def build_services(
    kiosk: bool,
    model: Path | None,
    source_spec: str | None,
    settings: AppSettings | None = None,
    store_root: Path | None = None,
) -> AppServices:
    settings = settings or load_settings()
    store: CaptureStore | None = None
    store_error = ""
    root = store_root or default_store_root()
    try:
        acquire_data_home_lock(root)  # held for the life of the process
        store = CaptureStore(root)
    except AnotherInstanceError as exc:
        store_error = str(exc)
        logger.error("data home in use: %s", exc)
    except StorageError as exc:
        store_error = str(exc)
        logger.error("capture store unavailable: %s", exc)
    queue: SubmissionQueue | None = None
    queue_error = ""
    if store is not None:
        try:
            queue = SubmissionQueue(store, make_target(settings.submission))
            queue.release_stale_claims()  # this process alone holds the data home
        except ValueError as exc:
            queue_error = str(exc)
        except StorageError as exc:
            queue_error = str(exc)
    source, note = choose_source(source_spec, settings)
    return AppServices(
        settings=settings,
        store=store,
        queue=queue,
        model_path=resolve_model_path(model, settings),
        source=source,
        store_error=store_error,
        queue_error=queue_error,
        source_note=note,
    )


# ---- the staff window -----------------------------------------------------------------------


class MainWindow(QMainWindow):
    """Staff mode: live capture with patient details, gated Submit, review gallery, settings."""

    def __init__(self, services: AppServices, settings_path: Path | None = None) -> None:
        super().__init__()
        self.services = services
        self.settings = services.settings
        self.settings_path = settings_path
        self.setWindowTitle(f"Skin Capture Assist {__version__}")
        self.outcome: CaptureOutcome | None = None
        self.queue_status: QueueStatus | None = None
        self.closed_cleanly: bool | None = None
        self.unlocked = False  # True: close without asking (OS signal, tests), as in the kiosk
        self._frames_at_last_tick = 0

        self.session = make_session(
            services,
            self._capture_context,
            self._capture_blocker,
            auto_capture=self.settings.auto_capture_staff,
            parent=self,
        )
        self._build_ui()
        self._connect()
        start_session(self.session, services)
        if services.source_note:
            self.statusBar().showMessage(services.source_note, 10_000)
        self._update_buttons()

    # ---- layout ----------------------------------------------------------------------------
    def _build_ui(self) -> None:
        self.tabs = QTabWidget()
        self.setCentralWidget(self.tabs)

        capture_tab = QWidget()
        row = QHBoxLayout(capture_tab)
        self.live = LiveCaptureView(self.session)
        self.live.frame_view.set_overlay_visible(self.settings.show_heat_overlay)
        row.addWidget(self.live, 1)

        side = QVBoxLayout()
        patient_box = QGroupBox("Patient")
        form = QFormLayout(patient_box)
        self.patient_edit = QLineEdit()
        self.patient_edit.setPlaceholderText("Patient or encounter ID")
        self.site_combo = QComboBox()
        self.site_combo.addItem(BODY_SITE_PROMPT)
        self.site_combo.addItems(BODY_SITES)
        self.note_edit = QPlainTextEdit()
        self.note_edit.setPlaceholderText("Note for the dermatologist (optional)")
        self.note_edit.setMaximumHeight(90)
        self.new_patient_button = QPushButton("New patient")
        form.addRow("ID", self.patient_edit)
        form.addRow("Body site", self.site_combo)
        form.addRow("Note", self.note_edit)
        form.addRow("", self.new_patient_button)
        side.addWidget(patient_box)

        capture_box = QGroupBox("Photo")
        box = QVBoxLayout(capture_box)
        self.capture_button = QPushButton("Capture  [Space]")
        self.submit_button = QPushButton("Submit  [Enter]")
        self.retake_button = QPushButton("Retake  [R]")
        for button in (self.capture_button, self.submit_button, self.retake_button):
            button.setMinimumHeight(40)
            # Keys are handled by the window: a focused button must not take Space/Enter.
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.submit_button.setStyleSheet(
            "QPushButton:enabled { background: #2e8b57; color: white; font-weight: bold; }"
        )
        self.verdict_label = QLabel("")
        self.verdict_label.setWordWrap(True)
        self.submit_reason = QLabel("")
        self.submit_reason.setWordWrap(True)
        lines = self.fontMetrics().lineSpacing()
        # room for the longest messages, so the layout does not squeeze wrapped lines together
        self.verdict_label.setMinimumHeight(2 * lines + 4)
        self.submit_reason.setMinimumHeight(4 * lines + 4)
        self.submit_reason.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.submit_reason.setObjectName("submitReason")
        self.submit_reason.setStyleSheet("color: #8a5a00;")
        box.addWidget(self.capture_button)
        box.addWidget(self.submit_button)
        box.addWidget(self.retake_button)
        box.addWidget(self.verdict_label)
        box.addWidget(self.submit_reason)
        side.addWidget(capture_box)

        options_box = QGroupBox("Options")
        options = QFormLayout(options_box)
        self.auto_capture_check = QCheckBox("Auto-capture when steady and good")
        self.auto_capture_check.setChecked(self.settings.auto_capture_staff)
        self.hold_spin = QDoubleSpinBox()
        self.hold_spin.setRange(0.3, 10.0)
        self.hold_spin.setSingleStep(0.1)
        self.hold_spin.setSuffix(" s")
        self.hold_spin.setValue(self.settings.auto_capture_hold_s)
        self.overlay_check = QCheckBox("Quality heat map")
        self.overlay_check.setChecked(self.settings.show_heat_overlay)
        options.addRow(self.auto_capture_check)
        options.addRow("Hold for", self.hold_spin)
        options.addRow(self.overlay_check)
        side.addWidget(options_box)

        send_box = QGroupBox("Sending")
        send = QVBoxLayout(send_box)
        self.queue_label = QLabel(
            queue_summary(None)
            if self.services.queue is None
            else f"Sending to {self.services.queue.target.name}…"
        )
        if self.services.queue_error:
            self.queue_label.setText(f"Sending is not configured: {self.services.queue_error}")
        self.queue_label.setWordWrap(True)
        self.retry_button = QPushButton("Retry failed")
        self.retry_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        send.addWidget(self.queue_label)
        send.addWidget(self.retry_button)
        side.addWidget(send_box)
        side.addStretch(1)
        side_widget = QWidget()
        side_widget.setLayout(side)
        side_widget.setFixedWidth(340)
        row.addWidget(side_widget)
        self.tabs.addTab(capture_tab, "Capture")

        from desktop_app.qt.gallery import GalleryWidget

        self.gallery = GalleryWidget(self.services.store, self.session, self.settings)
        if self.services.store_error:
            self.gallery.set_unavailable(self.services.store_error)
        self.tabs.addTab(self.gallery, "Review")

        self.source_label = QLabel()
        self.model_label = QLabel()
        self.fps_label = QLabel()
        for label in (self.source_label, self.model_label, self.fps_label):
            self.statusBar().addPermanentWidget(label)

        menu = self.menuBar().addMenu("&File")
        self.settings_action = QAction("&Settings…", self)
        self.settings_action.setShortcut(QKeySequence("Ctrl+,"))
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        menu.addAction(self.settings_action)
        menu.addSeparator()
        menu.addAction(quit_action)
        self.resize(1400, 900)

    def _connect(self) -> None:
        s = self.session
        s.sig_capture_done.connect(self._on_capture_done)
        s.sig_capture_refused.connect(self._on_capture_refused)
        s.sig_source_status.connect(self._on_source_status)
        s.sig_source_problem.connect(self._on_source_problem)
        s.sig_model_status.connect(self._on_model_status)
        s.sig_queue_status.connect(self._on_queue_status)
        s.sig_queue_error.connect(self._on_queue_error)
        s.sig_live.connect(self._on_live)
        self.capture_button.clicked.connect(self._on_capture_clicked)
        self.submit_button.clicked.connect(self._on_submit_clicked)
        self.retake_button.clicked.connect(self._on_retake_clicked)
        self.new_patient_button.clicked.connect(self._on_new_patient)
        self.retry_button.clicked.connect(self._on_retry_failed)
        self.patient_edit.textChanged.connect(self._update_buttons)
        self.site_combo.currentIndexChanged.connect(self._update_buttons)
        self.auto_capture_check.toggled.connect(self._on_auto_capture_changed)
        self.hold_spin.valueChanged.connect(self._on_auto_capture_changed)
        self.overlay_check.toggled.connect(self._on_overlay_toggled)
        self.settings_action.triggered.connect(self._on_open_settings)
        self._fps_timer = QTimer(self)
        self._fps_timer.setInterval(1000)
        self._fps_timer.timeout.connect(self._on_fps_tick)
        self._fps_timer.start()

    # ---- capture context -------------------------------------------------------------------
    def _body_site(self) -> str:
        return "" if self.site_combo.currentIndex() <= 0 else self.site_combo.currentText()

    def _capture_context(self) -> CaptureContext:
        return CaptureContext(
            mode="staff",
            operator=self.settings.operator,
            patient_ref=self.patient_edit.text().strip(),
            body_site=self._body_site(),
            note=self.note_edit.toPlainText().strip(),
        )

    def _capture_blocker(self) -> str:
        """Why a capture cannot be taken now ("" when it can)."""
        if self.outcome is not None:
            return "Submit or retake the current photo first."
        if not self.patient_edit.text().strip():
            return "Enter the patient or encounter ID first."
        if not self._body_site():
            return "Choose the body site first."
        return ""

    def _submit_blocker(self) -> str:
        """Why Submit is off ("" when it is on)."""
        outcome = self.outcome
        if outcome is None:
            if self.session.capture_busy:
                return "Checking the photo…"
            return "Take a photo first (Space)."
        if outcome.result is None:
            reason = self.session.model_error or "no quality model"
            return f"Submit is off: the photo was not quality-checked ({reason})."
        if not outcome.judgement.accepted:
            return f"Submit is off: the score is below the threshold. {outcome.judgement.message}."
        if outcome.record is None:
            return f"Submit is off: the photo could not be saved. {outcome.store_error}"
        if is_practice_source(outcome.record.info.source):
            return f"Submit is off. {PRACTICE_SOURCE_MESSAGE}"
        if not outcome.record.info.patient_ref:
            return (
                "Submit is off: no patient ID was entered when this photo arrived. It is kept "
                "in Review."
            )
        if self.session.queue is None:
            return f"Submit is off: sending is not configured. {self.services.queue_error}"
        return ""

    def _update_buttons(self) -> None:
        showing = self.outcome is not None
        blocker = self._capture_blocker()
        self.capture_button.setEnabled(
            not showing and not blocker and not self.session.capture_busy
        )
        self.capture_button.setToolTip(blocker)
        submit_blocker = self._submit_blocker()
        self.submit_button.setEnabled(not submit_blocker)
        self.submit_reason.setText(submit_blocker if showing or not blocker else blocker)
        self.retake_button.setEnabled(showing)
        for widget in (self.patient_edit, self.site_combo, self.note_edit):
            widget.setEnabled(not showing and not self.session.capture_busy)

    # ---- actions ---------------------------------------------------------------------------
    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key == Qt.Key.Key_Space and self.tabs.currentIndex() == 0:
            self._on_capture_clicked()
        elif key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.tabs.currentIndex() == 0:
            self._on_submit_clicked()
        elif key == Qt.Key.Key_R and self.tabs.currentIndex() == 0:
            self._on_retake_clicked()
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    @Slot()
    def _on_capture_clicked(self) -> None:
        if self.outcome is not None:
            return
        if self.session.capture(auto=False):
            self.verdict_label.setText("Checking the photo…")
        self._update_buttons()

    @Slot(str)
    def _on_capture_refused(self, message: str) -> None:
        self.statusBar().showMessage(message, 6000)
        self.submit_reason.setText(message)

    @Slot(object)
    def _on_capture_done(self, outcome: CaptureOutcome) -> None:
        self.outcome = outcome
        self.live.show_outcome(outcome)
        j = outcome.judgement
        if math.isnan(j.score):
            self.verdict_label.setText(j.message)
        else:
            verdict = "Accepted" if j.accepted else "Not good enough"
            colour = "#2e7d32" if j.accepted else "#c0392b"
            self.verdict_label.setText(
                f"<b style='color:{colour}'>{verdict}</b>: score {j.score:.2f} "
                f"(threshold {j.threshold:.2f})."
            )
        if outcome.store_error:
            QMessageBox.warning(self, "Photo not saved", outcome.store_error)
        self.gallery.mark_stale()
        self._update_buttons()

    @Slot()
    def _on_submit_clicked(self) -> None:
        if self._submit_blocker() or self.outcome is None or self.outcome.record is None:
            return
        record = self.outcome.record
        self.session.submit(record.id)
        self.statusBar().showMessage(
            f"Photo for {record.info.patient_ref} queued for sending.", 8000
        )
        self.note_edit.clear()
        self._back_to_live()

    @Slot()
    def _on_retake_clicked(self) -> None:
        if self.outcome is None:
            return
        self._back_to_live()

    def _back_to_live(self) -> None:
        self.outcome = None
        self.verdict_label.setText("")
        self.live.back_to_live()
        self.session.resume_live()
        self.gallery.mark_stale()
        self._update_buttons()

    @Slot()
    def _on_new_patient(self) -> None:
        self.patient_edit.clear()
        self.site_combo.setCurrentIndex(0)
        self.note_edit.clear()
        self.patient_edit.setFocus()

    @Slot()
    def _on_retry_failed(self) -> None:
        if self.session.queue is not None:
            count = self.session.queue.retry_failed()
            self.statusBar().showMessage(f"{count} failed photo(s) queued again.", 6000)
            self.session.process_queue_now()

    @Slot()
    def _on_auto_capture_changed(self) -> None:
        enabled = self.auto_capture_check.isChecked()
        self.settings.auto_capture_staff = enabled
        self.settings.auto_capture_hold_s = float(self.hold_spin.value())
        self.session.set_auto_capture(self.settings.auto_capture_hold_s if enabled else None)
        self._save_settings()

    @Slot(bool)
    def _on_overlay_toggled(self, visible: bool) -> None:
        self.live.frame_view.set_overlay_visible(visible)
        self.settings.show_heat_overlay = visible
        self._save_settings()

    def _save_settings(self) -> None:
        try:
            save_settings(self.settings, self.settings_path)
        except OSError as exc:
            self.statusBar().showMessage(f"Settings could not be saved: {exc}", 8000)

    # ---- status ----------------------------------------------------------------------------
    @Slot(object, object)
    def _on_live(self, view: object, live: object) -> None:
        if self.session.capture_busy:
            return
        self._update_buttons()

    @Slot(str, bool)
    def _on_source_status(self, message: str, ok: bool) -> None:
        res = self.session.source_resolution
        suffix = f" - {res[0]}x{res[1]}" if res and ok else ""
        self.source_label.setText(f"{self.session.source_name}{suffix}" if ok else message)
        if not ok:
            self.statusBar().showMessage(message, 10_000)

    @Slot(str)
    def _on_source_problem(self, message: str) -> None:
        self.statusBar().showMessage(message, 15_000)

    @Slot(str, bool)
    def _on_model_status(self, message: str, ok: bool) -> None:
        info = self.session.model_info
        if info is not None:
            self.model_label.setText(f"{info.name} {info.version} ({info.provider})")
        else:
            self.model_label.setText("Loading model…" if ok else "No quality model")
        self._update_buttons()

    @Slot(object)
    def _on_queue_status(self, status: QueueStatus) -> None:
        self.queue_status = status
        self.queue_label.setText(queue_summary(status))
        self.retry_button.setEnabled(status.failed > 0)

    @Slot(str)
    def _on_queue_error(self, message: str) -> None:
        self.queue_label.setText(message)

    @Slot()
    def _on_fps_tick(self) -> None:
        shown = self.live.frame_view.frames_shown
        self.fps_label.setText(f"{shown - self._frames_at_last_tick} fps")
        self._frames_at_last_tick = shown

    # ---- settings --------------------------------------------------------------------------
    @Slot()
    def _on_open_settings(self) -> None:
        from desktop_app.qt.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.settings, self.session, self)
        if dialog.exec():
            self.apply_settings(dialog.result_settings(), dialog.new_pin())

    def apply_settings(self, new: AppSettings, new_pin: str = "") -> None:
        """Save ``new`` and apply what changed (camera, model, auto-capture, sending)."""
        old = self.settings
        if new_pin:
            new.set_kiosk_pin(new_pin)
        source_changed = (new.camera, new.resolution) != (old.camera, old.resolution)
        model_changed = (new.model_path, new.provider, new.low_memory_inference) != (
            old.model_path,
            old.provider,
            old.low_memory_inference,
        )
        submission_changed = new.submission != old.submission
        self.settings = new
        self.services.settings = new
        self.gallery.settings = new
        self._save_settings()
        if source_changed:
            source, note = choose_source(new.camera or None, new)
            self.session.set_source(source)
            if note:
                self.statusBar().showMessage(note, 10_000)
        if model_changed:
            self.session.load_model(
                resolve_model_path(None, new), new.provider, new.low_memory_inference
            )
        if submission_changed and self.services.store is not None:
            try:
                queue = SubmissionQueue(self.services.store, make_target(new.submission))
                self.services.queue_error = ""
            except ValueError as exc:
                queue = None
                self.services.queue_error = str(exc)
                self.queue_label.setText(f"Sending is not configured: {exc}")
            self.services.queue = queue
            self.session.set_queue(queue, new.submission_interval_s)
        self.auto_capture_check.setChecked(new.auto_capture_staff)
        self.hold_spin.setValue(new.auto_capture_hold_s)
        self._update_buttons()

    # ---- shutdown --------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.unlocked and not self.gallery.confirm_quit():  # accepted photos unsent
            event.ignore()
            return
        self._fps_timer.stop()
        self.closed_cleanly = self.session.shutdown()
        if self.services.store is not None:
            self.services.store.close()
        event.accept()


# ---- entry point ----------------------------------------------------------------------------


def ensure_display() -> None:
    """On a Linux box without a display, fall back to the offscreen platform (with a warning)
    instead of letting Qt abort."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        logger.warning(
            "No display found (DISPLAY and WAYLAND_DISPLAY are unset): running with "
            "QT_QPA_PLATFORM=offscreen, so no window will be visible."
        )
        os.environ["QT_QPA_PLATFORM"] = "offscreen"


def _close_on_signals(app: QApplication, window: QWidget) -> None:
    """Ctrl+C / SIGTERM close the window normally (workers stopped, store closed); the kiosk's
    PIN does not apply to the operating system asking the app to stop."""

    def _on_signal(signum: int, frame: object) -> None:
        logger.info("signal %d: closing", signum)
        if hasattr(window, "unlocked"):
            window.unlocked = True
        window.close()
        app.quit()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    # Python runs signal handlers only between bytecodes: wake the interpreter regularly.
    timer = QTimer(window)
    timer.timeout.connect(lambda: None)
    timer.start(250)


def _log_first_frame(window: QWidget) -> None:
    """Log once when the first preview frame arrives (start-up time for support and smoke tests)."""
    import time

    started = time.perf_counter()
    session: CaptureSession = window.session  # type: ignore[attr-defined]

    def _on_first_preview(_frame: object) -> None:
        logger.info("first frame after %.2f s", time.perf_counter() - started)
        session.sig_preview.disconnect(_on_first_preview)

    session.sig_preview.connect(_on_first_preview)


def _exit_after_env_delay(app: QApplication, window: QWidget) -> None:
    """``SKIN_CAPTURE_EXIT_AFTER_MS``: close normally after that long (smoke tests of bundles)."""
    raw = os.environ.get("SKIN_CAPTURE_EXIT_AFTER_MS", "")
    if not raw.strip():
        return
    try:
        delay_ms = max(0, int(raw))
    except ValueError:
        logger.warning("ignoring SKIN_CAPTURE_EXIT_AFTER_MS=%r (not a number)", raw)
        return

    def _on_timeout() -> None:
        logger.info("SKIN_CAPTURE_EXIT_AFTER_MS reached: closing")
        if hasattr(window, "unlocked"):
            window.unlocked = True
        window.close()
        app.quit()

    QTimer.singleShot(delay_ms, window, _on_timeout)


def make_window(services: AppServices, kiosk: bool) -> QWidget:
    if kiosk:
        from desktop_app.qt.kiosk import KioskWindow

        return KioskWindow(services)
    return MainWindow(services)


def run_app(args: argparse.Namespace) -> int:
    """``skin-capture [--kiosk] [--model PATH] [--source SPEC]``; returns the exit status."""
    from desktop_app.qt.compat import pyside_refcount_problem

    problem = pyside_refcount_problem()
    if problem:
        logger.error("%s", problem)
        print(f"error: {problem}", file=sys.stderr)
        return 2
    ensure_display()
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName("Skin Capture Assist")
    app.setApplicationVersion(__version__)
    try:  # before any camera is opened or photo read: a second copy refuses, clearly
        acquire_data_home_lock(default_store_root())
    except AnotherInstanceError as exc:
        logger.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        if not os.environ.get("SKIN_CAPTURE_NO_DIALOGS"):
            QMessageBox.critical(None, "Skin Capture Assist is already running", str(exc))
        return 3
    services = build_services(
        kiosk=bool(getattr(args, "kiosk", False)),
        model=getattr(args, "model", None),
        source_spec=getattr(args, "source", None),
    )
    from desktop_app.qt.kiosk import KioskWindow

    window = make_window(services, bool(getattr(args, "kiosk", False)))
    if isinstance(window, KioskWindow):
        window.show_kiosk()
    else:
        window.show()
    _close_on_signals(app, window)
    _log_first_frame(window)
    _exit_after_env_delay(app, window)
    if services.store_error:
        QMessageBox.critical(
            window,
            "Photos cannot be saved",
            f"{services.store_error}\n\nThe live view works, but captures cannot be kept.",
        )
    status = int(app.exec())
    return status
