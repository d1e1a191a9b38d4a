"""Review gallery for clinicians: captures as thumbnails labelled with patient ID, body site, score
and reasons, a large viewer with the heat overlay, and the review actions (accept anyway with a
reason from a fixed list, complete the patient ID and body site of an accepted photo and send it,
confirm reject, delete, export). The rules are in ``core.review`` and ``core.submission.policy``.

Over 600 lines on purpose: one widget whose review actions share the selected record, the typed
reviewer and the queue state; the parts without that state are in ``qt.views.review_parts``."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer, Slot
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
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
from desktop_app.core.patient_ref import normalise_patient_ref
from desktop_app.core.resources import user_documents_dir
from desktop_app.core.review import (
    COMPLETABLE_STATES,
    CONFIRM_REJECT_REASON,
    OVERRIDE_REASONS,
    details_blocker,
    override_blocker,
    quit_warning,
    send_blocker,
    unsent_accepted,
    unsent_accepted_in_store,
)
from desktop_app.core.settings import BODY_SITES, AppSettings
from desktop_app.core.store import CaptureRecord, CaptureStore, StorageError, utc_now
from desktop_app.core.submission import QueueStatus
from desktop_app.qt.views.review_parts import (
    THUMB_SIZE,
    ImageViewer,
    describe,
    details_html,
    load_thumbnail,
)
from desktop_app.qt.views.widgets import FrameView, HeatMap
from desktop_app.qt.workers.session import CaptureSession

logger = logging.getLogger(__name__)

REASON_PROMPT = "Why is the photo usable? (required)"
SITE_PROMPT = "Choose the body site…"
NO_DIALOGS_ENV = "SKIN_CAPTURE_NO_DIALOGS"
NEEDS_REVIEWER = "Enter your name as reviewer to review captures."
UNSENT_FILTER = "Accepted, not sent"
FILTERS: dict[str, tuple[str, ...] | None] = {
    "Rejected (to review)": ("rejected", "captured"),
    UNSENT_FILTER: ("accepted", "overridden"),
    "Overridden": ("overridden",),
    "Sent / queued": ("queued", "submitted", "failed"),
    "All": None,
}


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
        self.opened_utc = utc_now()  # "this session" for the warning when quitting
        self._queue_counts: tuple[int, int, int] | None = None
        top = self._build_top()
        self._build_list()
        detail_widget = self._build_detail()

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
        self._connect(session)
        self._update_actions()

    def _build_top(self) -> QHBoxLayout:
        """The filter, the reviewer's name, Refresh and Export."""
        self.filter_combo = QComboBox()
        self.filter_combo.addItems(list(FILTERS))
        # Never pre-filled (e.g. with the OS login): whoever reviews types their name; it stays
        # for the next photo while this window is open.
        self.reviewer_edit = QLineEdit()
        self.reviewer_edit.setPlaceholderText("Your name (required)")
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
        return top

    def _build_list(self) -> None:
        self.list = QListWidget()
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.list.setGridSize(QSize(THUMB_SIZE + 40, THUMB_SIZE + 76))
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.list.setMovement(QListWidget.Movement.Static)
        self.list.setWordWrap(True)

    def _build_detail(self) -> QWidget:
        """The photo with its overlay, its details, the patient fields and the actions."""
        self.view = FrameView()
        self.view.clear_image("Select a capture")
        self.overlay_check = QCheckBox("Quality heat map")
        self.overlay_check.setChecked(True)
        self.full_size_button = QPushButton("Full size…")
        self.details = QLabel("")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.patient_edit = QLineEdit()
        self.patient_edit.setPlaceholderText("Patient or encounter ID")
        self.site_combo = QComboBox()
        self.site_combo.addItem(SITE_PROMPT)
        self.site_combo.addItems(BODY_SITES)
        self.override_reason = QComboBox()
        self.override_reason.addItem(REASON_PROMPT)
        self.override_reason.addItems(OVERRIDE_REASONS)
        self.override_button = QPushButton("Accept anyway…")
        self.send_button = QPushButton("Send…")
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
        who = QHBoxLayout()
        who.addWidget(QLabel("Patient ID"))
        who.addWidget(self.patient_edit, 1)
        who.addWidget(QLabel("Body site"))
        who.addWidget(self.site_combo, 1)
        detail.addLayout(who)
        detail.addWidget(self.override_reason)
        actions = QHBoxLayout()
        actions.addWidget(self.override_button)
        actions.addWidget(self.send_button)
        actions.addWidget(self.reject_button)
        actions.addStretch(1)
        actions.addWidget(self.delete_button)
        detail.addLayout(actions)
        detail.addWidget(self.action_message)
        detail_widget = QWidget()
        detail_widget.setLayout(detail)
        return detail_widget

    def _connect(self, session: CaptureSession) -> None:
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
        self.override_reason.currentIndexChanged.connect(self._update_actions)
        self.patient_edit.textChanged.connect(self._update_actions)
        self.site_combo.currentIndexChanged.connect(self._update_actions)
        self.reviewer_edit.textChanged.connect(self._update_actions)
        self.override_button.clicked.connect(self._on_override)
        self.send_button.clicked.connect(self._on_send)
        self.reject_button.clicked.connect(self._on_confirm_reject)
        self.delete_button.clicked.connect(self._on_delete)
        session.sig_image_scored.connect(self._on_image_scored)
        session.sig_image_loaded.connect(self._on_image_loaded)
        session.sig_queue_status.connect(self._on_queue_status)

    def set_unavailable(self, message: str) -> None:
        self.unavailable.setText(f"Review is unavailable: {message}")
        self.unavailable.show()

    def mark_stale(self) -> None:
        """New captures exist; the list is reloaded when the tab is next shown."""
        self._stale = True
        if self.isVisible():
            self.refresh()

    @Slot(object)
    def _on_queue_status(self, status: QueueStatus) -> None:
        """Captures changed state in the queue (queued, sent, failed): the list shows it."""
        counts = (status.queued, status.submitted, status.failed)
        if counts == self._queue_counts:
            return
        self._queue_counts = counts
        message = self.action_message.text()
        self.mark_stale()
        if self.current is not None:
            self.action_message.setText(message)

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
        if self.filter_combo.currentText() == UNSENT_FILTER:
            records = unsent_accepted(records)  # practice photos can never be sent: not listed
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
        same = record is not None and self.current is not None and record.id == self.current.id
        self.current = record
        self.current_image = None
        self.action_message.setText("")
        if same:  # the list was reloaded: what the reviewer chose or typed for it stays
            self._enable_details(record)
        else:
            self._reset_decision(record)
        if record is None or self.store is None:
            self.view.clear_image("Select a capture")
            self.details.setText("")
            self._update_actions()
            return
        self.view.clear_image("Loading the photo…")
        wants_heat = self.overlay_check.isChecked() and record.id not in self._heat_cache
        self._load_request += 1
        self.session.load_image(record.id, self._load_request, wants_heat)
        self.details.setText(details_html(record))
        self._update_actions()

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

    def patient_ref(self) -> str:
        """The typed ID as it would be stored (see ``core.patient_ref``); refused text as typed
        (trimmed), so that ``details_blocker`` can say what is wrong with it."""
        ref = normalise_patient_ref(self.patient_edit.text())
        return ref if isinstance(ref, str) else self.patient_edit.text().strip()

    def body_site(self) -> str:
        return "" if self.site_combo.currentIndex() <= 0 else self.site_combo.currentText()

    def override_choice(self) -> str:
        combo = self.override_reason
        return "" if combo.currentIndex() <= 0 else combo.currentText()

    def _reset_decision(self, record: CaptureRecord | None) -> None:
        """A decision belongs to one photo: a newly selected photo starts with no reason chosen
        and with its own patient ID and body site."""
        for widget in (self.override_reason, self.patient_edit, self.site_combo):
            widget.blockSignals(True)
        self.override_reason.setCurrentIndex(0)
        self.patient_edit.setText(record.info.patient_ref if record is not None else "")
        site = self.site_combo.findText(record.info.body_site) if record is not None else -1
        self.site_combo.setCurrentIndex(max(0, site))
        for widget in (self.override_reason, self.patient_edit, self.site_combo):
            widget.blockSignals(False)
        self._enable_details(record)

    def _enable_details(self, record: CaptureRecord | None) -> None:
        completable = record is not None and record.state in COMPLETABLE_STATES
        self.patient_edit.setEnabled(completable)
        self.site_combo.setEnabled(completable)

    @Slot()
    def _update_actions(self) -> None:
        record = self.current
        reviewable = record is not None and record.state in ("captured", "rejected", "accepted")
        has_reviewer = bool(self.reviewer())
        override_off = override_blocker(record, self.reviewer(), self.override_choice())
        self.override_reason.setEnabled(
            record is not None and record.state in ("captured", "rejected") and not record.problem
        )
        self.override_button.setEnabled(not override_off)
        self.override_button.setToolTip(override_off)
        send_off = send_blocker(record, self.reviewer(), self.patient_ref(), self.body_site())
        self.send_button.setEnabled(not send_off)
        self.send_button.setToolTip(send_off)
        self.reject_button.setEnabled(reviewable and has_reviewer)
        self.delete_button.setEnabled(record is not None and has_reviewer)
        self.full_size_button.setEnabled(record is not None and self.current_image is not None)
        if record is not None and not has_reviewer:
            self.action_message.setText(NEEDS_REVIEWER)
        elif self.action_message.text() == NEEDS_REVIEWER:
            self.action_message.setText("")

    def _ask(self, title: str, text: str) -> bool:
        """Yes/No confirmation before a decision that sends a photo to the record."""
        buttons = QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
        answer = QMessageBox.question(self, title, text, buttons, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def _details_summary(self) -> str:
        return f"Patient: {self.patient_ref() or '-'}\nBody site: {self.body_site() or '-'}"

    def _save_details(self, record: CaptureRecord) -> CaptureRecord:
        """Store a changed patient ID / body site (StorageError, ValueError, KeyError)."""
        if self.store is None or record.state not in COMPLETABLE_STATES:
            return record
        patient_ref, body_site = self.patient_ref(), self.body_site() or record.info.body_site
        if (patient_ref, body_site) == (record.info.patient_ref, record.info.body_site):
            return record
        return self.store.set_details(record.id, patient_ref, body_site, self.reviewer())

    def _send_through_policy(self, record: CaptureRecord, done: str) -> str:
        """Queue ``record`` when the submit policy allows it; the message for the reviewer."""
        incomplete = details_blocker(record.info.patient_ref, record.info.body_site)
        if incomplete:
            return f'{done}; not sent yet: {incomplete} It is under "Accepted, not sent".'
        blocker = self.session.send_blocker(record)
        if blocker:
            return f"{done}; not sent. {blocker}"
        if not self.session.submit(record.id):
            return f"{done}; not sent: sending is not configured."
        return f"{done}; queued for sending."

    @Slot()
    def _on_override(self) -> None:
        record = self.current
        reason = self.override_choice()
        if (
            record is None
            or self.store is None
            or override_blocker(record, self.reviewer(), reason)
        ):
            return
        complete = not details_blocker(self.patient_ref(), self.body_site())
        question = (
            f"Accept this photo anyway and send it to the record?\n\n{self._details_summary()}"
            f"\nReason: {reason}"
            if complete
            else f"Accept this photo anyway?\n\nReason: {reason}\n\nIt is not sent yet: "
            f"{details_blocker(self.patient_ref(), self.body_site())}"
        )
        if not self._ask("Accept anyway", question):
            self.action_message.setText("Not accepted: nothing was changed.")
            return
        try:
            updated = self._save_details(record)
            updated = self.store.review(updated.id, "override", self.reviewer(), reason)
        except (StorageError, ValueError, KeyError) as exc:
            self.action_message.setText(f"Not saved: {exc}")
            return
        self._after_action(updated.id, self._send_through_policy(updated, "Accepted anyway"))

    @Slot()
    def _on_send(self) -> None:
        """Complete an accepted photo's patient ID and body site and send it (after a yes)."""
        record = self.current
        if (
            record is None
            or self.store is None
            or send_blocker(record, self.reviewer(), self.patient_ref(), self.body_site())
        ):
            return
        question = f"Send this photo to the record?\n\n{self._details_summary()}"
        if not self._ask("Send photo", question):
            self.action_message.setText("Not sent.")
            return
        try:
            updated = self._save_details(record)
        except (StorageError, ValueError, KeyError) as exc:
            self.action_message.setText(f"Not saved: {exc}")
            return
        self._after_action(updated.id, self._send_through_policy(updated, "Details saved"))

    @Slot()
    def _on_confirm_reject(self) -> None:
        record = self.current
        if record is None or self.store is None:
            return
        try:
            self.store.review(record.id, "confirm_reject", self.reviewer(), CONFIRM_REJECT_REASON)
        except (StorageError, ValueError, KeyError) as exc:
            self.action_message.setText(f"Not saved: {exc}")
            return
        self._after_action(record.id, "Rejection confirmed.")

    def confirm_quit(self) -> bool:
        """Before the staff window closes: True to go on. Photos accepted since this window
        opened but not sent are listed in a Yes/No question (none: no question; with
        ``SKIN_CAPTURE_NO_DIALOGS`` set, quit with a log line)."""
        if self.store is None:
            return True
        try:
            unsent = unsent_accepted_in_store(self.store, self.opened_utc)
        except StorageError:
            return True
        question = quit_warning(unsent)
        if not question:
            return True
        if os.environ.get(NO_DIALOGS_ENV):
            logger.warning("quitting with %d accepted photo(s) not sent", len(unsent))
            return True
        answer = QMessageBox.question(
            self.window(),
            "Photos not sent",
            question,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

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
        self._reset_decision(self.current)  # decided: nothing chosen carries over
        self._update_actions()
        self.action_message.setText(message)

    @Slot()
    def _on_export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self,
            "Export reviewed captures",
            str(user_documents_dir() / "reviewed.csv"),  # never the process's working directory
            "CSV files (*.csv)",
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
