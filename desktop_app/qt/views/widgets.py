"""Reusable widgets: the frame view with its heat overlay and legend, and the score bar."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PySide6.QtCore import QLineF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QIcon, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from desktop_app.core.gating import GateState
from desktop_app.core.overlay import (
    POOR_RGB,
    heat_colours,
    patch_cells,
    poor_outline_segments,
)
from desktop_app.core.resources import app_icon_path
from desktop_app.core.tiling import PatchLayout

STAFF_LEGEND = "outlined: below the quality threshold"
PATIENT_LEGEND = "outlined: parts of the picture that are not clear enough"
OUTLINE_WIDTH = 3.0  # device pixels: the poor regions' outline (the skin inside is not tinted)
GUIDE_COLOURS = {True: QColor(90, 220, 120, 200), False: QColor(255, 255, 255, 170)}


def app_icon() -> QIcon:
    """The application's icon (packaging/skin-capture.png), or an empty icon if not installed."""
    path = app_icon_path()
    return QIcon(str(path)) if path is not None else QIcon()


STATE_COLOURS = {
    GateState.GOOD: QColor(40, 160, 70),
    GateState.RETAKE: QColor(205, 70, 40),
    GateState.WAITING: QColor(120, 120, 120),
    GateState.NO_MODEL: QColor(150, 110, 20),
}


def rgb_to_qimage(image: np.ndarray) -> QImage:
    """Wrap a contiguous uint8 array without copying (keep the array alive): RGB ``[H, W, 3]``,
    or ``[H, W, 4]`` in BGRX byte order (Qt's RGB32, which paints without a conversion)."""
    h, w = image.shape[:2]
    fmt = QImage.Format.Format_RGB32 if image.shape[2] == 4 else QImage.Format.Format_RGB888
    return QImage(image.data, w, h, int(image.strides[0]), fmt)


@dataclass(frozen=True)
class HeatMap:
    """Per-patch scores laid out on an image of ``frame_size`` (width, height); drawn as the
    outline of the poor regions (``segments``), never as a tint over the skin."""

    cells: np.ndarray  # int32 [N, 4] (x0, y0, x1, y1) in frame pixels
    colours: np.ndarray  # uint8 [N, 3]
    frame_size: tuple[int, int]
    segments: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int32))  # [K, 4]

    @classmethod
    def from_result(
        cls, layout: PatchLayout, patch_scores: np.ndarray, threshold: float
    ) -> HeatMap:
        h, w = layout.original_hw
        return cls(
            patch_cells(layout),
            heat_colours(patch_scores, threshold),
            (w, h),
            poor_outline_segments(layout, patch_scores, threshold),
        )


