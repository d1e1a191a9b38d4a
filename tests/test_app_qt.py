"""The capture app end to end (pytest-qt, offscreen): replay source + the handmade contract model.

Each test starts the real windows with their real worker threads, source, store and submission
queue; only the images (a generated skin photo, sharp or blurred) are made up.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from frame_helpers import write_frame_folder
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget
from pytestqt.qtbot import QtBot

from desktop_app.app.services import AppServices, build_services
from desktop_app.core.capture import CaptureOutcome
from desktop_app.core.demo_scene import render_skin
from desktop_app.core.gating import GateState
from desktop_app.core.review import OVERRIDE_REASONS
from desktop_app.core.settings import DEFAULT_KIOSK_PIN, AppSettings
from desktop_app.core.sources import FrameSource
from desktop_app.qt.compat import ensure_display
from desktop_app.qt.views.live_view import PRACTICE_BANNER
from desktop_app.qt.windows.main_window import MainWindow

WAIT_MS = 15_000


class StillCamera:
    """A camera for machines without one (CI): a replayed folder's frames, labelled as a camera
    (``camera``) so the submit rule treats its captures as real. Everything else is the replay
    source's own behaviour. Tests reach it with the source spec ``still-camera:FOLDER``."""

    name = "Test camera (still images)"
    kind = "camera"

    def __init__(self, replay: FrameSource) -> None:
        self._replay = replay

    def __getattr__(self, item: str) -> Any:
        if item == "source":  # source_label looks through wrappers by this name
            raise AttributeError(item)
        return getattr(self._replay, item)


def _services(tmp_path: Path, model: Path | None, source: str, **settings: object) -> AppServices:
    app_settings = AppSettings(operator="nurse-test", submission_interval_s=0.3)
    for key, value in settings.items():
        setattr(app_settings, key, value)
    as_camera = source.startswith("still-camera:")
    services = build_services(
        kiosk=False,
        model=model,
        source_spec=source.removeprefix("still-camera:"),
        settings=app_settings,
        store_root=tmp_path / "store",
    )
    if as_camera:
        services = dataclasses.replace(services, source=StillCamera(services.source))
    return services


@pytest.fixture
def open_window(qtbot: QtBot) -> Iterator[Callable[[QWidget], QWidget]]:
    windows: list[QWidget] = []

    def _open(window: QWidget) -> QWidget:
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        return window

    yield _open
    for window in windows:
        if hasattr(window, "unlocked"):
            window.unlocked = True
        window.close()
        assert window.closed_cleanly is True  # type: ignore[attr-defined]


def _staff_window(
    tmp_path: Path, model: Path | None, source: str, open_window: Callable[[QWidget], QWidget]
) -> MainWindow:
    window = open_window(MainWindow(_services(tmp_path, model, source)))
    assert isinstance(window, MainWindow)
    return window


def _fill_patient(window: MainWindow) -> None:
    window.patient_edit.setText("ENC-4711")
    window.site_combo.setCurrentIndex(window.site_combo.findText("Forearm (left)"))


def _wait_live(qtbot: QtBot, window: MainWindow) -> None:
    """Until the model's first live result is on screen (the cheap cues come first)."""
    qtbot.waitUntil(
        lambda: (
            window.live.last_view is not None and window.live.last_view.state != GateState.WAITING
        ),
        timeout=WAIT_MS,
    )


def test_sharp_frame_enables_submit_and_sends(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, sharp_folder: Path, open_window: Callable
) -> None:
    window = _staff_window(tmp_path, test_model_path, f"still-camera:{sharp_folder}", open_window)
    _wait_live(qtbot, window)
    assert window.live.guidance.text() == "Looks good: hold still"
    assert window.live.frame_view.heat is not None  # the live heat overlay is drawn
    assert not window.capture_button.isEnabled()  # no patient yet
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert window.outcome is None
    assert "patient or encounter ID" in window.submit_reason.text()
    _fill_patient(window)
    assert window.capture_button.isEnabled()
    qtbot.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    outcome = window.outcome
    assert outcome is not None and outcome.judgement.accepted
    assert outcome.result is not None and outcome.result.grid == "capture"
    assert outcome.image_rgb.shape == (360, 640, 3)  # the full-resolution still
    assert window.submit_button.isEnabled() and window.submit_reason.text() == ""
    assert window.live.frame_view.heat is not None  # verdict shown with its heat map
    store = window.services.store
    assert store is not None and outcome.record is not None
    assert store.get(outcome.record.id).state == "accepted"  # stored before Submit
    qtbot.keyClick(window, Qt.Key.Key_Return)
    assert window.outcome is None  # back to live
    qtbot.waitUntil(lambda: store.get(outcome.record.id).state == "submitted", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: "1 sent" in window.queue_label.text(), timeout=WAIT_MS)
    assert store.get(outcome.record.id).info.patient_ref == "ENC-4711"
    assert store.get(outcome.record.id).info.source == "camera"


