"""Review gallery for clinicians: captures as thumbnails with score and reasons, a large viewer
with the heat overlay, and the review actions (accept anyway, confirm reject, delete, export)."""

from __future__ import annotations

import logging
import math
from datetime import datetime
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import QSize, Qt, QTimer, Slot
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.gating import guidance_for
from desktop_app.core.inference import QualityResult
from desktop_app.core.settings import AppSettings
from desktop_app.core.store import CaptureRecord, CaptureStore, StorageError
from desktop_app.qt.session import CaptureSession
from desktop_app.qt.widgets import FrameView, HeatMap

logger = logging.getLogger(__name__)

THUMB_SIZE = 160
FILTERS: dict[str, tuple[str, ...] | None] = {
    "Rejected (to review)": ("rejected", "captured"),
    "Accepted": ("accepted",),
    "Overridden": ("overridden",),
    "Sent / queued": ("queued", "submitted", "failed"),
    "All": None,
}
STATE_WORDS = {
    "captured": "recovered, not checked",
    "accepted": "accepted",
    "rejected": "rejected",
    "overridden": "accepted by reviewer",
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
    """Short caption: score, top reasons, time."""
    info = record.info
    score = "not checked" if math.isnan(info.score) else f"{info.score:.2f}"
    reasons = [n for n, p in sorted(info.reasons.items(), key=lambda kv: -kv[1]) if p >= 0.5]
    when = local_time(record.created_utc, with_date=False)
    caption = f"{score} · {', '.join(reasons) or 'no reason'}\n{when} · {STATE_WORDS[record.state]}"
    return caption


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


class GalleryWidget(QWidget):
    """Review tab: filter, thumbnails, detail view and review actions."""

    def __init__(
        self, store: CaptureStore | None, session: CaptureSession, settings: AppSettings
    ) -> None:
        super().__init__()
        self.store = store
        self.session = session
        self.settings = settings
        self.records: dict[str, CaptureRecord] = {}
        self.current: CaptureRecord | None = None
        self.current_image: np.ndarray | None = None
        self._heat_cache: dict[str, HeatMap | None] = {}
        self._heat_model: dict[str, str] = {}  # capture id -> model version that drew its map
        self._load_request = 0  # numbers photo loads; only the newest answer is shown
        self._thumb_cache: dict[str, QIcon] = {}
        self._thumb_queue: list[str] = []
        self._stale = True
        self.viewer: ImageViewer | None = None

        self.filter_combo = QComboBox()
        self.filter_combo.addItems(list(FILTERS))
        self.reviewer_edit = QLineEdit(settings.operator)
        self.reviewer_edit.setPlaceholderText("Reviewer name")
        self.refresh_button = QPushButton("Refresh")
        self.export_button = QPushButton("Export reviewed as CSV…")
        top = QHBoxLayout()
        top.addWidget(QLabel("Show"))
        top.addWidget(self.filter_combo)
        top.addSpacing(20)
        top.addWidget(QLabel("Reviewer"))
        top.addWidget(self.reviewer_edit)
        top.addStretch(1)
        top.addWidget(self.refresh_button)
        top.addWidget(self.export_button)

        self.list = QListWidget()
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.list.setGridSize(QSize(THUMB_SIZE + 24, THUMB_SIZE + 56))
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.list.setMovement(QListWidget.Movement.Static)
        self.list.setWordWrap(True)

        self.view = FrameView()
        self.view.clear_image("Select a capture")
        self.overlay_check = QCheckBox("Quality heat map")
        self.overlay_check.setChecked(True)
        self.full_size_button = QPushButton("Full size…")
        self.details = QLabel("")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.override_reason = QLineEdit()
        self.override_reason.setPlaceholderText("Reason for accepting anyway (required)")
        self.override_button = QPushButton("Accept anyway")
        self.reject_button = QPushButton("Confirm reject")
        self.delete_button = QPushButton("Delete")
        self.action_message = QLabel("")
        self.action_message.setWordWrap(True)

        detail = QVBoxLayout()
        view_row = QHBoxLayout()
        view_row.addWidget(self.overlay_check)
        view_row.addStretch(1)
        view_row.addWidget(self.full_size_button)
        detail.addWidget(self.view, 1)
        detail.addLayout(view_row)
        detail.addWidget(self.details)
        detail.addWidget(self.override_reason)
        actions = QHBoxLayout()
        actions.addWidget(self.override_button)
        actions.addWidget(self.reject_button)
        actions.addStretch(1)
        actions.addWidget(self.delete_button)
        detail.addLayout(actions)
        detail.addWidget(self.action_message)
        detail_widget = QWidget()
        detail_widget.setLayout(detail)

        splitter = QSplitter()
        splitter.addWidget(self.list)
        splitter.addWidget(detail_widget)
        splitter.setSizes([520, 700])
        layout = QVBoxLayout(self)
        self.unavailable = QLabel("")
        self.unavailable.setWordWrap(True)
        self.unavailable.hide()
        layout.addWidget(self.unavailable)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)

        self._thumb_timer = QTimer(self)
        self._thumb_timer.setInterval(0)
        self._thumb_timer.timeout.connect(self._on_load_next_thumbnail)
        self.filter_combo.currentIndexChanged.connect(self.refresh)
        self.refresh_button.clicked.connect(self.refresh)
        self.export_button.clicked.connect(self._on_export_clicked)
        self.list.currentItemChanged.connect(self._on_selection_changed)
        self.list.itemDoubleClicked.connect(self._on_full_size)
        self.full_size_button.clicked.connect(self._on_full_size)
        self.overlay_check.toggled.connect(self._on_overlay_toggled)
        self.override_reason.textChanged.connect(self._update_actions)
        self.reviewer_edit.textChanged.connect(self._update_actions)
        self.override_button.clicked.connect(self._on_override)
        self.reject_button.clicked.connect(self._on_confirm_reject)
        self.delete_button.clicked.connect(self._on_delete)
        session.sig_image_scored.connect(self._on_image_scored)
        session.sig_image_loaded.connect(self._on_image_loaded)
        self._update_actions()

    def set_unavailable(self, message: str) -> None:
        self.unavailable.setText(f"Review is unavailable: {message}")
        self.unavailable.show()

    def mark_stale(self) -> None:
        """New captures exist; the list is reloaded when the tab is next shown."""
        self._stale = True
        if self.isVisible():
            self.refresh()

    def showEvent(self, event: object) -> None:
        super().showEvent(event)  # type: ignore[arg-type]
        if self._stale:
            self.refresh()

    # ---- list ------------------------------------------------------------------------------
    @Slot()
    def refresh(self) -> None:
        self._stale = False
        if self.store is None:
            return
        states = FILTERS[self.filter_combo.currentText()]
        try:
            records = self.store.list(states)
        except StorageError as exc:
            self.action_message.setText(str(exc))
            return
        keep = self.current.id if self.current is not None else None
        self.records = {r.id: r for r in records}
        self.list.blockSignals(True)
        self.list.clear()
        self._thumb_queue = []
        selected_row = -1
        for row, record in enumerate(records):
            item = QListWidgetItem(describe(record))
            item.setData(Qt.ItemDataRole.UserRole, record.id)
            item.setToolTip(self._tooltip(record))
            icon = self._thumb_cache.get(record.id)
            if icon is not None:
                item.setIcon(icon)
            else:
                self._thumb_queue.append(record.id)
            self.list.addItem(item)
            if record.id == keep:
                selected_row = row
        self.list.blockSignals(False)
        if self._thumb_queue:
            self._thumb_timer.start()
        if selected_row >= 0:
            self.list.setCurrentRow(selected_row)
        else:
            self._show_record(None)

    @staticmethod
    def _tooltip(record: CaptureRecord) -> str:
        info = record.info
        lines = [f"Patient {info.patient_ref or '-'} · {info.body_site or '-'}"]
        reasons = [guidance_for(n) for n, p in info.reasons.items() if p >= 0.5]
        if reasons:
            lines.append("; ".join(reasons))
        return "\n".join(lines)

    @Slot()
    def _on_load_next_thumbnail(self) -> None:
        """One thumbnail per event-loop turn, so a long list never freezes the window."""
        if not self._thumb_queue:
            self._thumb_timer.stop()
            return
        capture_id = self._thumb_queue.pop(0)
        record = self.records.get(capture_id)
        if record is None:
            return
        try:
            thumb = load_thumbnail(record.image_path)
        except (OSError, ValueError) as exc:
            logger.warning("thumbnail of %s unavailable: %s", capture_id, exc)
            return
        h, w = thumb.shape[:2]
        image = QImage(thumb.data, w, h, int(thumb.strides[0]), QImage.Format.Format_RGB888)
        icon = QIcon(QPixmap.fromImage(image.copy()))
        self._thumb_cache[capture_id] = icon
        for row in range(self.list.count()):
            item = self.list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == capture_id:
                item.setIcon(icon)
                break

    # ---- detail ----------------------------------------------------------------------------
    @Slot(object, object)
    def _on_selection_changed(self, current: QListWidgetItem | None, previous: object) -> None:
        record = None
        if current is not None:
            record = self.records.get(str(current.data(Qt.ItemDataRole.UserRole)))
        self._show_record(record)

    def select(self, capture_id: str) -> bool:
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole) == capture_id:
                self.list.setCurrentRow(row)
                return True
        return False

    def _show_record(self, record: CaptureRecord | None) -> None:
        self.current = record
        self.current_image = None
        self.action_message.setText("")
        if record is None or self.store is None:
            self.view.clear_image("Select a capture")
            self.details.setText("")
            self._update_actions()
            return
        self.view.clear_image("Loading the photo…")
        wants_heat = self.overlay_check.isChecked() and record.id not in self._heat_cache
        self._load_request += 1
        self.session.load_image(record.id, self._load_request, wants_heat)
        self.details.setText(self._details_text(record))
        self._update_actions()

    def _details_text(self, record: CaptureRecord) -> str:
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

    @Slot(str, int, object, str)
    def _on_image_loaded(
        self, capture_id: str, request: int, image: np.ndarray | None, error: str
    ) -> None:
        record = self.current
        if record is None or record.id != capture_id or request != self._load_request:
            return  # the reviewer has moved on (or asked again since)
        if image is None:
            self.view.clear_image(error)
        else:
            self.current_image = image
            self.view.set_image(image)
            self.view.set_heat(self._heat_cache.get(capture_id))
            self.view.set_overlay_visible(self.overlay_check.isChecked())
            self._note_heat_model(record)
        self._update_actions()

    @Slot(str, object)
    def _on_image_scored(self, key: str, result: QualityResult | None) -> None:
        heat = None
        if result is not None:
            heat = HeatMap.from_result(result.layout, result.patch_scores, result.threshold)
            self._heat_model[key] = result.model_version
        self._heat_cache[key] = heat
        if self.current is not None and self.current.id == key:
            self.view.set_heat(heat)
            if heat is None and self.overlay_check.isChecked():
                self.action_message.setText("No heat map: no quality model is loaded.")
            else:
                self._note_heat_model(self.current)

    def _note_heat_model(self, record: CaptureRecord) -> None:
        """The map is drawn by the model loaded now; say so when the photo was judged by another
        (its stored score and reasons are the capture-time ones)."""
        drawn_by = self._heat_model.get(record.id)
        judged_by = record.info.model_version
        if drawn_by and judged_by and drawn_by != judged_by:
            self.action_message.setText(
                f"Heat map from model {drawn_by}; this photo was checked with model {judged_by}."
            )

    @Slot(bool)
    def _on_overlay_toggled(self, visible: bool) -> None:
        self.view.set_overlay_visible(visible)
        record = self.current
        if (
            visible
            and record is not None
            and record.id not in self._heat_cache
            and self.current_image is not None
        ):
            self.session.score_image(record.id, self.current_image)

    @Slot()
    def _on_full_size(self) -> None:
        if self.current is None or self.current_image is None:
            return
        heat = self._heat_cache.get(self.current.id)
        self.viewer = ImageViewer(
            self.current_image, heat, f"Capture {self.current.id}", self.window()
        )
        self.viewer.show()

    # ---- actions ---------------------------------------------------------------------------
    def reviewer(self) -> str:
        return self.reviewer_edit.text().strip()

    @Slot()
    def _update_actions(self) -> None:
        record = self.current
        reviewable = record is not None and record.state in ("captured", "rejected", "accepted")
        has_reviewer = bool(self.reviewer())
        self.override_button.setEnabled(
            reviewable
            and has_reviewer
            and record is not None
            and record.state != "accepted"
            and bool(self.override_reason.text().strip())
            and not record.problem
        )
        self.reject_button.setEnabled(reviewable and has_reviewer)
        self.delete_button.setEnabled(record is not None and has_reviewer)
        self.full_size_button.setEnabled(record is not None and self.current_image is not None)
        if record is not None and not has_reviewer:
            self.action_message.setText("Enter your name as reviewer to review captures.")

    @Slot()
    def _on_override(self) -> None:
        record = self.current
        if record is None or self.store is None:
            return
        reason = self.override_reason.text().strip()
        try:
            updated = self.store.review(record.id, "override", self.reviewer(), reason)
        except (StorageError, ValueError, KeyError) as exc:
            self.action_message.setText(f"Not saved: {exc}")
            return
        self.override_reason.clear()
        blocker = self.session.send_blocker(updated)
        if blocker:
            self._after_action(updated.id, f"Accepted anyway; not sent. {blocker}")
            return
        sent = self.session.submit(updated.id)
        self._after_action(
            updated.id,
            "Accepted anyway; queued for sending." if sent else "Accepted anyway.",
        )

    @Slot()
    def _on_confirm_reject(self) -> None:
        record = self.current
        if record is None or self.store is None:
            return
        reason = self.override_reason.text().strip() or "confirmed: not usable"
        try:
            self.store.review(record.id, "confirm_reject", self.reviewer(), reason)
        except (StorageError, ValueError, KeyError) as exc:
            self.action_message.setText(f"Not saved: {exc}")
            return
        self.override_reason.clear()
        self._after_action(record.id, "Rejection confirmed.")

    @Slot()
    def _on_delete(self) -> None:
        record = self.current
        if record is None or self.store is None:
            return
        answer = QMessageBox.question(
            self,
            "Delete capture",
            f"Delete this photo of patient {record.info.patient_ref or '-'}? "
            "The deletion is recorded with your name.",
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            self.store.delete(record.id, self.reviewer())
        except (StorageError, ValueError, KeyError) as exc:
            self.action_message.setText(f"Not deleted: {exc}")
            return
        self._thumb_cache.pop(record.id, None)
        self._heat_cache.pop(record.id, None)
        self.current = None
        self.refresh()
        self.action_message.setText("Deleted.")

    def _after_action(self, capture_id: str, message: str) -> None:
        self.refresh()
        if not self.select(capture_id):
            self._show_record(None)
        self.action_message.setText(message)

    @Slot()
    def _on_export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export reviewed captures", "reviewed.csv", "CSV files (*.csv)"
        )
        if path:
            self.export_csv(Path(path))

    def export_csv(self, out_csv: Path) -> int:
        """Write every reviewed capture in the training CSV format; returns rows written."""
        if self.store is None:
            return 0
        try:
            count = self.store.export_training_csv(out_csv)
        except (OSError, StorageError) as exc:
            self.action_message.setText(f"Export failed: {exc}")
            return 0
        self.action_message.setText(f"Exported {count} reviewed capture(s) to {out_csv}.")
        return count