class FrameView(QWidget):
    """An image scaled to fit (aspect kept), an optional semi-transparent heat overlay with a
    legend, or a placeholder text when there is no image."""

    sig_resized = Signal(int, int)

    def __init__(
        self,
        parent: QWidget | None = None,
        legend: bool = True,
        legend_text: str = STAFF_LEGEND,
    ) -> None:
        super().__init__(parent)
        self.legend_text = legend_text
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 180)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._rgb: np.ndarray | None = None
        self._qimage: QImage | None = None
        self._source_size: tuple[int, int] = (0, 0)
        self._heat: HeatMap | None = None
        self._overlay_visible = True
        self._legend = legend
        self._placeholder = ""
        self._badge = ""
        self._guide: tuple[float, bool | None] | None = None
        self.frames_shown = 0

    def sizeHint(self) -> QSize:
        return QSize(960, 540)

    # ---- content ---------------------------------------------------------------------------
    def set_image(self, rgb: np.ndarray, source_size: tuple[int, int] | None = None) -> None:
        """Show ``rgb`` (uint8 RGB, or BGRX for the live preview, see :func:`rgb_to_qimage`);
        ``source_size`` is the full frame's (width, height) when ``rgb`` is a scaled display
        copy (the heat map is laid out in full-frame pixels)."""
        self._rgb = np.ascontiguousarray(rgb)
        self._qimage = rgb_to_qimage(self._rgb)
        self._source_size = source_size or (rgb.shape[1], rgb.shape[0])
        self._placeholder = ""
        self.frames_shown += 1
        self.update()

    def clear_image(self, placeholder: str = "") -> None:
        self._rgb = None
        self._qimage = None
        self._heat = None
        self._placeholder = placeholder
        self.update()

    def set_heat(self, heat: HeatMap | None, repaint: bool = True) -> None:
        """``repaint=False`` when the next frame repaints anyway (live preview)."""
        self._heat = heat
        if repaint:
            self.update()

    def set_overlay_visible(self, visible: bool) -> None:
        self._overlay_visible = visible
        self.update()

    @property
    def overlay_visible(self) -> bool:
        return self._overlay_visible

    @property
    def heat(self) -> HeatMap | None:
        return self._heat

    def set_guide(self, radius: float | None, ok: bool | None = None, repaint: bool = True) -> None:
        """The framing guide: a centred circle of ``radius`` x min(width, height) of the image
        (None: no guide); ``ok`` True draws it green (the finding is inside and big enough)."""
        self._guide = None if radius is None else (radius, ok)
        if repaint:
            self.update()

    @property
    def guide(self) -> tuple[float, bool | None] | None:
        return self._guide

    def set_badge(self, text: str) -> None:
        """A small label in the top-left corner (e.g. "Captured photo")."""
        self._badge = text
        self.update()

    def has_image(self) -> bool:
        return self._qimage is not None

    # ---- painting --------------------------------------------------------------------------
    def image_rect(self) -> QRect:
        if self._qimage is None:
            return QRect()
        iw, ih = self._source_size
        scale = min(self.width() / iw, self.height() / ih)
        w, h = round(iw * scale), round(ih * scale)
        return QRect((self.width() - w) // 2, (self.height() - h) // 2, w, h)

    def resizeEvent(self, event: object) -> None:
        self.sig_resized.emit(self.width(), self.height())
        super().resizeEvent(event)  # type: ignore[arg-type]

    def paintEvent(self, event: object) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(24, 24, 24))
        if self._qimage is None:
            if self._placeholder:
                painter.setPen(QColor(220, 220, 220))
                font = QFont(self.font())
                font.setPointSizeF(font.pointSizeF() * 1.4)
                painter.setFont(font)
                painter.drawText(
                    self.rect().adjusted(20, 20, -20, -20),
                    Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                    self._placeholder,
                )
            painter.end()
            return
        target = self.image_rect()
        if target.size() != self._qimage.size():
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        painter.drawImage(target, self._qimage)
        heat = self._heat
        if self._overlay_visible and heat is not None and self._same_aspect(heat.frame_size):
            self._paint_heat(painter, target, heat)
            if self._legend:
                self._paint_legend(painter, target)
        if self._guide is not None:
            self._paint_guide(painter, target, *self._guide)
        if self._badge:
            self._paint_badge(painter, target)
        painter.end()

    def _same_aspect(self, frame_size: tuple[int, int]) -> bool:
        sw, sh = self._source_size
        fw, fh = frame_size
        return sw > 0 and fh > 0 and abs(sw / sh - fw / fh) < 0.01

    def _paint_heat(self, painter: QPainter, target: QRect, heat: HeatMap) -> None:
        """The poor regions' outline: a red line with a dark edge (visible on light and dark
        skin); the pixels inside the cells are left as they are."""
        if len(heat.segments) == 0:
            return
        fw, fh = heat.frame_size
        sx, sy = target.width() / fw, target.height() / fh
        ox, oy = target.x(), target.y()
        lines = [
            QLineF(ox + x0 * sx, oy + y0 * sy, ox + x1 * sx, oy + y1 * sy)
            for x0, y0, x1, y1 in heat.segments
        ]
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QPen(QColor(0, 0, 0, 150), OUTLINE_WIDTH + 2.0))
        painter.drawLines(lines)
        painter.setPen(QPen(QColor(*POOR_RGB), OUTLINE_WIDTH))
        painter.drawLines(lines)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)

    def _paint_guide(
        self, painter: QPainter, target: QRect, radius: float, ok: bool | None
    ) -> None:
        r = radius * min(target.width(), target.height())
        centre = QRectF(target).center()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(QColor(0, 0, 0, 120), 4.0))
        painter.drawEllipse(centre, r, r)
        pen = QPen(GUIDE_COLOURS[ok is True], 2.0)
        pen.setStyle(Qt.PenStyle.SolidLine if ok else Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.drawEllipse(centre, r, r)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)

    def _paint_legend(self, painter: QPainter, target: QRect) -> None:
        pad = 10
        font = QFont(self.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        painter.setFont(font)
        text = self.legend_text
        w = painter.fontMetrics().horizontalAdvance(text) + 46
        box = QRect(target.left() + pad, target.bottom() - pad - 26, w, 26)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 150))
        painter.drawRoundedRect(box, 6, 6)
        painter.setPen(QPen(QColor(*POOR_RGB), OUTLINE_WIDTH))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(QRect(box.left() + 10, box.top() + 7, 18, 12))
        painter.setPen(QColor(240, 240, 240))
        painter.drawText(
            box.adjusted(36, 0, -6, 0),
            Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
            text,
        )

    def _paint_badge(self, painter: QPainter, target: QRect) -> None:
        font = QFont(self.font())
        font.setBold(True)
        painter.setFont(font)
        metrics = painter.fontMetrics()
        w = metrics.horizontalAdvance(self._badge) + 20
        box = QRect(target.left() + 10, target.top() + 10, w, metrics.height() + 10)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(0, 0, 0, 160))
        painter.drawRoundedRect(box, 6, 6)
        painter.setPen(QColor(255, 255, 255))
        painter.drawText(box, Qt.AlignmentFlag.AlignCenter, self._badge)


