"""The kiosk's staff-PIN keypad (large touch keys) and the app-wide activity filter that
restarts the idle timer. Only widgets: the kiosk connects them (the lockout is
``core.kiosk_flow.PinLockout``)."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QFont, QFontMetrics
from PySide6.QtWidgets import QGridLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

TOUCH_HEIGHT = 96
PIN_PAD_WIDTH = 560


class ActivityFilter(QObject):
    """Restarts the idle timer on any touch, click or key anywhere in the app."""

    EVENTS = frozenset(
        {
            QEvent.Type.MouseButtonPress,
            QEvent.Type.TouchBegin,
            QEvent.Type.KeyPress,
            QEvent.Type.Wheel,
        }
    )

    def __init__(self, on_activity: Callable[[], None]) -> None:
        super().__init__()
        self.on_activity = on_activity

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in self.EVENTS:
            self.on_activity()
        return False


class PinPad(QWidget):
    """Large numeric keypad for the staff PIN."""

    def __init__(self) -> None:
        super().__init__()
        self.entry = QLineEdit()
        self.entry.setEchoMode(QLineEdit.EchoMode.Password)
        self.entry.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.entry.setMaxLength(12)
        self.message = QLabel("Staff PIN to leave the kiosk")
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        # one line of fixed height: the keys never move when the message changes
        font = QFont(self.message.font())
        font.setPixelSize(26)
        font.setBold(True)
        self.message.setFixedHeight(QFontMetrics(font).height() + 16)
        self.message.setStyleSheet("font-size: 26px; font-weight: bold;")
        self.ok_button = QPushButton("OK")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("secondary")
        grid = QGridLayout()
        self.digit_buttons: dict[str, QPushButton] = {}
        for i, digit in enumerate("123456789"):
            self._add_digit(grid, digit, i // 3, i % 3)
        clear = QPushButton("⌫")
        clear.setObjectName("secondary")
        clear.setMinimumSize(110, TOUCH_HEIGHT)
        clear.clicked.connect(self.entry.backspace)
        grid.addWidget(clear, 3, 0)
        self._add_digit(grid, "0", 3, 1)
        self.ok_button.setMinimumSize(110, TOUCH_HEIGHT)
        grid.addWidget(self.ok_button, 3, 2)
        column = QVBoxLayout()
        column.addWidget(self.message)
        column.addWidget(self.entry)
        column.addLayout(grid)
        self.cancel_button.setMinimumHeight(TOUCH_HEIGHT)
        column.addWidget(self.cancel_button)
        pad = QWidget()
        pad.setLayout(column)
        pad.setFixedWidth(PIN_PAD_WIDTH)  # the keys stay put whatever the message says
        self.pad = pad
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addWidget(pad, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addStretch(1)

    def _add_digit(self, grid: QGridLayout, digit: str, row: int, col: int) -> None:
        button = QPushButton(digit)
        button.setMinimumSize(110, TOUCH_HEIGHT)
        button.clicked.connect(lambda: self.entry.insert(digit))
        self.digit_buttons[digit] = button
        grid.addWidget(button, row, col)
