"""Pieces of the review gallery that hold no review state: thumbnails, captions, local times
and the full-size viewer."""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtWidgets import QCheckBox, QDialog, QVBoxLayout, QWidget

from desktop_app.core.gating import guidance_for
from desktop_app.core.store import CaptureRecord
from desktop_app.qt.views.widgets import FrameView, HeatMap

THUMB_SIZE = 160
STATE_WORDS = {
    "captured": "recovered, not checked",
    "accepted": "accepted, not sent",
    "rejected": "rejected",
    "overridden": "accepted by reviewer, not sent",
    "queued": "waiting to send",
    "submitted": "sent",
    "failed": "sending failed",
}


def load_thumbnail(path: Path, size: int = THUMB_SIZE) -> np.ndarray:
    """A small uint8 RGB thumbnail; JPEGs are decoded at reduced size (fast)."""
    with Image.open(path) as img:
        img.draft("RGB", (size * 2, size * 2))
        rgb = img.convert("RGB")
    rgb.thumbnail((size, size))
    return np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8))


def local_time(iso_utc: str | None, with_date: bool = True) -> str:
    """An ISO UTC timestamp as local wall-clock time ("2026-11-27 15:06" or "15:06")."""
    if not iso_utc:
        return "-"
    try:
        when = datetime.fromisoformat(iso_utc).astimezone()
    except ValueError:
        return iso_utc
    return when.strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M")


def describe(record: CaptureRecord) -> str:
    """Short caption: patient ID and body site, score and top reasons, time and state."""
    info = record.info
    who = f"{info.patient_ref or 'No patient ID'} · {info.body_site or 'no body site'}"
    score = "not checked" if math.isnan(info.score) else f"{info.score:.2f}"
    reasons = [n for n, p in sorted(info.reasons.items(), key=lambda kv: -kv[1]) if p >= 0.5]
    when = local_time(record.created_utc, with_date=False)
    return (
        f"{who}\n{score} · {', '.join(reasons) or 'no reason'}\n"
        f"{when} · {STATE_WORDS[record.state]}"
    )


class ImageViewer(QDialog):
    """Full-size viewer of one capture with the overlay toggle."""

    def __init__(self, rgb: np.ndarray, heat: HeatMap | None, title: str, parent: QWidget) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.view = FrameView()
        self.view.set_image(rgb)
        self.view.set_heat(heat)
        self.overlay_check = QCheckBox("Quality heat map")
        self.overlay_check.setChecked(heat is not None)
        self.overlay_check.setEnabled(heat is not None)
        self.overlay_check.toggled.connect(self.view.set_overlay_visible)
        self.view.set_overlay_visible(heat is not None)
        layout = QVBoxLayout(self)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.overlay_check)
        h, w = rgb.shape[:2]
        screen = parent.screen().availableGeometry() if parent.screen() else None
        max_w = int(screen.width() * 0.9) if screen else 1600
        max_h = int(screen.height() * 0.9) if screen else 1000
        scale = min(1.0, max_w / w, (max_h - 60) / h)
        self.resize(max(400, int(w * scale)), max(300, int(h * scale) + 60))


def details_html(record: CaptureRecord) -> str:
    """The detail lines under the photo (state, score, reasons, patient, review, problems)."""
    info = record.info
    score = "not checked" if math.isnan(info.score) else f"{info.score:.2f}"
    threshold = "-" if math.isnan(info.threshold) else f"{info.threshold:.2f}"
    reasons = ", ".join(
        f"{guidance_for(n)} ({p:.0%})"
        for n, p in sorted(info.reasons.items(), key=lambda kv: -kv[1])
        if p >= 0.5
    )
    lines = [
        f"<b>{STATE_WORDS[record.state].capitalize()}</b> · score {score} "
        f"(threshold {threshold}) · model {info.model_version or '-'}",
        f"Reasons: {reasons or 'none above 50%'}",
        f"Patient {info.patient_ref or '-'} · {info.body_site or '-'} · {info.mode} · "
        f"taken by {info.operator or '-'} · {local_time(record.created_utc)}",
    ]
    if info.note:
        lines.append(f"Note: {info.note}")
    if record.reviewer:
        lines.append(
            f"Reviewed by {record.reviewer} at {local_time(record.reviewed_utc)}: "
            f"{record.review_action} - {record.review_reason or ''}"
        )
    if record.last_error:
        lines.append(f"Sending problem: {record.last_error}")
    if record.problem:
        lines.append(f"Problem: {record.problem}")
    return "<br>".join(lines)
