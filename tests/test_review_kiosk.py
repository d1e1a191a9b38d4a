"""Review (gallery) and patient kiosk findings of issue 20 (pytest-qt, offscreen).

Review: a decision belongs to one photo, needs a typed reviewer and a reason from the fixed list,
is confirmed before a photo is sent, and thumbnails say whose photo of which site it is. Accepted
photos that were not sent (no ID yet, kiosk patient gone, window closing) are not a dead end.
Kiosk: a rejection points at the step it concerns, in plain words; the body site is asked; the
idle clear warns first; the PIN keypad keeps its width.
"""

# ruff: noqa: F811  (the fixtures imported from test_app_qt are taken by name as arguments)
from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot
from store_helpers import make_info
from test_app_qt import (  # noqa: F401
    WAIT_MS,
    _fill_patient,
    _kiosk_photo,
    _staff_window,
    _still_camera_kiosk,
    _wait_live,
    open_window,
)

from desktop_app.core.demo_scene import render_skin
from desktop_app.core.gating import REASON_GUIDANCE, GateState, GateView
from desktop_app.core.kiosk_flow import (
    KIOSK_BODY_SITES,
    PATIENT_PHRASES,
    STEP_AIM,
    STEP_HOLD,
    STEP_NONE,
    STEP_SEND,
    STEP_UNCOVER,
    STEPS,
    IdleCountdown,
    live_message,
    live_step,
    patient_phrase,
    step_for_reason,
    verdict_for,
)
from desktop_app.core.review import (
    OVERRIDE_REASONS,
    details_blocker,
    override_blocker,
    quit_warning,
    send_blocker,
    unsent_accepted,
)
from desktop_app.core.settings import BODY_SITES
from desktop_app.core.store import CaptureStore, reasons_named_in
from desktop_app.qt.views.gallery import FILTERS, NEEDS_REVIEWER, describe

JARGON = ("quality", "threshold", "score", "focus", "needs 0", "exposure", "blur")


class Answers:
    """Stands in for QMessageBox.question: records each question, answers from a list."""

    def __init__(self, *answers: QMessageBox.StandardButton) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    def __call__(self, parent: object, title: str, text: str, *args: Any) -> Any:
        self.asked.append(text)
        return self.answers.pop(0)


def _add(store: CaptureStore, seed: int, **info: Any) -> str:
    return store.add(render_skin(96, 128, seed=seed), make_info(**info)).id


def _rejected(store: CaptureStore, seed: int, patient: str) -> str:
    return _add(
        store,
        seed,
        patient_ref=patient,
        body_site="Forearm (left)",
        accepted=False,
        score=0.2,
        reasons={"blur": 0.9},
    )


# ---- finding 5: review overrides -------------------------------------------------------------


def test_override_reason_is_per_photo_from_the_fixed_list_and_reviewer_is_typed(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, sharp_folder: Path, open_window: Callable
) -> None:
    window = _staff_window(tmp_path, test_model_path, str(sharp_folder), open_window)
    store = window.services.store
    assert store is not None
    first, second = _rejected(store, 1, "ENC-1"), _rejected(store, 2, "ENC-2")
    gallery = window.gallery
    window.tabs.setCurrentWidget(gallery)
    gallery.refresh()
    # not pre-filled with the login or the Settings operator ("nurse-test")
    assert gallery.reviewer_edit.text() == ""
    combo = gallery.override_reason
    assert not combo.isEditable()
    assert [combo.itemText(i) for i in range(1, combo.count())] == list(OVERRIDE_REASONS)
    assert gallery.select(first)
    assert gallery.action_message.text() == NEEDS_REVIEWER
    gallery.reviewer_edit.setText("Dr Derm")
    assert gallery.action_message.text() == ""  # the hint goes once a name is typed
    assert not gallery.override_button.isEnabled()  # no reason chosen yet
    combo.setCurrentIndex(2)
    assert gallery.override_button.isEnabled()
    gallery.patient_edit.setText("ENC-1b")
    gallery.refresh()  # the list reloads (e.g. a photo was sent): the choice for it stays
    assert combo.currentIndex() == 2 and gallery.patient_edit.text() == "ENC-1b"
    # another photo: the reason chosen for the first one does not carry over
    assert gallery.select(second)
    assert combo.currentIndex() == 0 and not gallery.override_button.isEnabled()
    assert gallery.reviewer_edit.text() == "Dr Derm"  # the reviewer stays for this session
    assert gallery.select(first)
    assert combo.currentIndex() == 0 and not gallery.override_button.isEnabled()