def test_blurred_frame_keeps_submit_disabled_with_blur_guidance(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, blurred_folder: Path, open_window: Callable
) -> None:
    window = _staff_window(tmp_path, test_model_path, str(blurred_folder), open_window)
    qtbot.waitUntil(lambda: window.live.guidance.text() == "Hold steady / focus", timeout=WAIT_MS)
    _fill_patient(window)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    assert window.outcome is not None and not window.outcome.judgement.accepted
    assert not window.submit_button.isEnabled()
    assert "Hold steady / focus" in window.submit_reason.text()
    assert "below the threshold" in window.submit_reason.text()
    assert window.live.guidance.text() == "Retake: Hold steady / focus"
    qtbot.keyClick(window, Qt.Key.Key_Return)  # Enter does nothing while Submit is off
    assert window.outcome is not None
    record = window.outcome.record
    assert record is not None and record.state == "rejected"
    qtbot.keyClick(window, Qt.Key.Key_R)
    assert window.outcome is None and window.capture_button.isEnabled()


def test_gallery_override_confirm_delete_and_export(
    qtbot: QtBot,
    tmp_path: Path,
    test_model_path: Path,
    blurred_folder: Path,
    open_window: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    window = _staff_window(tmp_path, test_model_path, f"still-camera:{blurred_folder}", open_window)
    _wait_live(qtbot, window)
    _fill_patient(window)
    ids = []
    for _ in range(3):
        qtbot.keyClick(window, Qt.Key.Key_Space)
        qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
        assert window.outcome is not None and window.outcome.record is not None
        ids.append(window.outcome.record.id)
        qtbot.keyClick(window, Qt.Key.Key_R)
    gallery = window.gallery
    window.tabs.setCurrentWidget(gallery)
    qtbot.waitUntil(lambda: gallery.list.count() == 3, timeout=WAIT_MS)
    assert gallery.filter_combo.currentText() == "Rejected (to review)"
    assert "blur" in gallery.list.item(0).text()
    qtbot.waitUntil(lambda: not gallery._thumb_queue, timeout=WAIT_MS)
    assert not gallery.list.item(0).icon().isNull()

    store = window.services.store
    assert store is not None
    # accept anyway: needs a reviewer and a reason
    assert gallery.select(ids[0])
    qtbot.waitUntil(lambda: gallery.view.heat is not None, timeout=WAIT_MS)  # heat map toggle
    gallery.overlay_check.setChecked(False)
    assert not gallery.view.overlay_visible
    gallery.overlay_check.setChecked(True)
    qtbot.mouseClick(gallery.full_size_button, Qt.MouseButton.LeftButton)  # full-size viewer
    assert gallery.viewer is not None and gallery.viewer.isVisible()
    assert gallery.viewer.view.heat is not None and gallery.viewer.view.has_image()
    gallery.viewer.close()
    gallery.reviewer_edit.setText("")
    assert not gallery.override_button.isEnabled()
    gallery.reviewer_edit.setText("Dr Derm")
    assert not gallery.override_button.isEnabled()  # no reason yet
    gallery.override_reason.setCurrentText(OVERRIDE_REASONS[1])  # from the fixed list
    assert gallery.override_button.isEnabled()
    # the confirmation before sending (and before the deletion below) is answered Yes
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    qtbot.mouseClick(gallery.override_button, Qt.MouseButton.LeftButton)
    record = store.get(ids[0])
    assert record.state in ("overridden", "queued", "submitted")
    assert record.reviewer == "Dr Derm" and record.reviewed_utc
    assert record.review_reason == OVERRIDE_REASONS[1]
    qtbot.waitUntil(lambda: store.get(ids[0]).state == "submitted", timeout=WAIT_MS)
    assert gallery.list.count() == 2  # gone from the rejected list
    # confirm reject
    assert gallery.select(ids[1])
    qtbot.mouseClick(gallery.reject_button, Qt.MouseButton.LeftButton)
    confirmed = store.get(ids[1])
    assert confirmed.state == "rejected" and confirmed.review_action == "confirm_reject"
    assert confirmed.reviewer == "Dr Derm"
    # delete (the confirmation is answered Yes)
    assert gallery.select(ids[2])
    qtbot.mouseClick(gallery.delete_button, Qt.MouseButton.LeftButton)
    with pytest.raises(KeyError):
        store.get(ids[2])
    assert any(h["action"] == "delete" and h["actor"] == "Dr Derm" for h in store.history(ids[2]))
    # the accepted-too filter shows the overridden one
    gallery.filter_combo.setCurrentText("All")
    assert gallery.list.count() == 2
    # export reviewed items in the training CSV format
    out = tmp_path / "export" / "reviewed.csv"
    out.parent.mkdir()
    assert gallery.export_csv(out) == 2
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert {r["source_path"] for r in rows} == {f"capture:{ids[0]}", f"capture:{ids[1]}"}
    ratings = {r["source_path"]: r["rater_1"] for r in rows}
    assert ratings[f"capture:{ids[0]}"] == "4" and ratings[f"capture:{ids[1]}"] == "2"
    assert all((out.parent / r["image"]).is_file() for r in rows)
    assert rows[0]["blur"] in ("0", "1")
    # photos are decoded in a worker; one damaged on disk gets a message, not a crash
    store.get(ids[1]).image_path.write_bytes(b"not a photo any more")
    gallery._show_record(store.get(ids[1]))
    assert gallery.view._placeholder == "Loading the photo…"
    qtbot.waitUntil(lambda: "damaged" in gallery.view._placeholder, timeout=WAIT_MS)
    assert gallery.current_image is None and not gallery.full_size_button.isEnabled()


def test_camera_that_disappears_gives_message_and_recovers(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, sharp_folder: Path, open_window: Callable
) -> None:
    window = _staff_window(tmp_path, test_model_path, str(sharp_folder), open_window)
    view = window.live.frame_view
    qtbot.waitUntil(lambda: view.frames_shown > 3, timeout=WAIT_MS)
    unplugged = tmp_path / "unplugged"
    sharp_folder.rename(unplugged)
    qtbot.waitUntil(lambda: "no longer there" in window.live.banner_text, timeout=WAIT_MS)
    assert "Trying again" in window.live.banner_text
    assert not view.has_image()  # the last frame is not left up as if live
    assert "no longer there" in window.source_label.toolTip()  # the banner has the text
    unplugged.rename(sharp_folder)
    # back: only the notice that this is a replay, not a camera, stays
    qtbot.waitUntil(lambda: window.live.banner_text == PRACTICE_BANNER, timeout=WAIT_MS)
    shown = view.frames_shown
    qtbot.waitUntil(lambda: view.frames_shown > shown + 3, timeout=WAIT_MS)
    assert "1280" not in window.source_label.text() and "640x360" in window.source_label.text()


def test_missing_model_starts_with_clear_message_and_submit_off(
    qtbot: QtBot,
    tmp_path: Path,
    sharp_folder: Path,
    open_window: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # no bundled default model either
    monkeypatch.setenv("SKIN_CAPTURE_RESOURCES", str(tmp_path / "no-resources"))
    window = _staff_window(tmp_path, None, str(sharp_folder), open_window)
    qtbot.waitUntil(lambda: "No quality model" in window.live.banner_text, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.live.frame_view.frames_shown > 3, timeout=WAIT_MS)
    assert window.live.guidance.text().startswith("No quality check")
    _fill_patient(window)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    assert window.outcome is not None and window.outcome.record is not None  # photo kept
    assert not window.submit_button.isEnabled()
    assert "not quality-checked" in window.submit_reason.text()


def test_mismatched_model_is_refused_with_message(
    qtbot: QtBot, tmp_path: Path, sharp_folder: Path, open_window: Callable
) -> None:
    from onnx_factory import write_model

    broken = write_model(tmp_path / "old.onnx", metadata_json='{"schema_version": 99}')
    window = _staff_window(tmp_path, broken, str(sharp_folder), open_window)
    qtbot.waitUntil(lambda: "schema version 99" in window.live.banner_text, timeout=WAIT_MS)
    assert window.model_label.text() == "No quality model"


def test_worker_threads_shut_down_cleanly(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, sharp_folder: Path
) -> None:
    window = MainWindow(_services(tmp_path, test_model_path, str(sharp_folder)))
    qtbot.addWidget(window)
    window.show()
    _wait_live(qtbot, window)
    threads = [t.thread for t in window.session.threads]
    assert len(threads) == 3 and all(t.isRunning() for t in threads)
    window.close()
    assert window.closed_cleanly is True
    assert all(t.isFinished() for t in threads)


def test_hot_folder_file_is_evaluated_as_capture(
    qtbot: QtBot,
    tmp_path: Path,
    test_model_path: Path,
    skin_rgb: np.ndarray,
    open_window: Callable,
) -> None:
    tether = tmp_path / "tether"
    tether.mkdir()
    window = _staff_window(tmp_path, test_model_path, f"hotfolder:{tether}", open_window)
    _fill_patient(window)
    qtbot.waitUntil(lambda: window.session.model_ready, timeout=WAIT_MS)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(skin_rgb, cv2.COLOR_RGB2BGR))
    assert ok
    (tether / "DSC_0001.JPG").write_bytes(jpeg.tobytes())
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    assert window.outcome is not None
    assert window.outcome.source == f"hotfolder:{tether}/DSC_0001.JPG"
    assert window.outcome.judgement.accepted and window.submit_button.isEnabled()
    # stored, so marked done: a restart does not offer it again (the watcher's saved state)
    from desktop_app.core.sources import HotFolderWatcher

    assert HotFolderWatcher(tether, settle_s=0).poll() == []
    (tether / "DSC_0002.JPG").write_bytes(b"truncated")
    qtbot.waitUntil(lambda: "DSC_0002.JPG" in window.verdict_label.text(), timeout=WAIT_MS)


# ---- kiosk ----------------------------------------------------------------------------------


def _kiosk(tmp_path: Path, model: Path, source: str, open_window: Callable, **settings: object):
    from desktop_app.qt.windows.kiosk import KioskWindow

    window = open_window(KioskWindow(_services(tmp_path, model, source, **settings)))
    assert isinstance(window, KioskWindow)
    return window


def _still_camera_kiosk(
    tmp_path: Path, model: Path, folder: Path, open_window: Callable, **settings: object
):
    """A kiosk on a still camera (its photos are sent like a real camera's), quick auto-capture."""
    return _kiosk(
        tmp_path, model, f"still-camera:{folder}", open_window, auto_capture_hold_s=0.3, **settings
    )


def _kiosk_photo(
    qtbot: QtBot, kiosk: Any, code: str = "", site: str = "Forearm (left)"
) -> CaptureOutcome:
    """One patient: check-in number, Start, the body site, then the photo taken by itself."""
    kiosk.code_edit.setText(code)
    qtbot.mouseClick(kiosk.start_button, Qt.MouseButton.LeftButton)
    assert kiosk.pages.currentWidget() is kiosk.site_page
    qtbot.mouseClick(kiosk.site_buttons[site], Qt.MouseButton.LeftButton)
    assert kiosk.pages.currentWidget() is kiosk.capture_page
    # no button press: the photo is taken by itself once the picture is good and steady
    qtbot.waitUntil(lambda: kiosk.outcome is not None, timeout=WAIT_MS)
    assert kiosk.outcome is not None
    return kiosk.outcome


def test_kiosk_leaving_needs_the_staff_pin(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, sharp_folder: Path, open_window: Callable
) -> None:
    kiosk = _kiosk(tmp_path, test_model_path, str(sharp_folder), open_window)
    assert kiosk.close() is False and kiosk.isVisible()  # closing is refused...
    assert kiosk.pages.currentWidget() is kiosk.pin_pad  # ...and asks for the PIN
    qtbot.keyClick(kiosk, Qt.Key.Key_Escape)
    assert kiosk.isVisible()
    for digit in "1111":
        qtbot.mouseClick(kiosk.pin_pad.digit_buttons[digit], Qt.MouseButton.LeftButton)
    qtbot.mouseClick(kiosk.pin_pad.ok_button, Qt.MouseButton.LeftButton)
    assert kiosk.isVisible() and "Wrong PIN" in kiosk.pin_pad.message.text()
    for _ in range(4):
        kiosk.pin_pad.entry.setText("0000")
        kiosk._on_pin_ok()
    assert "Too many wrong PINs" in kiosk.pin_pad.message.text()
    kiosk.pin_pad.entry.setText(DEFAULT_KIOSK_PIN)
    kiosk._on_pin_ok()  # even the right PIN waits out the lockout
    assert kiosk.isVisible() and not kiosk.unlocked
    kiosk.pin_lockout.clear()  # the core object, as after the wait
    for digit in DEFAULT_KIOSK_PIN:
        qtbot.mouseClick(kiosk.pin_pad.digit_buttons[digit], Qt.MouseButton.LeftButton)
    qtbot.mouseClick(kiosk.pin_pad.ok_button, Qt.MouseButton.LeftButton)
    assert kiosk.unlocked and not kiosk.isVisible()
    assert kiosk.closed_cleanly is True


def test_kiosk_changed_pin_replaces_default(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, sharp_folder: Path, open_window: Callable
) -> None:
    from desktop_app.core.settings import hash_pin

    kiosk = _kiosk(
        tmp_path,
        test_model_path,
        str(sharp_folder),
        open_window,
        kiosk_pin_hash=hash_pin("8642", iterations=1000),
    )
    kiosk._on_staff()
    kiosk.pin_pad.entry.setText(DEFAULT_KIOSK_PIN)
    kiosk._on_pin_ok()
    assert not kiosk.unlocked
    kiosk.pin_pad.entry.setText("8642")
    kiosk._on_pin_ok()
    assert kiosk.unlocked


def test_kiosk_auto_capture_send_and_idle_reset(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, sharp_folder: Path, open_window: Callable
) -> None:
    kiosk = _still_camera_kiosk(tmp_path, test_model_path, sharp_folder, open_window)
    assert kiosk.session.auto_capture_on
    outcome = _kiosk_photo(qtbot, kiosk, "A-17")
    assert outcome.can_submit
    assert kiosk.send_button.isVisible() and kiosk.send_button.minimumHeight() >= 96
    record = outcome.record
    assert record is not None and record.info.mode == "kiosk"
    assert record.info.patient_ref == "A-17"
    # the patient walks away: after the idle time and a warning the screen is cleared
    kiosk._on_idle_timeout()
    for _ in range(kiosk.countdown.seconds):
        kiosk._on_countdown_tick()
    assert kiosk.pages.currentWidget() is kiosk.welcome_page
    assert kiosk.outcome is None and kiosk.code_edit.text() == ""
    qtbot.wait(300)  # live frames keep coming from the camera meanwhile
    assert kiosk.live.showing_outcome is None and not kiosk.live.frame_view.has_image()
    assert kiosk.resets == 1
    # next patient: send goes through
    sent = _kiosk_photo(qtbot, kiosk).record
    qtbot.mouseClick(kiosk.send_button, Qt.MouseButton.LeftButton)
    assert kiosk.pages.currentWidget() is kiosk.thanks_page
    assert not kiosk.live.frame_view.has_image()
    store = kiosk.services.store
    assert store is not None and sent is not None
    qtbot.waitUntil(lambda: store.get(sent.id).state == "submitted", timeout=WAIT_MS)


def test_kiosk_has_no_gallery_or_settings(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, sharp_folder: Path, open_window: Callable
) -> None:
    from desktop_app.qt.views.gallery import GalleryWidget
    from desktop_app.qt.windows.settings_dialog import SettingsDialog

    kiosk = _kiosk(tmp_path, test_model_path, str(sharp_folder), open_window)
    assert not kiosk.findChildren(GalleryWidget)
    assert not kiosk.findChildren(SettingsDialog)
    texts = [b.text() for b in kiosk.findChildren(type(kiosk.start_button))]
    assert not any("Settings" in t or "Review" in t for t in texts)


# ---- start-up -------------------------------------------------------------------------------


def test_no_display_falls_back_to_offscreen(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if not os.sys.platform.startswith("linux"):
        pytest.skip("Linux display variables")
    for var in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    with caplog.at_level(logging.WARNING):
        ensure_display()
    assert os.environ["QT_QPA_PLATFORM"] == "offscreen"
    assert "No display found" in caplog.text
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    ensure_display()
    assert os.environ["QT_QPA_PLATFORM"] == "xcb"  # an explicit choice is respected


def test_unknown_source_falls_back_to_demo_with_note(tmp_path: Path) -> None:
    services = _services(tmp_path, None, str(tmp_path / "no-such-video.mp4"))
    assert services.source.kind == "demo"
    assert "Unknown source" in services.source_note
    if services.store is not None:
        services.store.close()


def test_settings_dialog_validates_and_returns_copy(qtbot: QtBot, tmp_path: Path) -> None:
    from desktop_app.qt.windows.settings_dialog import SettingsDialog

    settings = AppSettings(camera="demo")
    dialog = SettingsDialog(settings, None)
    qtbot.addWidget(dialog)
    assert dialog.camera_combo.currentData() == "demo"
    assert dialog.resolution_combo.currentText() == "1280 x 720"
    dialog.pin_edit.setText("1357")
    dialog.pin_confirm.setText("1358")
    dialog._on_accept()
    assert "differ" in dialog.error_label.text()
    dialog.pin_confirm.setText("1357")
    dialog.resolution_combo.setCurrentIndex(dialog.resolution_combo.findData("1920x1080"))
    dialog.target_combo.setCurrentIndex(dialog.target_combo.findData("dicomweb"))
    dialog.url_edit.setText("pacs:8042")
    dialog._on_accept()
    assert "http://" in dialog.error_label.text()
    dialog.url_edit.setText("http://pacs:8042/dicom-web")
    dialog._on_accept()
    new = dialog.result_settings()
    assert new.resolution == (1920, 1080) and new.submission["kind"] == "dicomweb"
    assert dialog.new_pin() == "1357"
    assert settings.resolution == (1280, 720)  # the original is untouched


def test_installed_pyside_keeps_reference_counts() -> None:
    """The installed PySide6 must not be one that aborts the app (see qt/compat.py)."""
    from desktop_app.qt.compat import pyside_refcount_problem

    assert pyside_refcount_problem() == ""


DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "resources" / "models" / "default-int8.onnx"
REAL_PHOTO = "data/rated/images/cal-004.jpg"  # rated 5, 5, 5, 5 by the four raters


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.parametrize("blurred", [False, True], ids=["sharp", "blurred"])
def test_default_model_gates_a_real_photo(
    qtbot: QtBot,
    tmp_path: Path,
    shared_dir: Path,
    open_window: Callable,
    blurred: bool,
) -> None:
    """The shipped model on a real clinical photo (from ../shared): sharp passes, blur does not."""
    if not DEFAULT_MODEL.is_file():
        pytest.skip("no default model in resources/models")
    rgb = cv2.cvtColor(cv2.imread(str(shared_dir / REAL_PHOTO)), cv2.COLOR_BGR2RGB)
    if blurred:
        rgb = cv2.GaussianBlur(rgb, (0, 0), 5)
    folder = write_frame_folder(tmp_path / "real", rgb)
    window = _staff_window(tmp_path, DEFAULT_MODEL, f"still-camera:{folder}", open_window)
    _wait_live(qtbot, window)
    _fill_patient(window)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=60_000)
    outcome = window.outcome
    assert outcome is not None and outcome.record is not None
    if blurred:
        assert not outcome.judgement.accepted and not window.submit_button.isEnabled()
        assert "Hold steady / focus" in window.submit_reason.text()
    else:
        assert outcome.judgement.accepted and window.submit_button.isEnabled()


def test_gallery_says_when_the_heat_map_comes_from_another_model(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, sharp_folder: Path, open_window: Callable
) -> None:
    from store_helpers import make_info

    window = _staff_window(tmp_path, test_model_path, str(sharp_folder), open_window)
    qtbot.waitUntil(lambda: window.session.model_ready, timeout=WAIT_MS)
    store = window.services.store
    assert store is not None
    image = render_skin(120, 160, seed=3)
    old = store.add(image, make_info(model_version="0.9-old", accepted=False, score=0.2)).id
    gallery = window.gallery
    window.tabs.setCurrentWidget(gallery)
    gallery.refresh()
    qtbot.waitUntil(lambda: gallery.select(old), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: gallery.view.heat is not None, timeout=WAIT_MS)
    message = gallery.action_message.text()
    assert "0.9-old" in message and window.session.model_info is not None
    assert window.session.model_info.version in message


def test_replayed_frames_are_marked_and_never_submitted(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, sharp_folder: Path, open_window: Callable
) -> None:
    window = _staff_window(tmp_path, test_model_path, str(sharp_folder), open_window)
    _wait_live(qtbot, window)
    assert window.live.banner_text == PRACTICE_BANNER  # says plainly: not a camera
    _fill_patient(window)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    outcome = window.outcome
    assert outcome is not None and outcome.judgement.accepted and outcome.record is not None
    assert not window.submit_button.isEnabled() and not outcome.can_submit
    assert "never sent" in window.submit_reason.text()
    qtbot.keyClick(window, Qt.Key.Key_Return)  # Enter cannot send it either
    store = window.services.store
    assert store is not None and store.get(outcome.record.id).state == "accepted"  # kept
    assert window.services.queue is not None
    assert window.services.queue.status().queued == 0


def test_kiosk_says_a_staff_member_is_needed_when_the_photo_cannot_go(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, sharp_folder: Path, open_window: Callable
) -> None:
    from desktop_app.qt.windows.kiosk import THANKS_NEEDS_STAFF

    kiosk = _still_camera_kiosk(
        tmp_path,
        test_model_path,
        sharp_folder,
        open_window,
        submission={"kind": "dicomweb", "url": "http://127.0.0.1:9/dicom-web"},
    )
    outcome = _kiosk_photo(qtbot, kiosk, "")  # no check-in number: the PACS would refuse it
    assert outcome.can_submit
    record = outcome.record
    qtbot.mouseClick(kiosk.send_button, Qt.MouseButton.LeftButton)
    assert kiosk.pages.currentWidget() is kiosk.thanks_page
    assert kiosk.thanks_label.text() == THANKS_NEEDS_STAFF
    store = kiosk.services.store
    assert store is not None and record is not None
    assert store.get(record.id).state == "accepted"  # kept for staff, not queued, not failed


def test_kiosk_check_in_number_goes_through_the_patient_id_rule(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, sharp_folder: Path, open_window: Callable
) -> None:
    """A mistyped check-in number ties a photo to the wrong person just like a staff-typed ID:
    it is refused with a plain message for the patient, and a valid one is stored normalised."""
    kiosk = _still_camera_kiosk(tmp_path, test_model_path, sharp_folder, open_window)
    kiosk.code_edit.setText("A-17  r r")  # two spaces: a stray key typed into it
    qtbot.mouseClick(kiosk.start_button, Qt.MouseButton.LeftButton)
    assert kiosk.pages.currentWidget() is kiosk.welcome_page
    assert kiosk.code_message.isVisible()
    shown = kiosk.code_message.text()
    assert "check the number" in shown and "patient ID" not in shown
    message = kiosk.code_message  # all of it is on screen, not cut to a line
    assert message.heightForWidth(message.width()) > 0
    qtbot.waitUntil(
        lambda: message.height() >= message.heightForWidth(message.width()), timeout=2000
    )
    qtbot.keyClicks(kiosk.code_edit, "x")  # typing again clears the message
    assert not kiosk.code_message.isVisible()
    outcome = _kiosk_photo(qtbot, kiosk, "  A-18\u0301 ")  # blanks trimmed, composed to NFC
    assert outcome.record is not None
    assert outcome.record.info.patient_ref == unicodedata.normalize("NFC", "A-18\u0301")
    assert not kiosk.code_message.isVisible()


def test_check_in_number_rule_in_core() -> None:
    from desktop_app.core.patient_ref import (
        PatientRefProblem,
        normalise_check_in_number,
    )

    assert normalise_check_in_number("") == "" and normalise_check_in_number("   ") == ""
    assert normalise_check_in_number(" B-2 ") == "B-2"
    for bad in ("B-2\tx", "B  2", "B\u200b2", "9" * 65):
        assert isinstance(normalise_check_in_number(bad), PatientRefProblem), bad
