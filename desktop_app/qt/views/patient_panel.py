"""The staff window's side column: patient fields, the photo buttons and verdict, this
session's options and the sending status. Only widgets: the window connects and drives them."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from desktop_app.app.services import AppServices
from desktop_app.core.settings import BODY_SITES, AppSettings
from desktop_app.qt.workers.session import queue_summary

BODY_SITE_PROMPT = "Choose the body site…"
SIDE_PANEL_WIDTH = 340


class StaffSidePanel(QScrollArea):
    """On a short screen the side column scrolls; the picture, guidance and score stay."""

    def __init__(self, services: AppServices) -> None:
        super().__init__()
        side = QVBoxLayout()
        side.setContentsMargins(0, 0, 0, 0)
        side.addWidget(self._build_patient_box())
        side.addWidget(self._build_photo_box())
        side.addWidget(self._build_options_box(services.settings))
        side.addWidget(self._build_send_box(services))
        side.addStretch(1)
        side_widget = QWidget()
        side_widget.setLayout(side)
        self.setWidget(side_widget)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        scrollbar = self.verticalScrollBar().sizeHint().width()
        self.setFixedWidth(SIDE_PANEL_WIDTH + scrollbar)

    def _build_patient_box(self) -> QGroupBox:
        patient_box = QGroupBox("Patient")
        form = QFormLayout(patient_box)
        self.patient_edit = QLineEdit()
        self.patient_edit.setPlaceholderText("Patient or encounter ID")
        self.patient_edit.setMaxLength(200)  # the rule (core.patient_ref) says why beyond 64
        self.site_combo = QComboBox()
        self.site_combo.addItem(BODY_SITE_PROMPT)
        self.site_combo.addItems(BODY_SITES)
        self.note_edit = QPlainTextEdit()
        self.note_edit.setPlaceholderText("Note for the dermatologist (optional)")
        self.note_edit.setMaximumHeight(70)
        self.new_patient_button = QPushButton("New patient")
        form.addRow("ID", self.patient_edit)
        form.addRow("Body site", self.site_combo)
        form.addRow("Note", self.note_edit)
        form.addRow("", self.new_patient_button)
        return patient_box

    def _build_photo_box(self) -> QGroupBox:
        capture_box = QGroupBox("Photo")
        box = QVBoxLayout(capture_box)
        self.capture_button = QPushButton("Capture  [Space]")
        self.submit_button = QPushButton("Submit  [Enter]")
        self.retake_button = QPushButton("Retake  [R]")
        for button in (self.capture_button, self.submit_button, self.retake_button):
            button.setMinimumHeight(36)
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
        return capture_box

    def _build_options_box(self, settings: AppSettings) -> QGroupBox:
        options_box = QGroupBox("Options (this session)")
        options = QFormLayout(options_box)
        self.auto_capture_check = QCheckBox("Auto-capture when steady and good")
        self.auto_capture_check.setChecked(settings.auto_capture_staff)
        self.auto_capture_check.setToolTip(
            "For this session only. The default for new sessions is in File > Settings."
        )
        self.hold_spin = QDoubleSpinBox()
        self.hold_spin.setRange(0.3, 10.0)
        self.hold_spin.setSingleStep(0.1)
        self.hold_spin.setSuffix(" s")
        self.hold_spin.setValue(settings.auto_capture_hold_s)
        self.hold_spin.setToolTip(self.auto_capture_check.toolTip())
        self.overlay_check = QCheckBox("Quality heat map")
        self.overlay_check.setChecked(settings.show_heat_overlay)
        for check in (self.auto_capture_check, self.overlay_check):
            # a click must not leave the focus here, where Space would toggle the box
            check.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self.new_patient_button.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        options.addRow(self.auto_capture_check)
        options.addRow("Hold for", self.hold_spin)
        options.addRow(self.overlay_check)
        return options_box

    def _build_send_box(self, services: AppServices) -> QGroupBox:
        send_box = QGroupBox("Sending")
        send = QVBoxLayout(send_box)
        self.queue_label = QLabel(
            queue_summary(None)
            if services.queue is None
            else f"Sending to {services.queue.target.name}…"
        )
        if services.queue_error:
            self.queue_label.setText(f"Sending is not configured: {services.queue_error}")
        self.queue_label.setWordWrap(True)
        self.retry_button = QPushButton("Retry failed")
        self.retry_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        send.addWidget(self.queue_label)
        send.addWidget(self.retry_button)
        return send_box