def test_thumbnails_show_patient_id_and_body_site(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, sharp_folder: Path, open_window: Callable
) -> None:
    window = _staff_window(tmp_path, test_model_path, str(sharp_folder), open_window)
    store = window.services.store
    assert store is not None
    _rejected(store, 1, "ENC-77")
    _add(store, 3, patient_ref="", body_site="", accepted=False, score=0.1)
    gallery = window.gallery
    gallery.refresh()
    captions = [gallery.list.item(i).text() for i in range(gallery.list.count())]
    assert any("ENC-77" in c and "Forearm (left)" in c for c in captions)
    assert any("No patient ID" in c and "no body site" in c for c in captions)


def test_accept_anyway_asks_before_sending(
    qtbot: QtBot,
    tmp_path: Path,
    test_model_path: Path,
    sharp_folder: Path,
    open_window: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    window = _staff_window(tmp_path, test_model_path, str(sharp_folder), open_window)
    store = window.services.store
    assert store is not None
    capture = _rejected(store, 1, "ENC-5")
    gallery = window.gallery
    gallery.refresh()
    assert gallery.select(capture)
    gallery.reviewer_edit.setText("Dr Derm")
    gallery.override_reason.setCurrentText(OVERRIDE_REASONS[1])
    answers = Answers(QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes)
    monkeypatch.setattr(QMessageBox, "question", answers)
    qtbot.mouseClick(gallery.override_button, Qt.MouseButton.LeftButton)
    assert store.get(capture).state == "rejected"  # "No": nothing changed, nothing sent
    assert "ENC-5" in answers.asked[0] and "Forearm (left)" in answers.asked[0]
    assert OVERRIDE_REASONS[1] in answers.asked[0]
    assert gallery.select(capture)
    gallery.override_reason.setCurrentText(OVERRIDE_REASONS[1])
    qtbot.mouseClick(gallery.override_button, Qt.MouseButton.LeftButton)
    record = store.get(capture)
    assert record.state in ("overridden", "queued", "submitted")
    assert record.review_reason == OVERRIDE_REASONS[1] and record.reviewer == "Dr Derm"
    qtbot.waitUntil(lambda: store.get(capture).state == "submitted", timeout=WAIT_MS)


def test_review_rules_in_core() -> None:
    from desktop_app.core.store import CaptureRecord

    record = CaptureRecord(
        "c1", "2026-12-03T10:00:00+00:00", Path("x.jpg"), make_info(accepted=False), "rejected",
        None, None, None, 0, None, None, None,
    )  # fmt: skip
    assert override_blocker(record, "", OVERRIDE_REASONS[0])  # reviewer needed
    assert override_blocker(record, "Dr A", "looks fine to me")  # free text is not a reason
    assert override_blocker(record, "Dr A", OVERRIDE_REASONS[0]) == ""
    # the fixed reasons name faults in the words the training export reads
    assert reasons_named_in(OVERRIDE_REASONS[1]) == {"blur"}
    assert reasons_named_in(OVERRIDE_REASONS[0]) == set()


def test_review_details_use_the_capture_time_patient_id_rule() -> None:
    """Completing a photo's details in Review refuses the same mistyped IDs as the staff window
    (a capture shortcut typed into the ID), not only an empty one."""
    assert details_blocker("P-1001", "Face") == ""
    assert "two spaces" in details_blocker("P-1001  r r", "Face")
    assert "tab" in details_blocker("P-1001\tx", "Face")
    assert details_blocker("", "Face")
    assert details_blocker("P-1001", "Somewhere")


# ---- finding 6: accepted but unsent photos ---------------------------------------------------


def test_review_completes_and_sends_an_accepted_photo_that_had_no_id(
    qtbot: QtBot,
    tmp_path: Path,
    test_model_path: Path,
    sharp_folder: Path,
    open_window: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    window = _staff_window(tmp_path, test_model_path, str(sharp_folder), open_window)
    store = window.services.store
    assert store is not None
    # a tethered camera's photo that arrived before an ID was typed
    capture = _add(store, 4, patient_ref="", body_site="", source="hotfolder:/tether/DSC_7.JPG")
    before = store.get(capture)
    gallery = window.gallery
    window.tabs.setCurrentWidget(gallery)
    gallery.filter_combo.setCurrentText("Accepted, not sent")
    assert gallery.list.count() == 1 and "accepted, not sent" in gallery.list.item(0).text()
    assert gallery.select(capture)
    assert not gallery.send_button.isEnabled()
    gallery.reviewer_edit.setText("Dr Derm")
    gallery.patient_edit.setText("ENC-900")
    assert not gallery.send_button.isEnabled()  # the body site is still missing
    gallery.site_combo.setCurrentText("Hand (right)")
    assert gallery.send_button.isEnabled()
    answers = Answers(QMessageBox.StandardButton.Yes)
    monkeypatch.setattr(QMessageBox, "question", answers)
    qtbot.mouseClick(gallery.send_button, Qt.MouseButton.LeftButton)
    assert "ENC-900" in answers.asked[0] and "Hand (right)" in answers.asked[0]
    record = store.get(capture)
    assert record.info.patient_ref == "ENC-900" and record.info.body_site == "Hand (right)"
    assert record.study_uid != before.study_uid  # filed under the patient's study now
    assert record.sop_instance_uid == before.sop_instance_uid
    assert any(h["action"] == "details" and h["actor"] == "Dr Derm" for h in store.history(capture))
    qtbot.waitUntil(lambda: store.get(capture).state == "submitted", timeout=WAIT_MS)
    # the list follows the queue: the photo leaves "Accepted, not sent" once it is queued/sent
    qtbot.waitUntil(lambda: gallery.list.count() == 0, timeout=WAIT_MS)


def test_review_send_of_a_practice_photo_stays_off(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, sharp_folder: Path, open_window: Callable
) -> None:
    window = _staff_window(tmp_path, test_model_path, str(sharp_folder), open_window)
    store = window.services.store
    assert store is not None
    capture = _add(store, 5, patient_ref="", body_site="", source="demo")
    gallery = window.gallery
    gallery.filter_combo.setCurrentText("Accepted, not sent")
    assert not gallery.select(capture)  # it can never be sent: not listed as waiting to be sent
    gallery.filter_combo.setCurrentText("All")
    assert gallery.select(capture)
    gallery.reviewer_edit.setText("Dr Derm")
    gallery.patient_edit.setText("ENC-1")
    gallery.site_combo.setCurrentText("Face")
    assert not gallery.send_button.isEnabled()
    assert "never sent" in gallery.send_button.toolTip()


def test_kiosk_idle_clear_warns_with_a_countdown_and_keeps_the_photo(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, sharp_folder: Path, open_window: Callable
) -> None:
    kiosk = _still_camera_kiosk(tmp_path, test_model_path, sharp_folder, open_window)
    outcome = _kiosk_photo(qtbot, kiosk, "A-20", "Upper back")
    record = outcome.record
    assert record is not None
    page = kiosk.pages.geometry()
    kiosk._on_idle_timeout()  # the idle time is up: a warning, nothing cleared yet
    assert kiosk.idle_warning.isVisible()
    QApplication.processEvents()
    assert kiosk.pages.geometry() == page  # floats over the page; nothing is pushed off screen
    assert kiosk.idle_text.text() == "Are you still there? Clearing in 15 s"
    assert kiosk.pages.currentWidget() is kiosk.capture_page and kiosk.outcome is outcome
    kiosk._on_countdown_tick()
    assert kiosk.idle_text.text() == "Are you still there? Clearing in 14 s"
    qtbot.mouseClick(kiosk.still_here_button, Qt.MouseButton.LeftButton)  # still here
    assert not kiosk.idle_warning.isVisible() and kiosk.outcome is outcome
    assert kiosk.pages.currentWidget() is kiosk.capture_page
    kiosk._on_idle_timeout()  # gone this time
    for _ in range(14):
        kiosk._on_countdown_tick()
    assert kiosk.idle_text.text() == "Are you still there? Clearing in 1 s"
    assert kiosk.pages.currentWidget() is kiosk.capture_page
    kiosk._on_countdown_tick()
    assert kiosk.pages.currentWidget() is kiosk.welcome_page and kiosk.outcome is None
    assert not kiosk.idle_warning.isVisible()
    store = kiosk.services.store
    assert store is not None
    kept = store.get(record.id)  # stored, and shown in Review as accepted, not sent
    assert kept.state == "accepted" and kept.info.body_site == "Upper back"
    states = FILTERS["Accepted, not sent"]
    assert states is not None and kept.state in states
    assert "accepted, not sent" in describe(kept)
    assert [r.id for r in unsent_accepted(store.list())] == [record.id]


def test_quitting_with_an_accepted_unsent_photo_asks_first(
    qtbot: QtBot,
    tmp_path: Path,
    test_model_path: Path,
    sharp_folder: Path,
    open_window: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    window = _staff_window(tmp_path, test_model_path, f"still-camera:{sharp_folder}", open_window)
    _wait_live(qtbot, window)
    _fill_patient(window)
    qtbot.keyClick(window, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: window.outcome is not None, timeout=WAIT_MS)
    assert window.outcome is not None and window.outcome.can_submit  # on screen, not sent
    monkeypatch.delenv("SKIN_CAPTURE_NO_DIALOGS", raising=False)
    answers = Answers(QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes)
    monkeypatch.setattr(QMessageBox, "question", answers)
    assert window.close() is False and window.isVisible()  # "No": the window stays
    assert "1 accepted photo was not sent" in answers.asked[0]
    assert window.close() is True and window.closed_cleanly is True


def test_the_os_closing_the_staff_window_does_not_ask(
    qtbot: QtBot,
    tmp_path: Path,
    test_model_path: Path,
    sharp_folder: Path,
    open_window: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    window = _staff_window(tmp_path, test_model_path, str(sharp_folder), open_window)
    store = window.services.store
    assert store is not None
    _add(store, 6)  # accepted in this session, not sent
    monkeypatch.delenv("SKIN_CAPTURE_NO_DIALOGS", raising=False)

    def no_question(*args: object) -> None:
        raise AssertionError("a dialog was shown")

    monkeypatch.setattr(QMessageBox, "question", no_question)
    window.unlocked = True  # what SIGTERM / Ctrl+C and SKIN_CAPTURE_EXIT_AFTER_MS set
    assert window.close() is True and window.closed_cleanly is True


def test_quit_check_in_core_counts_only_this_sessions_sendable_photos(tmp_path: Path) -> None:
    with CaptureStore(tmp_path / "store") as store:
        old = _add(store, 1)
        since = store.get(old).created_utc
        _add(store, 2, source="demo")  # practice: never sent, nothing to warn about
        _add(store, 3, accepted=False, score=0.1)  # rejected
        new = _add(store, 4)
        unsent = unsent_accepted(store.list(), since)
        assert {r.id for r in unsent} == {old, new}
        later = store.get(new).created_utc
        assert [r.id for r in unsent_accepted(store.list(), later)] == [new]
        assert quit_warning([]) == ""
        assert "2 accepted photos were not sent" in quit_warning(unsent)
        assert send_blocker(store.get(new), "Dr A", "P-1", "Face") == ""
        assert send_blocker(store.get(new), "Dr A", "P-1", "left forearm")  # not in the list


# ---- finding 8: kiosk for patients -----------------------------------------------------------


def test_kiosk_rejection_points_at_its_step_in_plain_words(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, blurred_folder: Path, open_window: Callable
) -> None:
    kiosk = _still_camera_kiosk(tmp_path, test_model_path, blurred_folder, open_window)
    kiosk.code_edit.setText("A-3")
    qtbot.mouseClick(kiosk.start_button, Qt.MouseButton.LeftButton)
    # the body site is asked, with large buttons for the staff window's list
    assert kiosk.pages.currentWidget() is kiosk.site_page
    assert list(kiosk.site_buttons) == list(BODY_SITES)
    assert all(b.minimumHeight() >= 76 for b in kiosk.site_buttons.values())
    qtbot.mouseClick(kiosk.site_back_button, Qt.MouseButton.LeftButton)  # back and forth
    assert kiosk.pages.currentWidget() is kiosk.welcome_page and kiosk.code_edit.text() == "A-3"
    qtbot.mouseClick(kiosk.start_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(kiosk.site_buttons["Lower leg (left)"], Qt.MouseButton.LeftButton)
    assert kiosk.pages.currentWidget() is kiosk.capture_page
    qtbot.waitUntil(lambda: kiosk.session.model_ready, timeout=WAIT_MS)
    qtbot.waitUntil(
        lambda: kiosk.take_button.isEnabled() and kiosk.session.capture(), timeout=WAIT_MS
    )
    qtbot.waitUntil(lambda: kiosk.outcome is not None, timeout=WAIT_MS)
    outcome = kiosk.outcome
    assert outcome is not None and not outcome.judgement.accepted
    assert outcome.result is not None and outcome.result.reasons.get("blur", 0) >= 0.5
    active = [i for i, label in enumerate(kiosk.step_labels) if label.objectName() == "stepActive"]
    assert active == [STEP_HOLD]  # blur: "Hold still", not the aiming step
    shown = kiosk.patient_message.text()
    assert shown and not re.search(r"\d", shown)
    assert not any(word in shown.lower() for word in JARGON)
    # no score bar or staff cue for patients
    assert not kiosk.live.score_bar.isVisible() and not kiosk.live.guidance.isVisible()
    # the heat map's legend speaks plain words too
    assert not any(word in kiosk.live.frame_view.legend_text.lower() for word in JARGON)
    assert outcome.record is not None and outcome.record.info.body_site == "Lower leg (left)"


def test_kiosk_pin_pad_keeps_its_width_after_a_wrong_pin(
    qtbot: QtBot, tmp_path: Path, test_model_path: Path, sharp_folder: Path, open_window: Callable
) -> None:
    from desktop_app.core.kiosk_flow import MAX_PIN_ATTEMPTS

    kiosk = _still_camera_kiosk(tmp_path, test_model_path, sharp_folder, open_window)
    kiosk._on_staff()
    pad = kiosk.pin_pad

    def widths() -> tuple[int, QPoint]:
        QApplication.processEvents()
        return pad.ok_button.parentWidget().width(), pad.ok_button.mapTo(kiosk, QPoint(0, 0))

    before = widths()
    pad.entry.setText("1111")
    kiosk._on_pin_ok()
    assert "Wrong PIN" in pad.message.text() and widths() == before
    for _ in range(MAX_PIN_ATTEMPTS):
        pad.entry.setText("0000")
        kiosk._on_pin_ok()
    assert "Too many wrong PINs" in pad.message.text() and widths() == before


def test_kiosk_words_and_steps_in_core() -> None:
    for reason in REASON_GUIDANCE:  # every reason the model may report
        phrase = patient_phrase(reason)
        assert phrase and not re.search(r"\d", phrase), reason
        assert not any(word in phrase.lower() for word in ("focus", "threshold", "quality"))
        assert 0 <= step_for_reason(reason) < len(STEPS)
    assert set(PATIENT_PHRASES) == set(REASON_GUIDANCE)
    assert step_for_reason("blur") == step_for_reason("motion") == STEP_HOLD
    assert step_for_reason("dark") == step_for_reason("framing") == STEP_AIM
    assert step_for_reason("distance") == STEP_UNCOVER
    verdict = verdict_for(False, 0.3, {"blur": 0.9, "framing": 0.7}, True, False)
    assert verdict.step == STEP_HOLD and not verdict.good
    assert PATIENT_PHRASES["blur"] in verdict.message
    good = verdict_for(True, 0.97, {}, True, True)
    assert good.step == STEP_SEND and good.good and not re.search(r"\d", good.message)
    assert verdict_for(False, math.nan, {}, True, False).step == STEP_SEND
    # a good practice (demo) photo cannot be sent: no step points at "press Send"
    assert verdict_for(True, 0.97, {}, True, False).step == STEP_NONE
    view = GateView(GateState.RETAKE, 0.3, 0.3, 0.65, "Hold steady / focus", reason="blur")
    assert live_step(view) == STEP_HOLD and live_message(view) == PATIENT_PHRASES["blur"]
    assert KIOSK_BODY_SITES == BODY_SITES
    countdown = IdleCountdown(3)
    countdown.start()
    assert countdown.text == "Are you still there? Clearing in 3 s"
    assert [countdown.tick() for _ in range(3)] == [False, False, True]
    assert not countdown.running
