"""The staff window: capture with patient details, gated Submit, the review gallery, settings.

It is given its services (``desktop_app.app.services``); ``desktop_app.app.run`` starts it."""

from __future__ import annotations

import html
import logging
import math
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Slot
from PySide6.QtGui import QCloseEvent, QKeyEvent
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QWidget,
)

from desktop_app import __version__
from desktop_app.app.services import AppServices, choose_source, resolve_model_path
from desktop_app.core.capture import CaptureContext, CaptureOutcome
from desktop_app.core.capture_flow import CHECKING_PHOTO, HOT_FOLDER_WAITING, SHOWING_BLOCKER
from desktop_app.core.gating import (
    NO_MODEL_GATE_MESSAGE,
    WAITING_MESSAGE,
    GateState,
    good_capture_message,
)
from desktop_app.core.patient_ref import PatientRefProblem, normalise_patient_ref
from desktop_app.core.settings import AppSettings, SettingsChanges, save_settings
from desktop_app.core.submission import QueueStatus
from desktop_app.core.submission.dicom import validate_patient_fields
from desktop_app.qt.views.about import about_html
from desktop_app.qt.views.live_view import LiveCaptureView
from desktop_app.qt.views.menus import add_staff_menus
from desktop_app.qt.views.patient_panel import StaffSidePanel
from desktop_app.qt.views.widgets import STATE_COLOURS, app_icon
from desktop_app.qt.views.window_geometry import (
    MIN_WINDOW_SIZE,
    PREFERRED_WINDOW_SIZE,
    fitted_window_size,
    set_elided,
)
from desktop_app.qt.workers.session import make_session, queue_summary, start_session

logger = logging.getLogger(__name__)

LOADING_MODEL = "Loading the quality model…"
NO_PICTURE = "No picture from the camera"  # the banner above the view says why
WAITING_FOR_CAMERA = "Waiting for the camera…"


# ---- the staff window -----------------------------------------------------------------------


