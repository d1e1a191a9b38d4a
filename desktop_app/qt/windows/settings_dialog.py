"""Settings dialog: camera (picker with names), resolution, model file, provider, auto-capture,
kiosk PIN and idle timeout, submission target, operator name."""

from __future__ import annotations

import copy
from pathlib import Path

from PySide6.QtCore import Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop_app.core.inference import available_providers
from desktop_app.core.settings import (
    PASSWORD_IN_FILE,
    AppSettings,
    kiosk_pin_problem,
    password_in_file,
)
from desktop_app.core.sources import COMMON_RESOLUTIONS, list_cameras
from desktop_app.core.submission import make_target
from desktop_app.core.submission.credentials import secret_store_status
from desktop_app.core.submission.dicom import validate_patient_fields
from desktop_app.qt.workers.session import CaptureSession

AUTO_CAMERA = "Automatic (first camera, else demo feed)"
DEMO = "Demo feed (no camera)"
OTHER_PATH = "Video file or image folder…"
HOT_FOLDER = "Tethered camera (hot folder)…"


class SettingsDialog(QDialog):
    """Edits a copy of the settings; :meth:`result_settings` returns it after OK."""

    def __init__(
        self, settings: AppSettings, session: CaptureSession | None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self._settings = copy.deepcopy(settings)
        self.session = session
        camera_box = self._build_camera_box()
        model_box = self._build_model_box()
        capture_box = self._build_capture_box()
        kiosk_box = self._build_kiosk_box()
        send_box = self._build_send_box()

        self.error_label = QLabel("")
        self.error_label.setStyleSheet("color: #b00020;")
        self.error_label.setWordWrap(True)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self._on_accept)
        buttons.rejected.connect(self.reject)
        columns = QHBoxLayout()
        left, right = QVBoxLayout(), QVBoxLayout()
        left.addWidget(camera_box)
        left.addWidget(model_box)
        left.addWidget(capture_box)
        right.addWidget(kiosk_box)
        right.addWidget(send_box)
        right.addStretch(1)
        columns.addLayout(left)
        columns.addLayout(right)
        layout = QVBoxLayout(self)
        layout.addLayout(columns)
        layout.addWidget(self.error_label)
        layout.addWidget(buttons)

        self._select_current_camera()
        res = self._settings.resolution
        index = self.resolution_combo.findData(f"{res[0]}x{res[1]}" if res else "")
        if index < 0 and res is not None:  # a resolution typed into the settings file by hand
            self.resolution_combo.addItem(f"{res[0]} x {res[1]}", f"{res[0]}x{res[1]}")
            index = self.resolution_combo.count() - 1
        self.resolution_combo.setCurrentIndex(max(0, index))
        self.provider_combo.setCurrentIndex(
            max(0, self.provider_combo.findData(self._settings.provider))
        )
        self.camera_combo.currentIndexChanged.connect(self._update_enabled)
        self.target_combo.currentIndexChanged.connect(self._update_enabled)
        self.path_button.clicked.connect(self._on_browse_path)
        self.model_button.clicked.connect(self._on_browse_model)
        self.ca_button.clicked.connect(self._on_browse_ca)
        self._update_enabled()

    def _build_camera_box(self) -> QGroupBox:
        camera_box = QGroupBox("Camera")
        camera_form = QFormLayout(camera_box)
        self.camera_combo = QComboBox()
        self.camera_combo.addItem(AUTO_CAMERA, "")
        self.camera_combo.addItem(DEMO, "demo")
        for camera in list_cameras():
            self.camera_combo.addItem(camera.label, str(camera.index))
        self.camera_combo.addItem(OTHER_PATH, "path")
        self.camera_combo.addItem(HOT_FOLDER, "hotfolder")
        self.path_edit = QLineEdit()
        self.path_button = QPushButton("Browse…")
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(self.path_button)
        self.resolution_combo = QComboBox()
        self.resolution_combo.addItem("Camera default", "")
        for w, h in COMMON_RESOLUTIONS:
            self.resolution_combo.addItem(f"{w} x {h}", f"{w}x{h}")
        self.obtained_label = QLabel(self._obtained_text())
        camera_form.addRow("Source", self.camera_combo)
        camera_form.addRow("Path", path_row)
        camera_form.addRow("Resolution", self.resolution_combo)
        camera_form.addRow("Obtained", self.obtained_label)
        return camera_box

    def _build_model_box(self) -> QGroupBox:
        model_box = QGroupBox("Quality model")
        model_form = QFormLayout(model_box)
        self.model_edit = QLineEdit(self._settings.model_path)
        self.model_edit.setPlaceholderText("Bundled default model")
        self.model_button = QPushButton("Browse…")
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_edit, 1)
        model_row.addWidget(self.model_button)
        self.provider_combo = QComboBox()
        providers = available_providers()
        self.provider_combo.addItem("Automatic (CUDA if available)", "auto")
        self.provider_combo.addItem("CPU", "cpu")
        self.provider_combo.addItem("CUDA (NVIDIA GPU)", "cuda")
        if "CUDAExecutionProvider" not in providers:
            self.provider_combo.model().item(2).setEnabled(False)  # type: ignore[attr-defined]
        self.low_memory_check = QCheckBox("Release model memory after each check")
        self.low_memory_check.setToolTip(
            "Returns the model's working memory after every check; checks take about a third "
            "longer. Only needed for models exported without trunk streaming (one-pass trunk)."
        )
        self.low_memory_check.setChecked(self._settings.low_memory_inference)
        model_form.addRow("Model file", model_row)
        model_form.addRow("Run on", self.provider_combo)
        model_form.addRow(self.low_memory_check)
        return model_box

    def _build_capture_box(self) -> QGroupBox:
        capture_box = QGroupBox("Capture")
        capture_form = QFormLayout(capture_box)
        self.operator_edit = QLineEdit(self._settings.operator)
        self.auto_staff = QCheckBox("Auto-capture in staff mode")
        self.auto_staff.setChecked(self._settings.auto_capture_staff)
        self.auto_kiosk = QCheckBox("Auto-capture in the kiosk")
        self.auto_kiosk.setChecked(self._settings.auto_capture_kiosk)
        self.hold_spin = QDoubleSpinBox()
        self.hold_spin.setRange(0.3, 10.0)
        self.hold_spin.setSingleStep(0.1)
        self.hold_spin.setSuffix(" s")
        self.hold_spin.setValue(self._settings.auto_capture_hold_s)
        capture_form.addRow("Your name", self.operator_edit)
        capture_form.addRow(self.auto_staff)
        capture_form.addRow(self.auto_kiosk)
        capture_form.addRow("Good for at least", self.hold_spin)
        return capture_box

    def _build_kiosk_box(self) -> QGroupBox:
        kiosk_box = QGroupBox("Kiosk")
        kiosk_form = QFormLayout(kiosk_box)
        self.pin_edit = QLineEdit()
        self.pin_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.pin_edit.setPlaceholderText("unchanged")
        self.pin_confirm = QLineEdit()
        self.pin_confirm.setEchoMode(QLineEdit.EchoMode.Password)
        self.idle_spin = QSpinBox()
        self.idle_spin.setRange(15, 3600)
        self.idle_spin.setSuffix(" s")
        self.idle_spin.setValue(self._settings.kiosk_idle_timeout_s)
        kiosk_form.addRow("New staff PIN", self.pin_edit)
        kiosk_form.addRow("Repeat PIN", self.pin_confirm)
        kiosk_form.addRow("Clear screen after", self.idle_spin)
        if self._settings.uses_default_pin:
            warning = QLabel("The kiosk still uses the default PIN: please change it.")
            warning.setStyleSheet("color: #a04000;")
            kiosk_form.addRow(warning)
        return kiosk_box

    def _build_send_box(self) -> QGroupBox:
        send_box = QGroupBox("Sending")
        send_form = QFormLayout(send_box)
        target = self._settings.submission
        self.target_combo = QComboBox()
        self.target_combo.addItem("Outbox folder", "outbox")
        self.target_combo.addItem("DICOMweb server (PACS)", "dicomweb")
        self.target_combo.setCurrentIndex(1 if target.get("kind") == "dicomweb" else 0)
        self.outbox_edit = QLineEdit(target.get("folder", ""))
        self.outbox_edit.setPlaceholderText("default outbox beside the captures")
        self.url_edit = QLineEdit(target.get("url", ""))
        self.url_edit.setPlaceholderText("http://pacs:8042/dicom-web")
        self.user_edit = QLineEdit(target.get("username", ""))
        self.password_edit = QLineEdit(target.get("password", ""))
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.ca_edit = QLineEdit(target.get("ca_bundle", ""))
        self.ca_edit.setPlaceholderText("system certificates")
        self.ca_edit.setToolTip(
            "For a PACS whose https certificate comes from a hospital (private) certificate "
            "authority: the CA certificate file (PEM)."
        )
        self.ca_button = QPushButton("Browse…")
        ca_row = QHBoxLayout()
        ca_row.addWidget(self.ca_edit, 1)
        ca_row.addWidget(self.ca_button)
        self.insecure_http_check = QCheckBox("Allow unencrypted http (password sent in clear)")
        self.insecure_http_check.setChecked(target.get("allow_insecure_http") == "true")
        secrets_status = secret_store_status()
        self.password_in_file_check = QCheckBox(
            "Store the password in the settings file (not encrypted)"
        )
        self.password_in_file_check.setChecked(password_in_file(target))
        # Only offered where there is no system keyring (or where it is already chosen).
        self.password_in_file_check.setVisible(
            not secrets_status.usable or password_in_file(target)
        )
        self.password_note = QLabel(secrets_status.description)
        self.password_note.setWordWrap(True)
        if not secrets_status.usable:
            self.password_note.setStyleSheet("color: #a04000;")
        send_form.addRow("Send to", self.target_combo)
        send_form.addRow("Outbox folder", self.outbox_edit)
        send_form.addRow("Server address", self.url_edit)
        send_form.addRow("User", self.user_edit)
        send_form.addRow("Password", self.password_edit)
        send_form.addRow(self.password_note)
        send_form.addRow(self.password_in_file_check)
        send_form.addRow("CA bundle", ca_row)
        send_form.addRow(self.insecure_http_check)
        return send_box

    def _obtained_text(self) -> str:
        if self.session is None:
            return "-"
        res = self.session.source_resolution
        name = self.session.source_name
        return f"{name}: {res[0]} x {res[1]}" if res else f"{name}: not known yet"

    def _select_current_camera(self) -> None:
        spec = self._settings.camera
        if spec.lower().startswith("hotfolder:"):
            self.camera_combo.setCurrentIndex(self.camera_combo.findData("hotfolder"))
            self.path_edit.setText(spec.split(":", 1)[1])
        elif spec and self.camera_combo.findData(spec) >= 0:
            self.camera_combo.setCurrentIndex(self.camera_combo.findData(spec))
        elif spec and not spec.isdigit():
            self.camera_combo.setCurrentIndex(self.camera_combo.findData("path"))
            self.path_edit.setText(spec)
        elif spec.isdigit():
            # a camera that is not plugged in now stays selected
            self.camera_combo.insertItem(2, f"{spec}: (not connected)", spec)
            self.camera_combo.setCurrentIndex(2)

    @Slot()
    def _update_enabled(self) -> None:
        data = self.camera_combo.currentData()
        self.path_edit.setEnabled(data in ("path", "hotfolder"))
        self.path_button.setEnabled(data in ("path", "hotfolder"))
        self.resolution_combo.setEnabled(data not in ("path", "hotfolder", "demo"))
        dicom = self.target_combo.currentData() == "dicomweb"
        for widget in (
            self.url_edit,
            self.user_edit,
            self.password_edit,
            self.password_in_file_check,
            self.ca_edit,
            self.ca_button,
            self.insecure_http_check,
        ):
            widget.setEnabled(dicom)
        self.outbox_edit.setEnabled(not dicom)

    @Slot()
    def _on_browse_path(self) -> None:
        if self.camera_combo.currentData() == "hotfolder":
            path = QFileDialog.getExistingDirectory(self, "Tether software's download folder")
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Video or image", "", "All files (*)")
        if path:
            self.path_edit.setText(path)

    @Slot()
    def _on_browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Quality model", "", "ONNX models (*.onnx)")
        if path:
            self.model_edit.setText(path)

    @Slot()
    def _on_browse_ca(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "CA certificate bundle", "", "Certificates (*.pem *.crt *.cer);;All files (*)"
        )
        if path:
            self.ca_edit.setText(path)

    def _camera_spec(self) -> str:
        data = self.camera_combo.currentData()
        path = self.path_edit.text().strip()
        if data == "path":
            return path
        if data == "hotfolder":
            return f"hotfolder:{path}"
        return str(data or "")

    def _collect(self) -> AppSettings:
        """The edited settings; raises ValueError with a message for the user."""
        new = copy.deepcopy(self._settings)
        camera = self._camera_spec()
        data = self.camera_combo.currentData()
        if data in ("path", "hotfolder") and not self.path_edit.text().strip():
            raise ValueError("Choose the folder or file for this source.")
        if data == "path" and not Path(camera).exists():
            raise ValueError(f"{camera} does not exist.")
        new.camera = camera
        res = str(self.resolution_combo.currentData() or "")
        new.resolution = (int(res.split("x")[0]), int(res.split("x")[1])) if res else None
        model = self.model_edit.text().strip()
        if model and not Path(model).is_file():
            raise ValueError(f"No model file at {model}.")
        new.model_path = model
        new.provider = str(self.provider_combo.currentData())
        new.low_memory_inference = self.low_memory_check.isChecked()
        new.operator = self.operator_edit.text().strip() or new.operator
        problems = validate_patient_fields("", operator=new.operator)
        if problems:  # Operators' Name (PN) in the DICOM objects
            raise ValueError(problems[0])
        new.auto_capture_staff = self.auto_staff.isChecked()
        new.auto_capture_kiosk = self.auto_kiosk.isChecked()
        new.auto_capture_hold_s = float(self.hold_spin.value())
        new.kiosk_idle_timeout_s = int(self.idle_spin.value())
        pin = self.pin_edit.text()
        if pin or self.pin_confirm.text():
            if pin != self.pin_confirm.text():
                raise ValueError("The two PINs differ.")
            if kiosk_pin_problem(pin):
                raise ValueError(kiosk_pin_problem(pin))
        if self.target_combo.currentData() == "dicomweb":
            url = self.url_edit.text().strip()
            # the address rules (http:// or https://, no login in it) are make_target's, below
            new.submission = {"kind": "dicomweb", "url": url}
            if self.user_edit.text().strip():
                new.submission["username"] = self.user_edit.text().strip()
                new.submission["password"] = self.password_edit.text()
                if self.password_in_file_check.isChecked():
                    new.submission[PASSWORD_IN_FILE] = "true"
            if self.ca_edit.text().strip():
                new.submission["ca_bundle"] = self.ca_edit.text().strip()
            if self.insecure_http_check.isChecked():
                new.submission["allow_insecure_http"] = "true"
            make_target(new.submission)  # http with a login, a missing CA bundle: ValueError
        else:
            new.submission = {"kind": "outbox"}
            if self.outbox_edit.text().strip():
                new.submission["folder"] = self.outbox_edit.text().strip()
        return new

    @Slot()
    def _on_accept(self) -> None:
        try:
            self._result = self._collect()
        except ValueError as exc:
            self.error_label.setText(str(exc))
            return
        self.accept()

    def result_settings(self) -> AppSettings:
        return self._result

    def new_pin(self) -> str:
        return self.pin_edit.text()
