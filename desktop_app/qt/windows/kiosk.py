"""The patient kiosk: full screen, large touch targets, step-by-step (body site, then the photo),
auto-capture, plain words without numbers, no gallery or settings. Leaving needs the staff PIN;
after a period without touches a countdown asks whether the patient is still there, then the
screen is cleared for the next patient (nothing of the previous patient stays visible; a photo
already taken stays in the store, in Review as "accepted, not sent"). What is said and which step
is highlighted comes from ``core.kiosk_flow``."""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, QTimer, Slot
from PySide6.QtGui import QCloseEvent, QKeyEvent, QResizeEvent
from PySide6.QtWidgets import (
    QApplication,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from desktop_app.app.services import AppServices
from desktop_app.core.capture import CaptureContext, CaptureOutcome
from desktop_app.core.capture_flow import IDLE_BLOCKER
from desktop_app.core.gating import GateView
from desktop_app.core.kiosk_flow import (
    BODY_SITE_HINT,
    BODY_SITE_QUESTION,
    KIOSK_BODY_SITES,
    LIVE_WAITING,
    STEP_UNCOVER,
    STEPS,
    IdleCountdown,
    PinLockout,
    default_pin_lockout_path,
    live_message,
    live_step,
    verdict_for,
)
from desktop_app.core.patient_ref import PatientRefProblem, normalise_check_in_number
from desktop_app.qt.views.live_view import LiveCaptureView
from desktop_app.qt.views.pin_pad import TOUCH_HEIGHT, ActivityFilter, PinPad
from desktop_app.qt.workers.session import make_session, start_session

logger = logging.getLogger(__name__)

THANKS_SECONDS = 8
SITE_COLUMNS = 4
STYLE = """
QWidget#kiosk { background: #f5f7fa; }
QPushButton { font-size: 26px; padding: 12px 28px; border-radius: 14px;
              background: #1f6feb; color: white; }
QPushButton:disabled { background: #9fb3c8; color: #eef2f6; }
QPushButton#secondary { background: #5a6472; }
QPushButton#staff { font-size: 14px; padding: 6px 12px; background: transparent; color: #8896a6;
                    border: 1px solid #c5ced8; }
QLabel { color: #1d2530; }
QLabel#title { font-size: 40px; font-weight: bold; }
QLabel#step { font-size: 22px; padding: 8px 12px; border-radius: 10px; }
QLabel#stepActive { font-size: 22px; padding: 8px 12px; border-radius: 10px;
                    background: #dbe9ff; font-weight: bold; }
QLabel#patientMessage { font-size: 28px; font-weight: bold; padding: 8px; }
QLabel#siteChosen { font-size: 20px; color: #3d4a5c; }
QPushButton#site { font-size: 22px; padding: 8px 10px; }
QFrame#idleWarning { background: #fff3cd; border: 2px solid #e0a800; border-radius: 14px; }
QLabel#idleText { font-size: 30px; font-weight: bold; color: #5c4400; }
QLineEdit { font-size: 28px; padding: 10px; border-radius: 10px; border: 2px solid #9fb3c8; }
QProgressBar { height: 24px; border-radius: 10px; background: #dde3ea; text-align: center; }
QProgressBar::chunk { background: #2e8b57; border-radius: 10px; }
"""


THANKS_QUEUED = "Thank you.\nYour photo is saved and queued for the clinic."
THANKS_NEEDS_STAFF = (
    "Thank you.\nYour photo is saved.\nPlease tell a staff member: they need to send it for you."
)

CODE_MESSAGE_WIDTH = 720  # px: the check-in message under the 520-720 px entry field


class KioskWindow(QWidget):
    """Pages: welcome -> capture (live, then the photo's verdict) -> thanks; plus the PIN pad."""

    def __init__(self, services: AppServices) -> None:
        super().__init__()
        self.setObjectName("kiosk")
        self.setStyleSheet(STYLE)
        self.setWindowTitle("Skin photo")
        self.services = services
        self.settings = services.settings
        self.unlocked = False
        self.closed_cleanly: bool | None = None
        self.pin_lockout = PinLockout(path=default_pin_lockout_path())
        self.resets = 0
        self.body_site = ""
        self.check_in_number = ""
        self.countdown = IdleCountdown()

        self.session = make_session(
            services,
            self._capture_context,
            self._capture_blocker,
            auto_capture=self.settings.auto_capture_kiosk,
            parent=self,
        )
        self.pages = QStackedWidget()
        self._build_welcome()
        self._build_site()
        self._build_capture()
        self._build_thanks()
        self.pin_pad = PinPad()
        self.pages.addWidget(self.pin_pad)
        self.staff_button = QPushButton("Staff")
        self.staff_button.setObjectName("staff")
        top = QHBoxLayout()
        top.addStretch(1)
        top.addWidget(self.staff_button)
        self._build_idle_warning()
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.pages, 1)

        self.idle_timer = QTimer(self)
        self.idle_timer.setSingleShot(True)
        self.idle_timer.setInterval(max(5, self.settings.kiosk_idle_timeout_s) * 1000)
        self.idle_timer.timeout.connect(self._on_idle_timeout)
        self.thanks_timer = QTimer(self)
        self.thanks_timer.setSingleShot(True)
        self.thanks_timer.setInterval(THANKS_SECONDS * 1000)
        self.thanks_timer.timeout.connect(self.reset_for_next_patient)
        self.countdown_timer = QTimer(self)
        self.countdown_timer.setInterval(1000)
        self.countdown_timer.timeout.connect(self._on_countdown_tick)
        self._activity = ActivityFilter(self._on_activity)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self._activity)

        self.start_button.clicked.connect(self._on_start)
        self.take_button.clicked.connect(self._on_take_photo)
        self.send_button.clicked.connect(self._on_send)
        self.again_button.clicked.connect(self._on_try_again)
        self.site_back_button.clicked.connect(self._on_site_back)
        self.still_here_button.clicked.connect(self._on_still_here)
        self.staff_button.clicked.connect(self._on_staff)
        self.pin_pad.ok_button.clicked.connect(self._on_pin_ok)
        self.pin_pad.entry.returnPressed.connect(self._on_pin_ok)
        self.pin_pad.cancel_button.clicked.connect(self._on_pin_cancel)
        self.session.sig_capture_done.connect(self._on_capture_done)
        self.session.sig_live.connect(self._on_live)
        self.session.sig_capture_refused.connect(self._on_capture_refused)

        start_session(self.session, services)
        self.session.pause_live()  # nothing is scored until a patient presses Start
        self.pages.setCurrentWidget(self.welcome_page)
        self.idle_timer.start()

    def show_kiosk(self) -> None:
        """Full screen on the current screen (also without a window manager, e.g. under Xvfb)."""
        screen = self.screen() or QApplication.primaryScreen()
        if screen is not None:
            self.setGeometry(screen.geometry())
        self.showFullScreen()

    # ---- pages -----------------------------------------------------------------------------
    def _big_button(self, text: str, secondary: bool = False) -> QPushButton:
        button = QPushButton(text)
        button.setMinimumHeight(TOUCH_HEIGHT)
        button.setMinimumWidth(260)
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        if secondary:
            button.setObjectName("secondary")
        return button

    def _build_welcome(self) -> None:
        self.welcome_page = QWidget()
        title = QLabel("Photo of your skin for the doctor")
        title.setObjectName("title")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        intro = QLabel("This takes about a minute. The screen guides you step by step.")
        intro.setAlignment(Qt.AlignmentFlag.AlignCenter)
        intro.setStyleSheet("font-size: 24px;")
        self.code_edit = QLineEdit()
        self.code_edit.setPlaceholderText("Check-in number (optional)")
        self.code_edit.setMinimumWidth(520)
        self.code_edit.setMaximumWidth(720)
        self.code_message = QLabel("")
        self.code_message.setObjectName("codeMessage")
        self.code_message.setWordWrap(True)
        self.code_message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        # a fixed width: a word-wrapped label centred in a box layout otherwise gets squeezed
        # to a sliver and its second line is cut off
        self.code_message.setFixedWidth(CODE_MESSAGE_WIDTH)
        self.code_message.setStyleSheet("font-size: 22px; color: #8a1c1c;")
        self.code_message.hide()
        self.code_edit.textEdited.connect(lambda _text: self.code_message.hide())
        self.start_button = self._big_button("Start")
        layout = QVBoxLayout(self.welcome_page)
        layout.addStretch(1)
        layout.addWidget(title)
        layout.addWidget(intro)
        layout.addSpacing(30)
        layout.addWidget(self.code_edit, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.code_message, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addSpacing(20)
        layout.addWidget(self.start_button, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(2)
        self.pages.addWidget(self.welcome_page)

    def _build_site(self) -> None:
        """The body-site step: one large button per site of the staff window's list."""
        self.site_page = QWidget()
        title = QLabel(BODY_SITE_QUESTION)
        title.setObjectName("title")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint = QLabel(BODY_SITE_HINT)
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setStyleSheet("font-size: 22px;")
        grid = QGridLayout()
        grid.setSpacing(12)
        self.site_buttons: dict[str, QPushButton] = {}
        for i, site in enumerate(KIOSK_BODY_SITES):
            button = QPushButton(site)
            button.setObjectName("site")
            button.setMinimumHeight(76)
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            button.clicked.connect(lambda _=False, chosen=site: self._on_site_chosen(chosen))
            self.site_buttons[site] = button
            grid.addWidget(button, i // SITE_COLUMNS, i % SITE_COLUMNS)
        self.site_back_button = QPushButton("Back")
        self.site_back_button.setObjectName("secondary")
        self.site_back_button.setMinimumHeight(76)
        self.site_back_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        last = len(KIOSK_BODY_SITES)
        grid.addWidget(self.site_back_button, last // SITE_COLUMNS, SITE_COLUMNS - 1)
        layout = QVBoxLayout(self.site_page)
        layout.addWidget(title)
        layout.addWidget(hint)
        layout.addSpacing(8)
        layout.addLayout(grid)
        layout.addStretch(1)
        self.pages.addWidget(self.site_page)

    def _build_idle_warning(self) -> None:
        # floats over the top of the page (not in the layout): the page keeps its size and
        # everything on it stays where the patient left it
        self.idle_warning = QFrame(self)
        self.idle_warning.setObjectName("idleWarning")
        self.idle_text = QLabel("")
        self.idle_text.setObjectName("idleText")
        self.still_here_button = QPushButton("I am still here")
        self.still_here_button.setMinimumHeight(TOUCH_HEIGHT)
        self.still_here_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        row = QHBoxLayout(self.idle_warning)
        row.addWidget(self.idle_text, 1)
        row.addWidget(self.still_here_button)
        self.idle_warning.hide()

    def _place_idle_warning(self) -> None:
        width = min(self.width() - 40, 1100)
        height = self.idle_warning.sizeHint().height()
        self.idle_warning.setGeometry((self.width() - width) // 2, 56, width, height)
        self.idle_warning.raise_()

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._place_idle_warning()

    def _build_capture(self) -> None:
        self.capture_page = QWidget()
        self.live = LiveCaptureView(self.session, large=True)
        self.live.frame_view.set_overlay_visible(self.settings.show_heat_overlay)
        # patients get plain words from core.kiosk_flow, not the staff score bar and cues
        self.live.guidance.hide()
        self.live.score_bar.hide()
        self.patient_message = QLabel(LIVE_WAITING)
        self.patient_message.setObjectName("patientMessage")
        self.patient_message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.patient_message.setWordWrap(True)
        self.step_labels = []
        steps = QVBoxLayout()
        heading = QLabel("Steps")
        heading.setObjectName("title")
        steps.addWidget(heading)
        self.site_label = QLabel("")
        self.site_label.setObjectName("siteChosen")
        steps.addWidget(self.site_label)
        for number, text in enumerate(STEPS, start=1):
            label = QLabel(f"{number}. {text}")
            label.setWordWrap(True)
            label.setObjectName("step")
            self.step_labels.append(label)
            steps.addWidget(label)
        steps.addSpacing(16)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setFormat("Hold still…")
        self.progress.setTextVisible(True)
        steps.addWidget(self.progress)
        steps.addStretch(1)
        self.take_button = self._big_button("Take photo now")
        self.send_button = self._big_button("Send")
        self.again_button = self._big_button("Try again", secondary=True)
        steps.addWidget(self.take_button)
        steps.addWidget(self.send_button)
        steps.addWidget(self.again_button)
        side = QWidget()
        side.setLayout(steps)
        side.setFixedWidth(440)
        picture = QVBoxLayout()
        picture.addWidget(self.live, 1)
        picture.addWidget(self.patient_message)
        row = QHBoxLayout(self.capture_page)
        row.addLayout(picture, 1)
        row.addWidget(side)
        self.pages.addWidget(self.capture_page)

    def _build_thanks(self) -> None:
        self.thanks_page = QWidget()
        label = QLabel(THANKS_QUEUED)
        label.setObjectName("title")
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thanks_label = label
        layout = QVBoxLayout(self.thanks_page)
        layout.addStretch(1)
        layout.addWidget(label)
        layout.addStretch(1)
        self.pages.addWidget(self.thanks_page)

    def _set_step(self, index: int) -> None:
        for i, label in enumerate(self.step_labels):
            label.setObjectName("stepActive" if i == index else "step")
            label.style().unpolish(label)
            label.style().polish(label)

    def _show_live_controls(self) -> None:
        self.take_button.show()
        self.take_button.setEnabled(True)
        self.send_button.hide()
        self.again_button.hide()
        self.progress.show()
        self.progress.setValue(0)
        self.patient_message.setText(LIVE_WAITING)
        self._set_step(STEP_UNCOVER)

    # ---- flow ------------------------------------------------------------------------------
    def _capture_context(self) -> CaptureContext:
        return CaptureContext("kiosk", "kiosk", self.check_in_number, self.body_site, "")

    @property
    def outcome(self) -> CaptureOutcome | None:
        """The photo on screen (``CaptureFlow.outcome``)."""
        return self.session.flow.outcome

    def _capture_blocker(self) -> str:
        if self.pages.currentWidget() is not self.capture_page or self.session.flow.showing_capture:
            return IDLE_BLOCKER
        return ""

    @Slot()
    def _on_start(self) -> None:
        """Start: the check-in number through the same rule as a typed patient ID (refused with
        a message, never stored as typed), then the body-site step."""
        checked = normalise_check_in_number(self.code_edit.text())
        if isinstance(checked, PatientRefProblem):
            self.code_message.setText(checked.message)
            # the box layout's alignment ignores a wrapped label's height-for-width
            self.code_message.setMinimumHeight(self.code_message.heightForWidth(CODE_MESSAGE_WIDTH))
            self.code_message.show()
            self.code_edit.setFocus()
            return
        self.code_message.hide()
        self.check_in_number = checked
        self.body_site = ""
        self.pages.setCurrentWidget(self.site_page)

    @Slot()
    def _on_site_back(self) -> None:
        """Back to the welcome page (the check-in number typed stays)."""
        self.body_site = ""
        self.pages.setCurrentWidget(self.welcome_page)

    def _on_site_chosen(self, site: str) -> None:
        """A body site was chosen: on to the photo."""
        self.body_site = site
        self.site_label.setText(f"Photo of: {site}")
        self._on_try_again()
        self.pages.setCurrentWidget(self.capture_page)

    @Slot(object, object)
    def _on_live(self, view: GateView, live: object) -> None:
        if self.session.flow.showing_capture:
            return
        self.progress.setValue(round(view.auto_capture_progress * 100))
        self.patient_message.setText(live_message(view))
        self._set_step(live_step(view))

    @Slot()
    def _on_take_photo(self) -> None:
        if self.session.capture():
            self.take_button.setEnabled(False)

    @Slot(str)
    def _on_capture_refused(self, message: str) -> None:
        logger.info("kiosk capture refused: %s", message)

    @Slot(object)
    def _on_capture_done(self, outcome: CaptureOutcome) -> None:
        if self.pages.currentWidget() is not self.capture_page:
            # a late result after an idle reset: it is stored; nothing is shown
            self.session.pause_live()
            return
        self.live.show_outcome(outcome)
        self.take_button.hide()
        self.progress.hide()
        self.again_button.show()
        self.send_button.setVisible(outcome.can_submit and self.session.queue is not None)
        verdict = verdict_for(
            outcome.judgement.accepted,
            outcome.judgement.score,
            outcome.result.reasons if outcome.result is not None else {},
            outcome.record is not None,
            outcome.can_submit,
        )
        self.patient_message.setText(verdict.message)
        self._set_step(verdict.step)

    @Slot()
    def _on_send(self) -> None:
        outcome = self.outcome
        if outcome is None or not outcome.can_submit or outcome.record is None:
            return
        # The photo is stored already; the queue sends it later, so say "queued", never "sent".
        blocker = self.session.send_blocker(outcome.record)
        if blocker:
            self.session.pause_live()  # not sent: the photo stays in Review for the staff
        if blocker or not self.session.submit_shown():
            logger.warning("kiosk photo %s kept for staff: %s", outcome.record.id, blocker)
            self.thanks_label.setText(THANKS_NEEDS_STAFF)
        else:
            self.thanks_label.setText(THANKS_QUEUED)
        self.live.clear_for_next_patient()
        self.pages.setCurrentWidget(self.thanks_page)
        self.thanks_timer.start()

    @Slot()
    def _on_try_again(self) -> None:
        self.live.back_to_live()
        self.session.resume_live()
        self._show_live_controls()

    # ---- idle reset ------------------------------------------------------------------------
    def _on_activity(self) -> None:
        """Any touch: the patient is there (the warning, if shown, goes away)."""
        self.idle_timer.start()
        if self.countdown.running:
            self._on_still_here()

    @Slot()
    def _on_idle_timeout(self) -> None:
        """No touch for the idle time: with something of a patient on screen, warn and count
        down before clearing it."""
        if self.countdown.running:
            return
        if self.pages.currentWidget() is not self.welcome_page or self.code_edit.text():
            logger.info("kiosk idle: asking whether the patient is still there")
            self.countdown.start()
            self.idle_text.setText(self.countdown.text)
            self._place_idle_warning()
            self.idle_warning.show()
            self.countdown_timer.start()
            return
        self.idle_timer.start()

    @Slot()
    def _on_countdown_tick(self) -> None:
        """One second of the warning gone; at zero the screen is cleared."""
        if self.countdown.tick():
            logger.info("kiosk idle: clearing the screen for the next patient")
            self.reset_for_next_patient()
            self.idle_timer.start()
            return
        self.idle_text.setText(self.countdown.text)

    @Slot()
    def _on_still_here(self) -> None:
        """The patient is still there: back to where they were."""
        self._stop_countdown()
        self.idle_timer.start()

    def _stop_countdown(self) -> None:
        self.countdown.stop()
        self.countdown_timer.stop()
        self.idle_warning.hide()

    @Slot()
    def reset_for_next_patient(self) -> None:
        """Forget everything about the current patient on screen and show the welcome page."""
        self.thanks_timer.stop()
        self._stop_countdown()
        self.body_site = ""
        self.site_label.setText("")
        self.code_edit.clear()
        self.code_message.hide()
        self.check_in_number = ""
        self.pin_pad.entry.clear()
        self.live.clear_for_next_patient("")
        self.session.pause_live()
        self.pages.setCurrentWidget(self.welcome_page)
        self.resets += 1

    # ---- leaving (staff PIN) ---------------------------------------------------------------
    @Slot()
    def _on_staff(self) -> None:
        self._page_before_pin = self.pages.currentWidget()
        self.pin_pad.entry.clear()
        self.pin_pad.message.setText("Staff PIN to leave the kiosk")
        self.pages.setCurrentWidget(self.pin_pad)

    @Slot()
    def _on_pin_cancel(self) -> None:
        self.pin_pad.entry.clear()
        self.pages.setCurrentWidget(getattr(self, "_page_before_pin", self.welcome_page))

    @Slot()
    def _on_pin_ok(self) -> None:
        lockout = self.pin_lockout
        if lockout.locked:
            wait = round(lockout.seconds_left())
            self.pin_pad.message.setText(f"Too many wrong PINs. Wait {wait} s.")
            self.pin_pad.entry.clear()
            return
        pin = self.pin_pad.entry.text()
        self.pin_pad.entry.clear()
        if self.settings.check_kiosk_pin(pin):
            lockout.record_success()
            self.unlocked = True
            self.close()
            return
        if lockout.record_failure():
            self.pin_pad.message.setText(f"Too many wrong PINs. Wait {lockout.lockout_s:.0f} s.")
        else:
            self.pin_pad.message.setText("Wrong PIN. Try again.")

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            event.accept()  # Escape must not leave full screen or close the kiosk
            return
        super().keyPressEvent(event)

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.unlocked:
            event.ignore()
            self._on_staff()
            return
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self._activity)
        self.idle_timer.stop()
        self.thanks_timer.stop()
        self.countdown_timer.stop()
        self.closed_cleanly = self.session.shutdown()
        if self.services.store is not None:
            self.services.store.close()
        event.accept()
