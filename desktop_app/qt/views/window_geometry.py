"""The staff window's size on the screen and its status-bar labels (no window state here)."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QLabel

# The staff window fits a 1280x720 screen less its task bar and window decorations.
MIN_WINDOW_SIZE = QSize(960, 600)
PREFERRED_WINDOW_SIZE = QSize(1400, 900)
STATUS_LABEL_MAX_PX = 360


FRAME_MARGIN = QSize(16, 40)  # window decorations: borders and the title bar


def fitted_window_size(available: QSize) -> QSize:
    """The opening size: the preferred size, shrunk to the screen's available area less the
    window decorations (``FRAME_MARGIN``), never below the minimum."""
    width = min(PREFERRED_WINDOW_SIZE.width(), available.width() - FRAME_MARGIN.width())
    height = min(PREFERRED_WINDOW_SIZE.height(), available.height() - FRAME_MARGIN.height())
    return QSize(max(MIN_WINDOW_SIZE.width(), width), max(MIN_WINDOW_SIZE.height(), height))


def set_elided(label: QLabel, text: str, max_px: int = STATUS_LABEL_MAX_PX) -> None:
    """Show ``text`` in a status-bar label cut to ``max_px`` with "…" (the whole text is the
    tooltip), so that a long message never pushes the status bar wider than the window."""
    shown = label.fontMetrics().elidedText(text, Qt.TextElideMode.ElideMiddle, max_px)
    label.setText(shown)
    label.setToolTip(text if shown != text else "")
