"""CaptureStore: durable writes, privacy, review, reconciliation, damaged rows, export."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import sqlite3
import stat
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from store_helpers import encode, make_info, smooth_image

from desktop_app.core.image_io import decode_rgb
from desktop_app.core.store import (
    CAPTURE_STATES,
    SCHEMA_VERSION,
    TEMP_PREFIX,
    CaptureStore,
    StorageError,
    default_store_root,
    strip_jpeg_metadata,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_default_root_honours_skin_capture_home(isolated_app_dirs: Path) -> None:
    assert default_store_root() == isolated_app_dirs / "data" / "captures"
    with CaptureStore() as s:
        assert s.root == isolated_app_dirs / "data" / "captures"
        assert s.db_path.is_file()


def test_add_persists_image_then_row_with_all_fields(store: CaptureStore) -> None:
    image = smooth_image(seed=1)
    accepted = store.add(image, make_info())
    rejected = store.add(image, make_info(score=0.2, accepted=False, mode="kiosk", patient_ref=""))
    assert accepted.state == "accepted" and rejected.state == "rejected"
    assert [r.id for r in store.list()] == [rejected.id, accepted.id]  # newest first
    assert [r.id for r in store.list(["accepted"])] == [accepted.id]
    assert store.list([]) == []
    got = store.get(accepted.id)
    assert got.info == make_info()
    assert got.image_path.suffix == ".jpg" and got.image_path.is_file()
    assert got.submission_attempts == 0 and got.remote_uid is None
    assert got.sop_instance_uid.startswith("2.25.")
    loaded = store.load_image(accepted.id)
    assert loaded.shape == image.shape and loaded.dtype == np.uint8
    assert np.abs(loaded.astype(int) - image.astype(int)).mean() < 2.0  # JPEG q95
    assert store.counts()["accepted"] == 1 and set(store.counts()) == set(CAPTURE_STATES)
    with pytest.raises(KeyError):
        store.get("c20200101T000000000000-00000000")
    with pytest.raises(ValueError, match="unknown states"):
        store.list(["bogus"])


def test_files_and_folders_are_user_only(store: CaptureStore) -> None:
    record = store.add(smooth_image(), make_info())
    assert _mode(store.root) == 0o700
    assert _mode(store.images_dir) == 0o700
    assert _mode(record.image_path.parent) == 0o700
    assert _mode(record.image_path) == 0o600
    assert _mode(record.image_path.with_suffix(".json")) == 0o600
    for suffix in ("", "-wal", "-shm"):
        path = Path(str(store.db_path) + suffix)
        if path.exists():
            assert _mode(path) == 0o600, path


def test_sqlite_is_wal_with_full_sync_and_versioned(store: CaptureStore) -> None:
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_non_finite_score_is_kept(store: CaptureStore) -> None:
    record = store.add(smooth_image(), make_info(score=float("nan"), accepted=False))
    assert math.isnan(store.get(record.id).info.score)


def test_add_rejects_wrong_pixels_before_writing(store: CaptureStore) -> None:
    with pytest.raises(ValueError, match="uint8"):
        store.add(np.zeros((4, 4, 3), np.float32), make_info())
    with pytest.raises(ValueError, match="mode"):
        store.add(smooth_image(), make_info(mode="robot"))
    assert not list(store.images_dir.rglob("*.*"))


def _jpeg_with_private_metadata(image: np.ndarray) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    exif[0x010F] = "CameraMaker"
    exif[0x013B] = "Photographer Name"
    exif[0x8825] = {1: "N", 2: (52.0, 22.0, 5.5), 3: "E", 4: (4.0, 53.0, 2.0)}
    sub = exif.get_ifd(0x8769)
    sub[0xA431] = "BODY-SN-998877"
    sub[0xA435] = "LENS-SN-112233"
    sub[0x927C] = b"MAKERNOTE-SERIAL-445566"
    sub[0x9003] = "2024:05:06 07:08:09"
    data = encode(image, "JPEG", quality=90, exif=exif.tobytes(), comment=b"owner: Jane Doe")
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><exif:GPSLatitude>52,22N</exif:GPSLatitude>"
    app1_xmp = b"\xff\xe1" + (len(xmp) + 2).to_bytes(2, "big") + xmp
    iptc = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x10City: Amsterdam\x00"
    app13 = b"\xff\xed" + (len(iptc) + 2).to_bytes(2, "big") + iptc
    # insert after SOI; append a multi-picture style trailer with its own GPS text
    return data[:2] + app1_xmp + app13 + data[2:] + b"\xff\xd8TRAILER-GPS-52.3676N"


def test_original_jpeg_kept_pixel_exact_with_location_and_serials_removed(
    store: CaptureStore,
) -> None:
    upright = smooth_image(40, 56, seed=3)
    original = _jpeg_with_private_metadata(upright)
    decoded = decode_rgb(original)
    assert decoded.shape == (56, 40, 3)  # orientation applied
    record = store.add(decoded, make_info(source="hotfolder:/x/a.jpg"), encoded=original)
    stored = record.image_path.read_bytes()
    assert record.image_path.suffix == ".jpg"
    for secret in (
        b"BODY-SN",
        b"LENS-SN",
        b"MAKERNOTE",
        b"Photographer",
        b"Jane Doe",
        b"GPSLatitude",
        b"Amsterdam",
        b"TRAILER-GPS",
    ):
        assert secret not in stored, secret
    with Image.open(io.BytesIO(stored)) as img:
        exif = img.getexif()
        assert exif.get(0x0112) == 6  # orientation: kept (allow-list)
        assert exif.get(0x010F) is None  # make: not on the allow-list
        assert not exif.get_ifd(0x8825)
        assert exif.get_ifd(0x8769).get(0x9003) is None  # the date taken: dropped
    assert np.array_equal(store.load_image(record.id), decoded)  # no recompression


def test_exif_is_an_allow_list_and_jfif_thumbnails_go(store: CaptureStore) -> None:
    """A deny-list kept ImageDescription (name, date of birth, MRN), DocumentName, HostComputer,
    Copyright, XPTitle/XPSubject/XPKeywords, and APP0 whole (JFXX thumbnails)."""
    exif = Image.Exif()
    exif[0x0112] = 1
    exif[0x010E] = "Jane Doe DOB 1970-01-01 MRN 4711"  # ImageDescription
    exif[0x010D] = "Ward 7 - Doe, Jane"  # DocumentName
    exif[0x013C] = "CLINIC-PC-12"  # HostComputer
    exif[0x8298] = "Dr Secret"  # Copyright
    for tag in (0x9C9B, 0x9C9F, 0x9C9E):  # XPTitle, XPSubject, XPKeywords (UTF-16)
        exif[tag] = "Doe Jane".encode("utf-16-le")
    sub = exif.get_ifd(0x8769)
    sub[0x829A] = (1, 60)  # ExposureTime: kept
    sub[0x9286] = b"ASCII\0\0\0MRN 4711"  # UserComment
    image = smooth_image(40, 56, seed=5)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    data = buffer.getvalue()
    # a JFIF APP0 carrying a 2x2 thumbnail, and a JFXX extension, right after SOI
    thumb = bytes([200, 10, 10]) * 4
    jfif = b"JFIF\0\x01\x02\x00\x00\x01\x00\x01\x02\x02" + thumb
    jfxx = b"JFXX\0\x13" + b"\x02\x02" + thumb
    segments = b"".join(b"\xff\xe0" + (len(p) + 2).to_bytes(2, "big") + p for p in (jfif, jfxx))
    data = data[:2] + segments + data[2:]
    record = store.add(decode_rgb(data), make_info(source="hotfolder:/x/b.jpg"), encoded=data)
    stored = record.image_path.read_bytes()
    for secret in (b"Jane", b"Doe", b"4711", b"CLINIC-PC", b"Secret", b"JFXX", thumb):
        assert secret not in stored, secret
    assert "Doe".encode("utf-16-le") not in stored
    with Image.open(io.BytesIO(stored)) as img:
        kept = img.getexif()
        assert kept.get(0x0112) == 1 and kept.get_ifd(0x8769).get(0x829A) == (1, 60)
        assert img.info.get("jfif") is not None  # the JFIF header itself stays


def test_non_jpeg_original_stored_as_lossless_png_without_metadata(store: CaptureStore) -> None:
    from PIL import PngImagePlugin

    image = smooth_image(30, 20, seed=4)
    info = PngImagePlugin.PngInfo()
    info.add_text("Location", "GPS 52.1N 4.3E")
    original = encode(image, "PNG", pnginfo=info)
    record = store.add(decode_rgb(original), make_info(), encoded=original)
    assert record.image_path.suffix == ".png"
    assert b"GPS" not in record.image_path.read_bytes()
    assert np.array_equal(store.load_image(record.id), image)
    tiff = encode(image, "TIFF")
    record = store.add(decode_rgb(tiff), make_info(), encoded=tiff)
    assert np.array_equal(store.load_image(record.id), image)


def test_strip_jpeg_metadata_refuses_broken_structure() -> None:
    good = encode(smooth_image(), "JPEG")
    for bad in (b"", b"\xff\xd8", good[:200], b"PNG" + good):
        with pytest.raises(ValueError):
            strip_jpeg_metadata(bad)


def test_review_transitions_and_audit(store: CaptureStore) -> None:
    a = store.add(smooth_image(), make_info(score=0.3, accepted=False))
    b = store.add(smooth_image(), make_info(score=0.4, accepted=False))
    over = store.review(a.id, "override", "dr-who", "lesion clearly visible", rating=4)
    assert over.state == "overridden" and over.reviewer == "dr-who"
    assert over.review_action == "override" and over.review_rating == 4
    assert over.reviewed_utc is not None and over.review_reason == "lesion clearly visible"
    kept = store.review(b.id, "confirm_reject", "dr-who", "blur")
    assert kept.state == "rejected" and kept.review_action == "confirm_reject"
    with pytest.raises(StorageError, match="no longer be reviewed"):
        store.review(a.id, "confirm_reject", "dr-who", "changed my mind")
    with pytest.raises(ValueError):
        store.review(b.id, "approve", "dr-who", "")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.review(b.id, "override", " ", "")
    with pytest.raises(ValueError):
        store.review(b.id, "override", "dr-who", "", rating=9)
    assert [h["action"] for h in store.history(a.id)] == ["capture", "override"]


def test_delete_is_audited_and_removes_files(store: CaptureStore) -> None:
    record = store.add(smooth_image(), make_info(accepted=False, score=0.1))
    store.delete(record.id, "dr-who")
    assert not record.image_path.exists() and not record.image_path.with_suffix(".json").exists()
    with pytest.raises(KeyError):
        store.get(record.id)
    trail = store.history(record.id)
    assert trail[-1]["action"] == "delete" and trail[-1]["actor"] == "dr-who"
    assert json.loads(trail[-1]["detail"])["patient_ref"] == "P-1001"


def test_interrupted_delete_is_completed_at_startup(tmp_path: Path) -> None:
    with CaptureStore(tmp_path) as s:
        record = s.add(smooth_image(), make_info())
        # The database part of delete() committed, the process died before unlinking the file.
        with s._transaction() as conn:
            s._audit(conn, record.id, "dr-who", "delete", "{}")
            conn.execute("DELETE FROM captures WHERE id=?", (record.id,))
    with CaptureStore(tmp_path) as s:
        assert s.startup_report.deletions_completed == 1
        assert not record.image_path.exists()
        assert s.list() == []


def test_image_without_row_is_recovered_from_sidecar(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with CaptureStore(tmp_path) as s:
        record = s.add(smooth_image(), make_info(patient_ref="P-77", note="n"))
        s._conn.execute("DELETE FROM captures")  # the crash came before the row was committed
        bare = s.add(smooth_image(seed=2), make_info())
        s._conn.execute("DELETE FROM captures WHERE id=?", (bare.id,))
        bare.image_path.with_suffix(".json").unlink()
    with caplog.at_level(logging.WARNING), CaptureStore(tmp_path) as s:
        assert sorted(s.startup_report.recovered) == sorted([record.id, bare.id])
        got = s.get(record.id)
        assert got.state == "captured" and got.info == make_info(patient_ref="P-77", note="n")
        assert got.created_utc == record.created_utc
        unknown = s.get(bare.id)
        assert unknown.state == "captured" and unknown.info.source == "recovered"
        assert math.isnan(unknown.info.score)
        assert "recovered" in caplog.text
        assert s.review(bare.id, "override", "dr-who", "ok").state == "overridden"
    with CaptureStore(tmp_path) as s:
        assert s.startup_report.clean


def test_row_without_image_is_marked_and_reported(tmp_path: Path) -> None:
    with CaptureStore(tmp_path) as s:
        record = s.add(smooth_image(), make_info())
        kept = record.image_path.read_bytes()
        record.image_path.unlink()
    with CaptureStore(tmp_path) as s:
        assert s.startup_report.missing_images == [record.id]
        assert s.get(record.id).problem == "image file missing"
        assert [r.id for r in s.problems()] == [record.id]
        with pytest.raises(StorageError, match="missing"):
            s.load_image(record.id)
        record.image_path.write_bytes(kept)  # restored from a backup
    with CaptureStore(tmp_path) as s:
        assert s.get(record.id).problem is None


def test_leftover_temp_files_are_removed_at_startup(tmp_path: Path) -> None:
    with CaptureStore(tmp_path) as s:
        record = s.add(smooth_image(), make_info())
    leftover = record.image_path.with_name(f"{TEMP_PREFIX}{record.image_path.name}.abcd")
    leftover.write_bytes(b"half a photo")
    with CaptureStore(tmp_path) as s:
        assert s.startup_report.temp_files_removed == 1
        assert not leftover.exists() and s.get(record.id).state == "accepted"


def test_damaged_rows_are_reported_and_skipped_never_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with CaptureStore(tmp_path) as s:
        records = [s.add(smooth_image(seed=i), make_info(note=str(i))) for i in range(5)]
        conn = s._conn
        conn.execute("UPDATE captures SET reasons_json='{broken' WHERE id=?", (records[0].id,))
        conn.execute("UPDATE captures SET state='lost-in-space' WHERE id=?", (records[1].id,))
        conn.execute("UPDATE captures SET score='high' WHERE id=?", (records[2].id,))
        conn.execute("UPDATE captures SET image_relpath='../../etc/passwd' WHERE id=?",
                     (records[3].id,))  # fmt: skip
        with caplog.at_level(logging.ERROR):
            listed = s.list()
        assert [r.id for r in listed] == [records[4].id]
        assert "damaged" in caplog.text
        assert {d.capture_id for d in s.damaged_rows()} == {r.id for r in records[:4]}
        with pytest.raises(StorageError, match="damaged"):
            s.get(records[0].id)
    with CaptureStore(tmp_path) as s:  # reopening is fine, and the damaged rows' photos stay
        assert len(s.startup_report.damaged_rows) == 4
        assert not s.startup_report.recovered
        assert all(r.image_path.exists() for r in records)


def test_damaged_database_file_is_set_aside_and_rebuilt_from_sidecars(tmp_path: Path) -> None:
    with CaptureStore(tmp_path) as s:
        records = [s.add(smooth_image(seed=i), make_info(note=str(i))) for i in range(3)]
        s._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db = tmp_path / "captures.sqlite3"
    raw = bytearray(db.read_bytes())
    raw[0:16] = b"definitely-not-a"
    db.write_bytes(bytes(raw))
    with CaptureStore(tmp_path) as s:
        aside = s.startup_report.database_rebuilt_from
        assert aside is not None and aside.exists()
        assert sorted(s.startup_report.recovered) == sorted(r.id for r in records)
        assert {r.info.note for r in s.list()} == {"0", "1", "2"}
        assert all(r.state == "captured" for r in s.list())


def test_database_from_newer_app_is_refused_clearly(tmp_path: Path) -> None:
    CaptureStore(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "captures.sqlite3")
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StorageError, match="newer version"):
        CaptureStore(tmp_path)


def test_export_training_csv(store: CaptureStore, tmp_path: Path) -> None:
    a = store.add(smooth_image(seed=1), make_info(score=0.3, accepted=False))
    b = store.add(smooth_image(seed=2), make_info(score=0.2, accepted=False, mode="kiosk"))
    c = store.add(smooth_image(seed=3), make_info(score=0.1, accepted=False))
    store.add(smooth_image(seed=4), make_info())  # no human decision: not exported
    store.review(a.id, "override", "dr", "fine")
    store.review(b.id, "confirm_reject", "dr", "too dark and Blur")
    store.review(c.id, "confirm_reject", "dr", "unusable", rating=1)
    out = tmp_path / "export" / "ratings.csv"
    assert store.export_training_csv(out) == 3
    rows = {r["source_path"]: r for r in csv.DictReader(out.open())}
    assert rows[f"capture:{a.id}"]["rater_1"] == "4"
    assert rows[f"capture:{b.id}"]["rater_1"] == "2"
    assert rows[f"capture:{c.id}"]["rater_1"] == "1"
    assert rows[f"capture:{b.id}"]["cohort"] == "app-kiosk"
    assert rows[f"capture:{b.id}"]["dark"] == "1" and rows[f"capture:{b.id}"]["blur"] == "1"
    assert rows[f"capture:{a.id}"]["dark"] == ""  # "fine" names no fault: unknown, not absent
    header = next(csv.reader(out.open()))
    assert header[:5] == ["image", "rater_1", "cohort", "split", "source_path"]
    for row in rows.values():
        assert (out.parent / row["image"]).is_file()
    assert store.export_training_csv(tmp_path / "one.csv", ids=[b.id]) == 1


def test_reviewers_own_words_name_reasons() -> None:
    from desktop_app.core.store import reasons_named_in

    assert reasons_named_in("too blurry") == {"blur"}
    assert reasons_named_in("Out of focus, colour cast") == {"blur", "colour"}
    assert reasons_named_in("color cast; lesion off-centre") == {"colour", "framing"}
    assert reasons_named_in("looks fine") == set()
    assert "dark" not in reasons_named_in("darkening of the lesion")  # whole words only


def test_concurrent_adds_from_threads(store: CaptureStore) -> None:
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for i in range(5):
                store.add(smooth_image(16, 16, seed=seed * 10 + i), make_info())
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(store.list()) == 20
    assert len({r.id for r in store.list()}) == 20


def test_closed_store_refuses_use(tmp_path: Path) -> None:
    s = CaptureStore(tmp_path)
    s.close()
    s.close()
    with pytest.raises(StorageError, match="closed"):
        s.list()
    assert os.path.exists(tmp_path / "captures.sqlite3")


def test_a_file_name_that_is_not_utf8_is_stored_and_start_up_survives_it(tmp_path: Path) -> None:
    """A hot-folder file named in Latin-1 on a UTF-8 system reaches the record as a surrogate
    escape (os.fsdecode); SQLite refused it, and the restart re-raised it out of the store."""
    latin1_name = os.fsdecode(b"hotfolder:/tether/caf\xe9-\xff.jpg")
    with CaptureStore(tmp_path / "store") as s:
        record = s.add(smooth_image(), make_info(source=latin1_name, note="n\udce9"))
        assert record.info.source == "hotfolder:/tether/caf\\xe9-\\xff.jpg"
        assert record.info.note == "n\\xe9"
        s._conn.execute("DELETE FROM captures")  # a crash before the row: recovered at start
    with CaptureStore(tmp_path / "store") as s:
        assert s.startup_report.recovered == [record.id]
        assert s.get(record.id).info.source == "hotfolder:/tether/caf\\xe9-\\xff.jpg"


def test_verbose_logging_keeps_pillow_exif_values_out(
    store: CaptureStore, caplog: pytest.LogCaptureFixture
) -> None:
    from desktop_app.core.resources import configure_logging

    configure_logging(verbose=True)
    exif = Image.Exif()
    exif[0x010E] = "Jane Doe MRN 4711"
    buffer = io.BytesIO()
    Image.fromarray(smooth_image(16, 16)).save(buffer, "JPEG", exif=exif.tobytes())
    with caplog.at_level(logging.DEBUG):
        store.add(decode_rgb(buffer.getvalue()), make_info(), encoded=buffer.getvalue())
    assert "4711" not in caplog.text