class ScoreBar(QWidget):
    """The current score as a bar, with the threshold marked: "Quality 0.72 - needs 0.60"."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(30)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.score: float | None = None
        self.threshold: float | None = None
        self.state = GateState.WAITING

    def sizeHint(self) -> QSize:
        return QSize(400, 30)

    def set_values(self, score: float | None, threshold: float | None, state: GateState) -> None:
        self.score, self.threshold, self.state = score, threshold, state
        self.update()

    def text(self) -> str:
        if self.threshold is None:
            if self.state == GateState.NO_MODEL:
                return "Quality: not checked (no model)"
            return "Quality: waiting for the quality model…"  # still loading
        if self.score is None:
            return f"Quality: waiting - needs {self.threshold:.2f}"
        return f"Quality {self.score:.2f} - needs {self.threshold:.2f}"

    def paintEvent(self, event: object) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        rect = self.rect().adjusted(1, 1, -1, -1)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(60, 60, 60))
        painter.drawRoundedRect(rect, 6, 6)
        if self.score is not None:
            fill = QRect(rect)
            fill.setWidth(round(rect.width() * min(max(self.score, 0.0), 1.0)))
            painter.setBrush(STATE_COLOURS.get(self.state, QColor(120, 120, 120)))
            painter.drawRoundedRect(fill, 6, 6)
        if self.threshold is not None:
            x = rect.left() + round(rect.width() * self.threshold)
            painter.setPen(QPen(QColor(255, 255, 255), 3))
            painter.drawLine(x, rect.top(), x, rect.bottom())
        painter.setPen(QColor(255, 255, 255))
        font = QFont(self.font())
        font.setBold(True)
        painter.setFont(font)
        painter.drawText(rect.adjusted(10, 0, -10, 0), Qt.AlignmentFlag.AlignVCenter, self.text())
        painter.end()
