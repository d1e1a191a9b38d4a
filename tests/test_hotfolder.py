"""Hot folder: size-stable files once each, persisted; bad files reported, never raised."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest
from store_helpers import encode, make_info, smooth_image

from desktop_app.core.capture import CaptureContext, CaptureOutcome, process_capture
from desktop_app.core.sources import Frame, HotFolderSource, HotFolderWatcher
from desktop_app.core.store import CaptureStore


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    f = tmp_path / "hot"
    f.mkdir()
    return f


def _watcher(folder: Path, settle_s: float = 0.0) -> HotFolderWatcher:
    return HotFolderWatcher(folder, settle_s=settle_s, state_path=folder.parent / "seen.json")


def test_file_is_reported_once_after_it_settles(folder: Path) -> None:
    image = smooth_image(seed=1)
    (folder / "a.jpg").write_bytes(encode(image, "JPEG", quality=95))
    watcher = _watcher(folder, settle_s=0.15)
    assert watcher.poll() == []  # first sight: not yet stable
    time.sleep(0.2)
    events = watcher.poll()
    assert len(events) == 1 and events[0].ok and events[0].error is None
    assert events[0].image_rgb is not None and events[0].image_rgb.shape == image.shape
    assert events[0].encoded == (folder / "a.jpg").read_bytes()
    assert events[0].source == f"hotfolder:{folder / 'a.jpg'}"
    assert watcher.poll() == []


def test_growing_file_waits_until_complete(folder: Path) -> None:
    data = encode(smooth_image(seed=2), "PNG")
    path = folder / "b.png"
    path.write_bytes(data[: len(data) // 2])
    watcher = _watcher(folder, settle_s=0.1)
    assert watcher.poll() == []
    time.sleep(0.05)
    with path.open("ab") as fh:
        fh.write(data[len(data) // 2 :])
    os.utime(path, ns=(time.time_ns(), time.time_ns()))
    time.sleep(0.12)
    assert watcher.poll() == []  # changed since last look: the settle time starts again
    time.sleep(0.12)
    events = watcher.poll()
    assert len(events) == 1 and events[0].ok


def test_bad_files_are_reported_once_each_never_raised(folder: Path) -> None:
    good = encode(smooth_image(seed=3), "JPEG")
    (folder / "good.jpg").write_bytes(good)
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not a photo")
    (folder / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (folder / ".hidden.jpg").write_bytes(good)
    (folder / "copying.jpg.part").write_bytes(good[:10])
    (folder / "Thumbs.db").write_bytes(b"\x00" * 10)
    (folder / "subfolder").mkdir()
    watcher = _watcher(folder)
    events = {e.path.name: e for e in watcher.poll()}
    assert sorted(events) == ["empty.jpg", "fake.png", "good.jpg", "notes.txt", "truncated.jpg"]
    assert events["good.jpg"].ok
    assert "empty" in str(events["empty.jpg"].error)
    assert "not a readable image" in str(events["notes.txt"].error)
    assert "damaged or truncated" in str(events["truncated.jpg"].error)
    assert not events["fake.png"].ok and events["fake.png"].image_rgb is None
    assert watcher.poll() == []


def test_seen_set_survives_restart_and_replaced_files_come_again(folder: Path) -> None:
    (folder / "a.jpg").write_bytes(encode(smooth_image(seed=4), "JPEG"))
    assert len(_watcher(folder).poll()) == 1
    restarted = _watcher(folder)
    assert restarted.poll() == []
    (folder / "a.jpg").write_bytes(encode(smooth_image(64, 64, seed=5), "JPEG"))
    events = restarted.poll()
    assert len(events) == 1 and events[0].image_rgb is not None
    assert events[0].image_rgb.shape == (64, 64, 3)
    assert events[0].replaced  # staff are told; the earlier photo stays in the store
    restarted.forget(folder / "a.jpg")
    assert len(_watcher(folder).poll()) == 1


def test_a_replaced_file_comes_as_a_capture_with_a_notice_for_staff(folder: Path) -> None:
    """The app's source: a name stored once and then overwritten by another photo is imported
    again, and its frame says so (a new name, or a first read, says nothing)."""
    source = HotFolderSource(
        folder, poll_interval_s=100.0, settle_s=0.0, state_path=folder.parent / "seen.json"
    )
    source.open()
    (folder / "IMG_1.jpg").write_bytes(encode(smooth_image(seed=11), "JPEG"))
    first = source.read()
    assert first is not None and first.is_capture and first.notice == ""
    assert first.on_stored is not None
    first.on_stored()  # stored: now the name counts as imported
    (folder / "IMG_1.jpg").write_bytes(encode(smooth_image(48, 48, seed=12), "JPEG"))
    (folder / "IMG_2.jpg").write_bytes(encode(smooth_image(seed=13), "JPEG"))
    frames = [source.read(), source.read()]
    by_name = {f.label: f for f in frames if f is not None}
    assert "IMG_1.jpg" in by_name["IMG_1.jpg"].notice
    assert "replaced by a newer file" in by_name["IMG_1.jpg"].notice
    assert "kept in Review" in by_name["IMG_1.jpg"].notice
    assert by_name["IMG_2.jpg"].notice == ""


def test_damaged_state_file_means_files_are_offered_again(folder: Path) -> None:
    (folder / "a.jpg").write_bytes(encode(smooth_image(seed=6), "JPEG"))
    assert len(_watcher(folder).poll()) == 1
    (folder.parent / "seen.json").write_text('{"seen": {"a.jpg": "oops"')
    assert len(_watcher(folder).poll()) == 1


def test_missing_folder_is_reported_once_then_picked_up(tmp_path: Path) -> None:
    folder = tmp_path / "later"
    watcher = _watcher(folder)
    first = watcher.poll()
    assert len(first) == 1 and "does not exist" in str(first[0].error)
    assert watcher.poll() == []
    folder.mkdir()
    (folder / "a.webp").write_bytes(encode(smooth_image(seed=7), "WEBP", lossless=True))
    events = watcher.poll()
    assert len(events) == 1 and events[0].ok


def test_default_state_path_is_in_app_data(isolated_app_dirs: Path, folder: Path) -> None:
    (folder / "a.jpg").write_bytes(encode(smooth_image(seed=8), "JPEG"))
    watcher = HotFolderWatcher(folder, settle_s=0)
    assert len(watcher.poll()) == 1
    assert watcher.state_path.is_relative_to(isolated_app_dirs / "data")
    assert watcher.state_path.exists()


def test_hot_folder_file_into_store_keeps_pixels(folder: Path, tmp_path: Path) -> None:
    image = smooth_image(seed=9)
    (folder / "cam.jpg").write_bytes(encode(image, "JPEG", quality=92))
    (event,) = _watcher(folder).poll()
    assert event.image_rgb is not None
    with CaptureStore(tmp_path / "store") as store:
        record = store.add(event.image_rgb, make_info(source=event.source), encoded=event.encoded)
        assert np.array_equal(store.load_image(record.id), event.image_rgb)
        assert store.get(record.id).info.source.startswith("hotfolder:")


def test_manual_acknowledge_offers_unsaved_files_again_after_a_crash(folder: Path) -> None:
    for name in ("a.jpg", "b.jpg"):
        (folder / name).write_bytes(encode(smooth_image(seed=len(name)), "JPEG"))
    state = folder.parent / "seen.json"
    watcher = HotFolderWatcher(folder, settle_s=0, state_path=state, auto_acknowledge=False)
    events = {e.path.name: e for e in watcher.poll()}
    assert sorted(events) == ["a.jpg", "b.jpg"]
    assert watcher.poll() == []  # not offered twice within one run
    watcher.acknowledge(events["a.jpg"])  # a.jpg was saved; the app dies before saving b.jpg
    restarted = HotFolderWatcher(folder, settle_s=0, state_path=state, auto_acknowledge=False)
    assert [e.path.name for e in restarted.poll()] == ["b.jpg"]


# ---- the app's hot-folder source: a file is done only once it is stored -----------------------


def _source(folder: Path, problems: list[str] | None = None) -> HotFolderSource:
    source = HotFolderSource(
        folder,
        poll_interval_s=0.001,
        settle_s=0.0,
        state_path=folder.parent / "seen.json",
        on_problem=(problems.append if problems is not None else None),
    )
    source.open()
    return source


def _frames(source: HotFolderSource, polls: int = 3) -> list[Frame]:
    frames = []
    for _ in range(polls):
        frame = source.read()
        if frame is not None:
            frames.append(frame)
    return frames


def _ingest(store: CaptureStore, frame: Frame, acknowledge: bool) -> CaptureOutcome:
    context = CaptureContext("staff", "nurse-a", "P-1", "left forearm", "")
    return process_capture(
        None,
        store,
        frame.image,
        frame.colour_order,
        context,
        f"hotfolder:/tether/{frame.label}",
        frame.encoded,
        on_stored=frame.on_stored if acknowledge else None,
    )


def test_a_file_read_but_not_stored_before_a_crash_is_offered_again(folder: Path) -> None:
    (folder / "IMG_1.jpg").write_bytes(encode(smooth_image(seed=20), "JPEG"))
    (frame,) = _frames(_source(folder))
    assert frame.label == "IMG_1.jpg" and frame.on_stored is not None
    # the app dies before the photo is stored: after the restart the file comes again
    assert [f.label for f in _frames(_source(folder))] == ["IMG_1.jpg"]


def test_a_file_stored_but_not_marked_done_is_offered_again_and_not_stored_twice(
    folder: Path, store: CaptureStore
) -> None:
    (folder / "IMG_1.jpg").write_bytes(encode(smooth_image(seed=21), "JPEG"))
    (folder / "IMG_2.png").write_bytes(encode(smooth_image(seed=22), "PNG"))
    first = {f.label: f for f in _frames(_source(folder))}
    assert sorted(first) == ["IMG_1.jpg", "IMG_2.png"]
    stored = _ingest(store, first["IMG_1.jpg"], acknowledge=False).record  # killed before ack
    assert stored is not None
    again = {f.label: f for f in _frames(_source(folder))}
    assert sorted(again) == ["IMG_1.jpg", "IMG_2.png"]  # nothing skipped
    outcomes = {name: _ingest(store, f, acknowledge=True) for name, f in again.items()}
    record = outcomes["IMG_1.jpg"].record
    assert record is not None and record.id == stored.id  # the same capture, not a second one
    assert len(store.list()) == 2
    assert _frames(_source(folder)) == []  # both done now


def test_a_photo_recovered_from_an_interrupted_save_is_not_stored_twice(tmp_path: Path) -> None:
    data = encode(smooth_image(seed=23), "JPEG")
    with CaptureStore(tmp_path / "store") as s:
        record = s.add(smooth_image(seed=23), make_info(), encoded=data, dedupe=True)
        s._conn.execute("DELETE FROM captures")  # killed before the row was committed
    with CaptureStore(tmp_path / "store") as s:
        assert s.startup_report.recovered == [record.id]
        again = s.add(smooth_image(seed=23), make_info(), encoded=data, dedupe=True)
        assert again.id == record.id and len(s.list()) == 1


def test_camera_captures_are_never_deduplicated(store: CaptureStore) -> None:
    image = smooth_image(seed=24)
    a = store.add(image, make_info())
    b = store.add(image, make_info())  # the same pixels twice (a still scene): two captures
    assert a.id != b.id and len(store.list()) == 2


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_links_and_pipes_are_skipped_and_reported_by_count_without_names(
    folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (folder / "Smith_John.jpg").write_bytes(encode(smooth_image(seed=25), "JPEG"))
    outside = tmp_path / "Doe_Jane.jpg"
    outside.write_bytes(encode(smooth_image(seed=26), "JPEG"))
    (folder / "Doe_Jane_link.jpg").symlink_to(outside)
    os.mkfifo(folder / "Roe_Rita.jpg")
    problems: list[str] = []
    with caplog.at_level(logging.INFO):
        source = _source(folder, problems)
        frames = _frames(source)
    assert [f.label for f in frames] == ["Smith_John.jpg"]
    assert problems == [
        "Skipped 2 files that are not a regular file (a link, pipe or device) in the hot "
        "folder: copy the photo itself into the folder to import it."
    ]
    assert source._watcher is not None and source._watcher.skipped_message == problems[0]
    assert "2 new entries" in caplog.text
    for name in ("Smith", "Doe", "Roe"):
        assert name not in caplog.text
    assert _frames(source) == [] and len(problems) == 1  # reported once, not at every poll
    (folder / "Roe_Rita2.jpg").symlink_to(outside)
    _frames(source)
    assert problems[-1].startswith("Skipped 1 file that is not a regular file")


def test_a_stored_photo_whose_file_is_gone_is_stored_again(store: CaptureStore) -> None:
    data = encode(smooth_image(seed=27), "JPEG")
    first = store.add(smooth_image(seed=27), make_info(), encoded=data, dedupe=True)
    first.image_path.unlink()
    again = store.add(smooth_image(seed=27), make_info(), encoded=data, dedupe=True)
    assert again.id != first.id and again.image_path.is_file()
