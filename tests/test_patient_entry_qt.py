"""The staff window refuses patient fields that cannot go into a DICOM object, at entry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from desktop_app.app.services import build_services
from desktop_app.core.settings import AppSettings
from desktop_app.qt.windows.main_window import MainWindow


@pytest.fixture
def window(qtbot: QtBot, tmp_path: Path) -> Iterator[MainWindow]:
    services = build_services(
        kiosk=False,
        model=None,
        source_spec="demo",
        settings=AppSettings(operator="nurse-test", submission_interval_s=0.3),
        store_root=tmp_path / "store",
    )
    main = MainWindow(services)
    qtbot.addWidget(main)
    main.show()
    yield main
    main.close()
    assert main.closed_cleanly is True


def test_bad_patient_id_or_note_blocks_the_capture_with_a_message(window: MainWindow) -> None:
    window.site_combo.setCurrentIndex(window.site_combo.findText("Chest"))
    window.patient_edit.setText("ENC\\4711")
    assert not window.capture_button.isEnabled()
    assert "backslash" in window.submit_reason.text()
    window.patient_edit.setText("E" * 65)
    assert "64 characters" in window.submit_reason.text()
    window.patient_edit.setText("ENC-4711")
    assert window._capture_blocker() == ""
    window.note_edit.setPlainText("itchy\tfor a week")
    assert "The note must not contain control characters (tab)" in window.submit_reason.text()
    assert not window.capture_button.isEnabled()
    window.note_edit.setPlainText("itchy\nfor a week")
    assert window._capture_blocker() == ""