class MainWindow(QMainWindow):
    """Staff mode: live capture with patient details, gated Submit, review gallery, settings.

    Keys on the Capture tab: Space captures, R retakes, Enter submits, whichever widget has the
    focus, except in the note (free text). The patient-ID field never receives Space (it
    captures) and Enter there moves on to the body site; an ID that reads as mistyped (two
    spaces in a row, control characters: ``core.patient_ref``) blocks Capture. Clicking the
    live view takes the focus, so letters reach the shortcuts, not the ID.
    """

    def __init__(self, services: AppServices, settings_path: Path | None = None) -> None:
        super().__init__()
        self.services = services
        self.settings = services.settings
        self.settings_path = settings_path
        self.setWindowTitle(f"Skin Capture Assist {__version__}")
        self.setWindowIcon(app_icon())
        self.queue_status: QueueStatus | None = None
        self.closed_cleanly: bool | None = None
        self.import_error = ""  # hot folder: the last file that could not be read
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
        self._apply_source_mode()
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
        # clicking the picture takes the focus away from the patient fields
        self.live.frame_view.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        row.addWidget(self.live, 1)

        self.side_scroll = StaffSidePanel(self.services)
        side = self.side_scroll
        self.patient_edit = side.patient_edit
        self.site_combo = side.site_combo
        self.note_edit = side.note_edit
        self.new_patient_button = side.new_patient_button
        self.capture_button = side.capture_button
        self.submit_button = side.submit_button
        self.retake_button = side.retake_button
        self.verdict_label = side.verdict_label
        self.submit_reason = side.submit_reason
        self.auto_capture_check = side.auto_capture_check
        self.hold_spin = side.hold_spin
        self.overlay_check = side.overlay_check
        self.queue_label = side.queue_label
        self.retry_button = side.retry_button
        row.addWidget(self.side_scroll)
        self.tabs.addTab(capture_tab, "Capture")

        from desktop_app.qt.views.gallery import GalleryWidget

        self.gallery = GalleryWidget(self.services.store, self.session, self.settings)
        if self.services.store_error:
            self.gallery.set_unavailable(self.services.store_error)
        self.tabs.addTab(self.gallery, "Review")

        self.source_label = QLabel()
        self.model_label = QLabel()
        self.fps_label = QLabel()
        for label in (self.source_label, self.model_label, self.fps_label):
            self.statusBar().addPermanentWidget(label)

        self.settings_action, self.about_action = add_staff_menus(self)
        self.about_action.triggered.connect(self._on_about)

        self.setMinimumSize(MIN_WINDOW_SIZE)
        screen = self.screen()
        available = screen.availableGeometry().size() if screen is not None else None
        self.resize(fitted_window_size(available) if available else PREFERRED_WINDOW_SIZE)

    def _connect(self) -> None:
        s = self.session
        s.sig_capture_started.connect(self._on_capture_started)
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
        self.patient_edit.installEventFilter(self)
        self.site_combo.installEventFilter(self)
        self.hold_spin.installEventFilter(self)
        self.site_combo.currentIndexChanged.connect(self._update_buttons)
        self.site_combo.activated.connect(self._on_site_chosen)
        self.note_edit.textChanged.connect(self._update_buttons)
        self.auto_capture_check.toggled.connect(self._on_auto_capture_changed)
        self.hold_spin.valueChanged.connect(self._on_auto_capture_changed)
        self.overlay_check.toggled.connect(self._on_overlay_toggled)
        self.settings_action.triggered.connect(self._on_open_settings)
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self._fps_timer = QTimer(self)
        self._fps_timer.setInterval(1000)
        self._fps_timer.timeout.connect(self._on_fps_tick)
        self._fps_timer.start()

    # ---- capture context -------------------------------------------------------------------
    def _body_site(self) -> str:
        return "" if self.site_combo.currentIndex() <= 0 else self.site_combo.currentText()

    def _patient_ref(self) -> str | PatientRefProblem:
        return normalise_patient_ref(self.patient_edit.text())

    def _capture_context(self) -> CaptureContext:
        ref = self._patient_ref()
        return CaptureContext(
            mode="staff",
            operator=self.settings.operator,
            # a mistyped ID is never stored: the photo is kept without one (Submit stays off)
            patient_ref=ref if isinstance(ref, str) else "",
            body_site=self._body_site(),
            note=self.note_edit.toPlainText().strip(),
        )

    def _capture_blocker(self) -> str:
        """Why a capture cannot be taken now ("" when it can)."""
        if self.session.flow.showing_capture:
            return SHOWING_BLOCKER
        ref = self._patient_ref()
        if isinstance(ref, PatientRefProblem):
            return ref.message
        if not self._body_site():
            return "Choose the body site first."
        context = self._capture_context()
        problems = validate_patient_fields(
            context.patient_ref, context.body_site, context.note, context.operator
        )
        return problems[0] if problems else ""

    def _submit_blocker(self) -> str:
        """Why Submit is off ("" when it is on): ``CaptureFlow.submit_blocker``."""
        session = self.session
        queue = session.queue
        return session.flow.submit_blocker(
            queue_configured=queue is not None,
            queue_error=self.services.queue_error,
            needs_patient_ref=queue.target.needs_patient_ref if queue is not None else False,
            model_problem=session.model_error
            or (
                "the quality model was still loading"
                if session.model_loading
                else "no quality model"
            ),
            hot_folder=session.is_hot_folder,
        )

    def _update_buttons(self) -> None:
        showing = self.session.flow.showing_capture
        busy = self.session.capture_busy
        blocker = self._capture_blocker()
        hot = self.session.is_hot_folder
        self.capture_button.setEnabled(not hot and not showing and not blocker and not busy)
        self.capture_button.setToolTip("" if hot else blocker)
        submit_blocker = self._submit_blocker()
        self.submit_button.setEnabled(not submit_blocker)
        if showing:
            self.live.set_capture_guidance(good_capture_message(submit_blocker))
        if busy:  # the verdict line says "Checking the photo…"
            reason = ""
        elif showing or not blocker:
            reason = submit_blocker
        else:
            reason = blocker
        if hot and reason == f"{HOT_FOLDER_WAITING}.":
            reason = ""  # the Capture button's place says so
        self.submit_reason.setText(reason)
        self.retake_button.setEnabled(showing)
        self._update_fps_visibility()
        for widget in (self.patient_edit, self.site_combo, self.note_edit):
            widget.setEnabled(not showing and not busy)

    def _apply_source_mode(self) -> None:
        """Hot folder (a tethered camera sends each shot as a file) or a live picture."""
        hot = self.session.is_hot_folder
        self.capture_button.setText(HOT_FOLDER_WAITING if hot else "Capture  [Space]")
        self._update_fps_visibility()
        if hot and not self.session.flow.showing_capture and not self.session.capture_busy:
            self._show_waiting_for_photo()

    def _show_waiting_for_photo(self) -> None:
        """Hot folder: no photo on screen; say where photos are expected (or why the last file
        was not imported, until the next photo arrives)."""
        folder = self.session.hot_folder
        waiting = f"Waiting for photos in {folder}"
        if self.session.source_message and not self.session.source_ok:
            self.live.frame_view.clear_image(NO_PICTURE)
            self._set_guidance(WAITING_FOR_CAMERA, False)
        elif self.import_error:
            self.live.frame_view.clear_image(f"{self.import_error}\n\n{waiting}")
            self._set_guidance("That file could not be read: take the photo again", True)
        else:
            self.live.frame_view.clear_image(waiting)
            self._set_guidance(
                LOADING_MODEL if self.session.model_loading else HOT_FOLDER_WAITING, False
            )

    def _set_guidance(self, text: str, problem: bool) -> None:
        self.live.guidance.setText(text)
        colour = STATE_COLOURS[GateState.RETAKE if problem else GateState.WAITING]
        self.live.guidance.setStyleSheet(f"color: {colour.name()};")

    def _focus_live_view(self) -> None:
        """Take the focus out of the patient fields (so that R and Space never reach them)."""
        focused = QApplication.focusWidget()
        if focused is None or focused in (self.patient_edit, self.site_combo, self.note_edit):
            self.live.frame_view.setFocus(Qt.FocusReason.OtherFocusReason)

    # ---- actions ---------------------------------------------------------------------------
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """The patient-ID field, the body-site list and the hold time: Space captures (it is
        never typed into the ID, and does not open the list), Enter in the ID moves on (it never
        submits), R on the list and the hold time retakes."""
        if event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            key = event.key()
            plain = event.modifiers() in (
                Qt.KeyboardModifier.NoModifier,
                Qt.KeyboardModifier.KeypadModifier,
            )
            if watched is self.patient_edit and plain:
                if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                    self._move_on_from_patient_ref()
                    return True
                if key == Qt.Key.Key_Space:
                    self._on_capture_clicked()
                    # whoever presses Space is working the camera now, not typing: a refused
                    # capture ("choose the body site first") must not leave the focus here,
                    # where the R for Retake that follows would be typed into the ID
                    if QApplication.focusWidget() is self.patient_edit:
                        self._move_on_from_patient_ref()
                    return True
            elif watched in (self.site_combo, self.hold_spin) and plain:
                if key == Qt.Key.Key_Space:
                    self._on_capture_clicked()
                    return True
                if key == Qt.Key.Key_R:
                    self._on_retake_clicked()
                    return True
                if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                    self._on_submit_clicked()
                    return True
        return super().eventFilter(watched, event)

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

    def _move_on_from_patient_ref(self) -> None:
        """Enter in the ID field: say what is wrong with the ID, or go on to the body site (or
        to the picture when the site is chosen)."""
        ref = self._patient_ref()
        if isinstance(ref, PatientRefProblem):
            self.submit_reason.setText(ref.message)
            return
        if not self._body_site():
            self.site_combo.setFocus(Qt.FocusReason.TabFocusReason)
        else:
            self.live.frame_view.setFocus(Qt.FocusReason.TabFocusReason)

    @Slot(int)
    def _on_site_chosen(self, index: int) -> None:
        if index > 0:
            self.live.frame_view.setFocus(Qt.FocusReason.OtherFocusReason)

    @Slot()
    def _on_capture_clicked(self) -> None:
        if self.session.flow.showing_capture:
            return
        if self.session.is_hot_folder:
            self.statusBar().showMessage(
                "Photos come from the camera's hot folder: take the photo on the camera.", 6000
            )
            return
        self.session.capture(auto=False)
        self._update_buttons()

    @Slot(str)
    def _on_capture_started(self, source: str) -> None:
        self.verdict_label.setText(CHECKING_PHOTO)
        self._focus_live_view()
        self._update_buttons()

    @Slot(str)
    def _on_capture_refused(self, message: str) -> None:
        self.statusBar().showMessage(message, 6000)
        self.submit_reason.setText(message)

    @property
    def outcome(self) -> CaptureOutcome | None:
        """The photo on screen (``CaptureFlow.outcome``)."""
        return self.session.flow.outcome

    @Slot(object)
    def _on_capture_done(self, outcome: CaptureOutcome) -> None:
        self.import_error = ""  # a photo arrived: an earlier unreadable file is history
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
        if outcome.notice:  # e.g. a hot-folder file that replaced an earlier photo
            self.verdict_label.setText(
                f"{self.verdict_label.text()}<br><b>Note</b>: {html.escape(outcome.notice)}"
            )
            self.statusBar().showMessage(outcome.notice, 30_000)
        if outcome.store_error:
            QMessageBox.warning(self, "Photo not saved", outcome.store_error)
        self.gallery.mark_stale()
        self._focus_live_view()
        self._update_buttons()

    @Slot()
    def _on_submit_clicked(self) -> None:
        if self._submit_blocker() or self.outcome is None or self.outcome.record is None:
            return
        record = self.outcome.record
        self.session.submit_shown()
        self.statusBar().showMessage(
            f"Photo for {record.info.patient_ref} queued for sending.", 8000
        )
        self.note_edit.clear()
        self._back_to_live()

    @Slot()
    def _on_retake_clicked(self) -> None:
        if not self.session.flow.showing_capture:
            return
        self._back_to_live()

    def _back_to_live(self) -> None:
        self.verdict_label.setText("")
        self.live.back_to_live()
        self.session.resume_live()
        if self.session.is_hot_folder:
            self._show_waiting_for_photo()
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
        """A choice for this session: the saved default is changed in Settings only."""
        enabled = self.auto_capture_check.isChecked()
        self.session.set_auto_capture(float(self.hold_spin.value()) if enabled else None)

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

    # ---- help ------------------------------------------------------------------------------
    def about_text(self) -> str:
        """Help > About: app and model versions, and where the licences are."""
        return about_html(self.session.model_info, self.session.model_loading)

    @Slot()
    def _on_about(self) -> None:
        QMessageBox.about(self, "About Skin Capture Assist", self.about_text())

    # ---- status ----------------------------------------------------------------------------
    @Slot(int)
    def _on_tab_changed(self, index: int) -> None:
        self._update_fps_visibility()

    def _update_fps_visibility(self) -> None:
        """The frame rate means something only while the live picture is on screen."""
        live = self.tabs.currentIndex() == 0 and not self.session.flow.showing_capture
        self.fps_label.setVisible(live and not self.session.is_hot_folder)

    @Slot(object, object)
    def _on_live(self, view: object, live: object) -> None:
        if self.session.capture_busy:
            return
        self._update_buttons()

    @Slot(str, bool)
    def _on_source_status(self, message: str, ok: bool) -> None:
        """The message itself is the live view's banner; the status bar gets a short name."""
        res = self.session.source_resolution
        if ok:
            suffix = f" - {res[0]}x{res[1]}" if res and not self.session.is_hot_folder else ""
            set_elided(self.source_label, f"{self.session.source_name}{suffix}")
        else:
            set_elided(self.source_label, "No picture: see the message above the view")
            self.source_label.setToolTip(message)
            if not self.session.flow.showing_capture:
                self.live.frame_view.clear_image(NO_PICTURE)
                self._set_guidance(WAITING_FOR_CAMERA, False)
        hot = self.session.is_hot_folder
        if ok and hot and not self.session.flow.showing_capture and not self.session.capture_busy:
            self._show_waiting_for_photo()
        elif ok and self.live.guidance.text() == WAITING_FOR_CAMERA:
            # back: the next live result sets the guidance; until then say what is known
            if self.session.model_info is not None:
                self._set_guidance(WAITING_MESSAGE, False)
            elif self.session.model_loading:
                self._set_guidance(LOADING_MODEL, False)
            else:
                self._set_guidance(NO_MODEL_GATE_MESSAGE, True)

    @Slot(str)
    def _on_source_problem(self, message: str) -> None:
        """A file in the hot folder could not be read: it replaces the photo on screen (kept in
        Review) and stays until the next photo arrives."""
        if not self.session.is_hot_folder:
            self.statusBar().showMessage(message, 15_000)
            return
        self.import_error = message
        if self.session.flow.showing_capture:
            self._back_to_live()
        else:
            self._show_waiting_for_photo()
        self.verdict_label.setText(f"<b style='color:#c0392b'>Not imported</b>: {message}")

    @Slot(str, bool)
    def _on_model_status(self, message: str, ok: bool) -> None:
        info = self.session.model_info
        if info is not None:
            set_elided(self.model_label, f"{info.name} {info.version} ({info.provider})")
        elif ok:
            self.model_label.setText(LOADING_MODEL)
        else:
            self.model_label.setText("No quality model")
            self.model_label.setToolTip(message)
        no_picture = bool(self.session.source_message) and not self.session.source_ok
        if not self.session.flow.showing_capture and no_picture:
            self._set_guidance(WAITING_FOR_CAMERA, False)
        elif ok and info is None and not self.session.flow.showing_capture:
            self._set_guidance(LOADING_MODEL, False)
        if (
            self.session.is_hot_folder
            and not self.session.flow.showing_capture
            and not self.session.capture_busy
        ):
            self._show_waiting_for_photo()
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
        from desktop_app.qt.windows.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.settings, self.session, self)
        if dialog.exec():
            self.apply_settings(dialog.result_settings(), dialog.new_pin())

    def apply_settings(self, new: AppSettings, new_pin: str = "") -> None:
        """Save ``new`` and apply what changed (camera, model, auto-capture, sending)."""
        old = self.settings
        if new_pin:
            new.set_kiosk_pin(new_pin)
        changed = SettingsChanges.between(old, new)
        self.settings = new
        self.services.settings = new
        self.gallery.settings = new
        self._save_settings()
        if changed.source:
            source, note = choose_source(new.camera or None, new)
            self.import_error = ""
            self.session.set_source(source)
            self._apply_source_mode()
            if note:
                self.statusBar().showMessage(note, 10_000)
        if changed.model:
            self.session.load_model(
                resolve_model_path(None, new), new.provider, new.low_memory_inference
            )
        if changed.submission and self.services.store is not None:
            queue = self.services.replace_queue(new)
            if queue is None:
                self.queue_label.setText(f"Sending is not configured: {self.services.queue_error}")
            self.session.set_queue(queue, new.submission_interval_s)
        if changed.auto_capture:  # a new default replaces this session's choice
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
