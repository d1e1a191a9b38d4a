"""The settings dialog's DICOMweb security fields: keyring note, password-in-file choice,
credentials in the address, plain http with a login, CA bundle."""

from __future__ import annotations

from pathlib import Path

from pytestqt.qtbot import QtBot

from desktop_app.core.settings import AppSettings
from desktop_app.qt.windows.settings_dialog import SettingsDialog


def _dialog(qtbot: QtBot, **submission: str) -> SettingsDialog:
    settings = AppSettings(camera="demo", submission={"kind": "dicomweb", **submission})
    dialog = SettingsDialog(settings, None)
    qtbot.addWidget(dialog)
    return dialog


def test_without_a_keyring_the_dialog_says_so_and_offers_the_file(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, url="https://pacs/dicom-web")
    assert "no system keyring" in dialog.password_note.text()
    assert not dialog.password_in_file_check.isHidden()
    assert not dialog.password_in_file_check.isChecked()  # never chosen for the user
    dialog.user_edit.setText("alice")
    dialog.password_edit.setText("hunter2")
    dialog._on_accept()
    assert dialog.error_label.text() == ""
    assert "password_in_file" not in dialog.result_settings().submission
    dialog.password_in_file_check.setChecked(True)
    dialog._on_accept()
    assert dialog.result_settings().submission["password_in_file"] == "true"


def test_with_a_keyring_the_file_is_not_offered(qtbot: QtBot, memory_keyring) -> None:
    dialog = _dialog(qtbot, url="https://pacs/dicom-web")
    assert "system keyring" in dialog.password_note.text()
    assert dialog.password_in_file_check.isHidden()


def test_address_with_credentials_is_refused_without_echoing_them(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot)
    dialog.url_edit.setText("https://alice:hunter2@pacs/dicom-web")
    dialog._on_accept()
    assert "User and Password fields" in dialog.error_label.text()
    assert "hunter2" not in dialog.error_label.text()


def test_login_over_http_needs_the_explicit_choice(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot)
    dialog.url_edit.setText("http://pacs:8042/dicom-web")
    dialog.user_edit.setText("alice")
    dialog.password_edit.setText("pw")
    dialog._on_accept()
    assert "unencrypted" in dialog.error_label.text()
    dialog.insecure_http_check.setChecked(True)
    dialog.error_label.setText("")
    dialog._on_accept()
    assert dialog.error_label.text() == ""
    assert dialog.result_settings().submission["allow_insecure_http"] == "true"


def test_ca_bundle_is_checked_and_kept(qtbot: QtBot, tmp_path: Path) -> None:
    dialog = _dialog(qtbot, url="https://pacs/dicom-web")
    dialog.ca_edit.setText(str(tmp_path / "missing.pem"))
    dialog._on_accept()
    assert "CA bundle" in dialog.error_label.text()
    bundle = tmp_path / "ca.pem"
    bundle.write_text("pem")
    dialog.ca_edit.setText(str(bundle))
    dialog.error_label.setText("")
    dialog._on_accept()
    assert dialog.result_settings().submission["ca_bundle"] == str(bundle)


def test_operator_name_must_fit_a_dicom_person_name(qtbot: QtBot) -> None:
    dialog = _dialog(qtbot, url="https://pacs/dicom-web")
    dialog.operator_edit.setText("Doe\\Jane")
    dialog._on_accept()
    assert "operator name must not contain a backslash" in dialog.error_label.text()
