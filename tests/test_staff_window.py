"""The staff window's keys, size, hot-folder mode and smaller findings (issue 20: 3, 4, 7, 9).

Offscreen pytest-qt tests; each one fails on the window as it was before the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget
from pytestqt.qtbot import QtBot
from test_app_qt import WAIT_MS, _services

from desktop_app import __version__
from desktop_app.core.settings import load_settings
from desktop_app.qt.windows.main_window import (
    CHECKING_PHOTO,
    HOT_FOLDER_WAITING,
    LOADING_MODEL,
    MIN_WINDOW_SIZE,
    MainWindow,
    fitted_window_size,
)


@pytest.fixture
def open_staff(qtbot: QtBot, tmp_path: Path) -> Iterator[Callable[..., MainWindow]]:
    windows: list[MainWindow] = []

    def _open(model: Path | None, source: str, settings_path: Path | None = None) -> MainWindow:
        window = MainWindow(_services(tmp_path, model, source), settings_path)
        qtbot.addWidget(window)
        window.show()
        window.activateWindow()
        qtbot.waitUntil(window.isActiveWindow, timeout=WAIT_MS)
        windows.append(window)
        return window

    yield _open
    for window in windows:
        window.close()
        assert window.closed_cleanly is True


def _press(qtbot: QtBot, window: MainWindow, key: Qt.Key) -> None:
    """A key as the person at the keyboard presses it: to whatever has the focus."""
    target = QApplication.focusWidget() or window
    qtbot.keyClick(target, key)


def _choose_site(window: MainWindow) -> None:
    window.site_combo.setCurrentIndex(window.site_combo.findText("Forearm (left)"))


def _jpeg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def _inside(window: QWidget, widget: QWidget) -> bool:
    top_left = widget.mapTo(window, QPoint(0, 0))
    return window.rect().contains(QRect(top_left, widget.size()))


# ---- finding 3: keys never edit the patient ID ----------------------------------------------


def test_space_and_r_in_the_patient_id_capture_and_retake_without_typing(
    qtbot: QtBot, test_model_path: Path, sharp_folder: Path, open_staff: Callable[..., MainWindow]
) -> None:
    window = open_staff(test_model_path, f"still-camera:{sharp_folder}")
    qtbot.waitUntil(lambda: window.live.last_view is not None, timeout=WAIT_MS)
    _choose_site(window)
    window.patient_edit.setFocus()
    qtbot.keyClicks(window.patient_edit, "P-1001")
    assert QApplication.focusWidget() is window.patient_edit
    for _ in range(2):  # the keystrokes of the incident: Space, R, Space, R
        _press(qtbot, window, Qt.Key.Key_Space)
        qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
        assert window.outcome is not None and window.outcome.record is not None
        assert window.outcome.record.info.patient_ref == "P-1001"
        assert not window.fps_label.isVisible()  # a still on screen: no frame rate
        _press(qtbot, window, Qt.Key.Key_R)
        assert window.outcome is None  # retaken
        assert window.patient_edit.text() == "P-1001"
    assert QApplication.focusWidget() is not window.patient_edit


def test_a_refused_capture_from_the_patient_id_does_not_leave_r_to_be_typed_into_it(
    qtbot: QtBot, test_model_path: Path, sharp_folder: Path, open_staff: Callable[..., MainWindow]
) -> None:
    """Seen under Xvfb: ID typed, no body site yet, Space (refused: "choose the body site
    first"), then R for Retake: the ID became "P-1001r"."""
    window = open_staff(test_model_path, f"still-camera:{sharp_folder}")
    qtbot.waitUntil(lambda: window.live.last_view is not None, timeout=WAIT_MS)
    window.patient_edit.setFocus()
    qtbot.keyClicks(window.patient_edit, "P-1001")
    _press(qtbot, window, Qt.Key.Key_Space)
    assert window.outcome is None  # refused: no body site
    assert QApplication.focusWidget() is window.site_combo  # on to what is missing
    _press(qtbot, window, Qt.Key.Key_R)
    assert window.patient_edit.text() == "P-1001"
    # an ID that is itself the problem keeps the focus, with the reason shown
    window.patient_edit.setText("P-1001  x")
    window.patient_edit.setFocus()
    _press(qtbot, window, Qt.Key.Key_Space)
    assert QApplication.focusWidget() is window.patient_edit
    assert "two spaces" in window.submit_reason.text()


def test_space_on_the_body_site_list_and_hold_time_captures(
    qtbot: QtBot, test_model_path: Path, sharp_folder: Path, open_staff: Callable[..., MainWindow]
) -> None:
    window = open_staff(test_model_path, f"still-camera:{sharp_folder}")
    qtbot.waitUntil(lambda: window.live.last_view is not None, timeout=WAIT_MS)
    window.patient_edit.setText("P-1001")
    _choose_site(window)
    window.site_combo.setFocus()
    _press(qtbot, window, Qt.Key.Key_Space)
    assert not window.site_combo.view().isVisible()
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    assert window.site_combo.currentText() == "Forearm (left)"
    _press(qtbot, window, Qt.Key.Key_R)
    assert window.outcome is None
    window.hold_spin.setFocus()  # the other field a click leaves the focus in
    _press(qtbot, window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    _press(qtbot, window, Qt.Key.Key_R)
    assert window.outcome is None and window.hold_spin.value() == 1.5


def test_enter_in_the_patient_id_moves_on_and_clicking_the_view_takes_focus(
    qtbot: QtBot, test_model_path: Path, sharp_folder: Path, open_staff: Callable[..., MainWindow]
) -> None:
    window = open_staff(test_model_path, f"still-camera:{sharp_folder}")
    window.patient_edit.setFocus()
    qtbot.keyClicks(window.patient_edit, "P-1001")
    _press(qtbot, window, Qt.Key.Key_Return)
    assert QApplication.focusWidget() is window.site_combo  # on to the body site
    _choose_site(window)
    window.site_combo.activated.emit(window.site_combo.currentIndex())  # chosen from the list
    assert QApplication.focusWidget() is window.live.frame_view  # then to the picture
    window.patient_edit.setFocus()
    _press(qtbot, window, Qt.Key.Key_Return)  # site chosen: straight to the picture
    assert QApplication.focusWidget() is window.live.frame_view
    assert window.outcome is None  # Enter in the ID never submits
    window.patient_edit.setFocus()
    qtbot.mouseClick(window.live.frame_view, Qt.MouseButton.LeftButton)
    assert QApplication.focusWidget() is window.live.frame_view
    _press(qtbot, window, Qt.Key.Key_R)
    assert window.patient_edit.text() == "P-1001"


def test_a_mistyped_patient_id_blocks_capture_and_is_never_stored(
    qtbot: QtBot, test_model_path: Path, sharp_folder: Path, open_staff: Callable[..., MainWindow]
) -> None:
    window = open_staff(test_model_path, f"still-camera:{sharp_folder}")
    qtbot.waitUntil(lambda: window.live.last_view is not None, timeout=WAIT_MS)
    _choose_site(window)
    window.patient_edit.setText("P-1001  r r r r")
    assert not window.capture_button.isEnabled()
    assert "two spaces" in window.submit_reason.text()
    window.live.frame_view.setFocus()
    _press(qtbot, window, Qt.Key.Key_Space)
    assert window.outcome is None and not window.session.capture_busy
    assert "two spaces" in window.statusBar().currentMessage()
    assert window._capture_context().patient_ref == ""
    window.patient_edit.setText("P-1001\t")
    assert window._capture_context().patient_ref == "P-1001"  # trailing blanks are trimmed
    window.patient_edit.setText("P-10\x0701")
    assert "control character" in window.submit_reason.text()
    window.patient_edit.setText(" P-1001 ")
    assert window.capture_button.isEnabled()
    _press(qtbot, window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    assert window.outcome is not None and window.outcome.record is not None
    assert window.outcome.record.info.patient_ref == "P-1001"


# ---- finding 4: fits a 1366x768 / 1280x720 laptop -------------------------------------------


def test_staff_window_fits_a_1280x720_screen(
    qtbot: QtBot, test_model_path: Path, sharp_folder: Path, open_staff: Callable[..., MainWindow]
) -> None:
    window = open_staff(test_model_path, str(sharp_folder))
    hint = window.minimumSizeHint()
    assert hint.width() <= 1260 and hint.height() <= 680, hint
    assert window.minimumSize().width() <= 1260 and window.minimumSize().height() <= 680
    window.resize(1280, 680)
    qtbot.waitUntil(lambda: window.size() == QSize(1280, 680), timeout=WAIT_MS)
    QApplication.processEvents()
    for widget in (window.live.guidance, window.live.score_bar, window.statusBar()):
        assert widget.isVisible(), widget
        assert widget.height() > 0 and _inside(window, widget), widget
    assert _inside(window, window.live.frame_view)
    assert window.live.frame_view.height() >= 200  # the picture scales down, it stays usable
    # the opening size fits the available screen area, with room for the window frame
    for available in (QSize(1366, 728), QSize(1280, 680), QSize(1920, 1040)):
        size = fitted_window_size(available)
        assert size.width() < available.width() and size.height() < available.height()
        assert size.width() >= MIN_WINDOW_SIZE.width()


# ---- finding 7: hot-folder mode -------------------------------------------------------------


def test_hot_folder_mode_waits_clears_and_keeps_errors_until_the_next_photo(
    qtbot: QtBot,
    tmp_path: Path,
    test_model_path: Path,
    skin_rgb: np.ndarray,
    open_staff: Callable[..., MainWindow],
) -> None:
    tether = tmp_path / "tether"
    tether.mkdir()
    window = open_staff(test_model_path, f"hotfolder:{tether}")
    view = window.live.frame_view
    waiting = f"Waiting for photos in {tether}"
    qtbot.waitUntil(lambda: window.session.model_ready, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.session.source_ok, timeout=WAIT_MS)
    assert view._placeholder == waiting and not view.has_image()  # not "Starting the camera…"
    assert window.live.guidance.text() == HOT_FOLDER_WAITING
    assert window.capture_button.text() == HOT_FOLDER_WAITING
    assert not window.capture_button.isEnabled()
    assert not window.fps_label.isVisible()
    window.patient_edit.setText("P-1001")
    _choose_site(window)
    photo = _jpeg(skin_rgb)

    (tether / "DSC_0001.JPG").write_bytes(photo)
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    assert window.outcome is not None and window.outcome.judgement.accepted
    qtbot.mouseClick(window.retake_button, Qt.MouseButton.LeftButton)
    assert window.outcome is None
    assert not view.has_image() and view._placeholder == waiting  # the old photo is gone
    assert window.live.guidance.text() == HOT_FOLDER_WAITING

    (tether / "DSC_0002.JPG").write_bytes(photo)
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    # a damaged file replaces the verdict on screen and stays there
    (tether / "DSC_0003.JPG").write_bytes(b"this is no photo")
    qtbot.waitUntil(lambda: window.outcome is None, timeout=WAIT_MS)
    assert "DSC_0003.JPG" in window.verdict_label.text()
    assert "DSC_0003.JPG" in view._placeholder and not view.has_image()
    assert "could not be read" in window.live.guidance.text()
    assert window.submit_button.isEnabled() is False
    qtbot.wait(1200)  # two more polls of the folder: the message stays
    assert "DSC_0003.JPG" in window.verdict_label.text()

    # a half-copied file is reported as truncated; once complete, the photo replaces the error
    (tether / "DSC_0004.JPG").write_bytes(photo[: len(photo) // 2])
    qtbot.waitUntil(lambda: "DSC_0004.JPG" in window.verdict_label.text(), timeout=WAIT_MS)
    (tether / "DSC_0004.JPG").write_bytes(photo)
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    assert window.outcome is not None and window.outcome.source.endswith("DSC_0004.JPG")
    assert "DSC_0004" not in window.verdict_label.text()
    assert "Accepted" in window.verdict_label.text()
    assert window.import_error == "" and window.submit_button.isEnabled()
    assert window.live.guidance.text() == "Good photo: ready to submit"
    qtbot.mouseClick(window.submit_button, Qt.MouseButton.LeftButton)
    assert not view.has_image() and view._placeholder == waiting
    _press(qtbot, window, Qt.Key.Key_Space)  # there is nothing to capture here: says so
    assert "take the photo on the camera" in window.statusBar().currentMessage()


def _hot_folder_window(
    qtbot: QtBot, tmp_path: Path, model: Path, open_staff: Callable[..., MainWindow]
) -> tuple[MainWindow, Path]:
    """A staff window on an empty hot folder, its model loaded."""
    tether = tmp_path / "tether"
    tether.mkdir()
    window = open_staff(model, f"hotfolder:{tether}")
    qtbot.waitUntil(lambda: window.session.model_ready, timeout=WAIT_MS)
    return window, tether


def test_a_good_photo_that_cannot_be_submitted_does_not_say_ready_to_submit(
    qtbot: QtBot,
    tmp_path: Path,
    test_model_path: Path,
    skin_rgb: np.ndarray,
    open_staff: Callable[..., MainWindow],
) -> None:
    """Seen under Xvfb: a hot-folder photo that arrived before any ID was typed said "Good
    photo: ready to submit" above a greyed-out Submit."""
    window, tether = _hot_folder_window(qtbot, tmp_path, test_model_path, open_staff)
    (tether / "DSC_0001.JPG").write_bytes(_jpeg(skin_rgb))
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    assert window.outcome is not None and window.outcome.judgement.accepted
    assert not window.submit_button.isEnabled()
    assert "ready to submit" not in window.live.guidance.text()
    assert "Submit is off" in window.live.guidance.text()


def test_hot_folder_file_replaced_by_a_newer_one_tells_staff(
    qtbot: QtBot,
    tmp_path: Path,
    test_model_path: Path,
    skin_rgb: np.ndarray,
    open_staff: Callable[..., MainWindow],
) -> None:
    window, tether = _hot_folder_window(qtbot, tmp_path, test_model_path, open_staff)
    window.patient_edit.setText("P-1001")
    _choose_site(window)
    (tether / "DSC_0001.JPG").write_bytes(_jpeg(skin_rgb))
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    first = window.outcome
    assert first is not None and first.record is not None
    assert "replaced" not in window.verdict_label.text()
    qtbot.mouseClick(window.retake_button, Qt.MouseButton.LeftButton)
    (tether / "DSC_0001.JPG").write_bytes(_jpeg(np.ascontiguousarray(skin_rgb[::-1])))
    qtbot.waitUntil(
        lambda: window.outcome is not None and window.outcome is not first, timeout=WAIT_MS
    )
    second = window.outcome
    assert second is not None and second.record is not None
    assert second.record.id != first.record.id  # both photos are kept
    shown = window.verdict_label.text()
    assert "DSC_0001.JPG was replaced by a newer file" in shown and "kept in Review" in shown
    assert "replaced by a newer file" in window.statusBar().currentMessage()
    assert first.notice == ""  # said once, with the photo it came with
    assert second.notice and "DSC_0001.JPG was replaced" in second.notice


# ---- finding 9: smaller ---------------------------------------------------------------------


def test_no_camera_message_is_shown_once(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, open_staff: Callable[..., MainWindow]
) -> None:
    missing = tmp_path / "unplugged-card"
    window = open_staff(test_model_path, f"hotfolder:{missing}")
    qtbot.waitUntil(lambda: "does not exist" in window.live.banner_text, timeout=WAIT_MS)
    shown = [
        window.live.banner_text,
        window.live.frame_view._placeholder,
        window.source_label.text(),
        window.statusBar().currentMessage(),
    ]
    assert sum(str(missing) in text for text in shown) == 1, shown
    assert str(missing) in window.source_label.toolTip()  # the whole message on hover
    assert "Checking" not in window.live.guidance.text()  # there is no picture to check
    status_bar = window.statusBar()
    assert status_bar.minimumSizeHint().width() <= window.width()
    missing.mkdir()  # the card is back
    qtbot.waitUntil(lambda: window.session.source_ok, timeout=WAIT_MS)
    assert window.live.guidance.text() == HOT_FOLDER_WAITING
    assert window.live.frame_view._placeholder == f"Waiting for photos in {missing}"


def test_model_loading_says_so_and_checking_is_said_once(
    qtbot: QtBot, test_model_path: Path, sharp_folder: Path, open_staff: Callable[..., MainWindow]
) -> None:
    window = open_staff(test_model_path, f"still-camera:{sharp_folder}")
    if not window.session.model_ready:  # the model loads in its thread: nothing says "no model"
        assert window.live.guidance.text() == LOADING_MODEL
        assert window.model_label.text() == LOADING_MODEL
        assert "no model" not in window.live.score_bar.text()
    window.session.model_info = None
    window.session.model_loading = True
    window.session.sig_model_status.emit("Loading model x.onnx…", True)
    assert window.live.guidance.text() == LOADING_MODEL
    assert "no model" not in window.live.score_bar.text()
    assert window.model_label.text() == LOADING_MODEL
    window.session.load_model(test_model_path)
    qtbot.waitUntil(lambda: window.session.model_ready, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.live.last_view is not None, timeout=WAIT_MS)
    window.patient_edit.setText("P-1001")
    _choose_site(window)
    window.live.frame_view.setFocus()
    _press(qtbot, window, Qt.Key.Key_Space)
    assert window.session.capture_busy
    assert window.verdict_label.text() == CHECKING_PHOTO
    assert "Checking" not in window.submit_reason.text()
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)


def test_fps_is_hidden_on_the_review_tab(
    qtbot: QtBot, test_model_path: Path, sharp_folder: Path, open_staff: Callable[..., MainWindow]
) -> None:
    window = open_staff(test_model_path, str(sharp_folder))
    assert window.fps_label.isVisible()
    window.tabs.setCurrentWidget(window.gallery)
    assert not window.fps_label.isVisible()
    window.tabs.setCurrentIndex(0)
    assert window.fps_label.isVisible()


def test_auto_capture_in_the_window_is_for_this_session_only(
    qtbot: QtBot,
    tmp_path: Path,
    test_model_path: Path,
    sharp_folder: Path,
    open_staff: Callable[..., MainWindow],
) -> None:
    saved = tmp_path / "settings.json"
    window = open_staff(test_model_path, str(sharp_folder), settings_path=saved)
    assert not window.session.auto_capture_on
    window.auto_capture_check.setChecked(True)
    window.hold_spin.setValue(2.5)
    assert window.session.auto_capture_on
    assert window.session.gate.auto_capture is not None
    assert load_settings(saved).auto_capture_staff is False  # the default is unchanged
    assert window.settings.auto_capture_staff is False
    assert "this session" in window.auto_capture_check.toolTip()


def test_help_about_and_window_icon(
    qtbot: QtBot,
    test_model_path: Path,
    sharp_folder: Path,
    open_staff: Callable[..., MainWindow],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    window = open_staff(test_model_path, str(sharp_folder))
    assert not window.windowIcon().isNull()
    menus = [action.text() for action in window.menuBar().actions()]
    assert "&Help" in menus
    qtbot.waitUntil(lambda: window.session.model_ready, timeout=WAIT_MS)
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "about", lambda parent, title, text: shown.append(text))
    window.about_action.trigger()
    assert shown and __version__ in shown[0]
    info = window.session.model_info
    assert info is not None and info.version in shown[0]
    assert "Licences" in shown[0] and "model card" in shown[0]


def test_save_dialogs_open_in_documents_not_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from desktop_app.core.resources import user_documents_dir

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_DOCUMENTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert user_documents_dir() == home  # no Documents folder: the home folder
    (home / "Documents").mkdir()
    assert user_documents_dir() == home / "Documents"


def test_review_export_dialog_opens_in_documents(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    test_model_path: Path,
    sharp_folder: Path,
    open_staff: Callable[..., MainWindow],
) -> None:
    home = tmp_path / "home"
    (home / "Documents").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_DOCUMENTS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    window = open_staff(test_model_path, str(sharp_folder))
    offered: list[str] = []

    def fake_dialog(*args: Any, **kwargs: Any) -> tuple[str, str]:
        offered.append(str(args[2]))
        return "", ""  # the user cancels

    monkeypatch.setattr("desktop_app.qt.views.gallery.QFileDialog.getSaveFileName", fake_dialog)
    window.gallery._on_export_clicked()
    assert offered == [str(home / "Documents" / "reviewed.csv")]
