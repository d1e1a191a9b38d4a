"""A full disk: a clear message, nothing half-saved, and the store keeps working afterwards."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from store_helpers import make_info

from desktop_app.core.store import RESERVE_NAME, TEMP_PREFIX, CaptureStore, StorageError

FS_SIZE_KIB = 1024


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB filesystem: tmpfs, else a loop-mounted ext4 image, else skip with the reason."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    attempts: list[str] = []
    tmpfs = _run("mount", "-t", "tmpfs", "-o", f"size={FS_SIZE_KIB}k,mode=0700", "tmpfs",
                 str(mount_point))  # fmt: skip
    if tmpfs.returncode != 0:
        attempts.append(f"tmpfs: {tmpfs.stderr.strip() or tmpfs.returncode}")
        image = tmp_path / "small.ext4"
        with image.open("wb") as fh:
            fh.truncate(FS_SIZE_KIB * 1024 * 2)
        mkfs = _run("mkfs.ext4", "-q", "-F", str(image))
        loop = _run("mount", "-o", "loop", str(image), str(mount_point)) if mkfs.returncode == 0 \
            else mkfs  # fmt: skip
        if loop.returncode != 0:
            attempts.append(f"loop ext4: {loop.stderr.strip() or loop.returncode}")
            pytest.skip("cannot mount a small filesystem here: " + "; ".join(attempts))
    try:
        yield mount_point
    finally:
        if _run("umount", str(mount_point)).returncode != 0:
            _run("umount", "-l", str(mount_point))


def _noise(height: int, width: int, seed: int) -> np.ndarray:
    """Incompressible pixels, so each JPEG is large and the disk fills quickly."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _assert_consistent(store: CaptureStore) -> None:
    """Every row has its image and every image has its row; no temporary files anywhere."""
    rows = {r.id for r in store.list()}
    files = {p.stem for p in store.images_dir.rglob("*") if p.suffix in (".jpg", ".png")}
    sidecars = {p.stem for p in store.images_dir.rglob("*.json")}
    assert rows == files
    assert sidecars <= rows
    assert not [p for p in store.root.rglob("*") if p.name.startswith(TEMP_PREFIX)]


def test_disk_full_gives_a_clear_message_and_no_partial_files(
    small_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CaptureStore, "reserve_bytes", 192 * 1024)
    store = CaptureStore(small_fs / "captures")
    assert (store.root / RESERVE_NAME).stat().st_size == 192 * 1024
    saved: list[str] = []
    failures: dict[str, int] = {"file": 0, "database": 0}
    messages: set[str] = set()
    # Fill the disk with captures of varying size, so that some saves fail writing the photo and
    # some only when SQLite needs space for the row.
    for seed in range(1, 201):
        size = 24 + (seed * 37) % 140
        try:
            saved.append(store.add(_noise(size, size, seed), make_info()).id)
        except StorageError as exc:
            messages.add(str(exc).split(":")[0])
            cause = exc.__cause__
            if isinstance(cause, OSError):
                assert cause.errno == errno.ENOSPC
                failures["file"] += 1
            else:
                assert isinstance(cause, sqlite3.Error)
                failures["database"] += 1
            _assert_consistent(store)
            if sum(failures.values()) >= 25:
                break
    logging.getLogger(__name__).info("saved %d, failures %s", len(saved), failures)
    assert messages == {"The disk is full"}, messages
    assert failures["file"] > 0, failures
    assert len(saved) > 3
    assert [r.id for r in store.list()] == saved[::-1]
    store.close()

    # After freeing space the app opens cleanly, and every saved photo is intact.
    store = CaptureStore(small_fs / "captures")
    assert store.startup_report.clean, store.startup_report
    for cid in saved[:5]:
        store.delete(cid, "it-admin")
    again = store.add(_noise(32, 32, 999), make_info())
    assert store.load_image(again.id).shape == (32, 32, 3)
    for cid in saved[5:]:
        store.load_image(cid)
    _assert_consistent(store)
    store.close()
    os.sync()


def _fill(folder: Path, name: str) -> Path:
    """Write a filler file until the filesystem is full; returns it."""
    filler = folder / name
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 1024)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_delete_frees_space_even_after_the_reserve_is_used_up(
    small_fs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(CaptureStore, "reserve_bytes", 64 * 1024)
    store = CaptureStore(small_fs / "captures")
    ids = [store.add(_noise(120, 120, seed), make_info()).id for seed in range(3)]
    _fill(small_fs, "filler-1")
    store.review(ids[0], "confirm_reject", "dr", "")  # may use the reserve on the full disk
    (store.root / RESERVE_NAME).unlink(missing_ok=True)  # the reserve is gone for good
    _fill(small_fs, "filler-2")
    for _ in range(50):  # fill the database's own slack until SQLite itself is out of space
        try:
            store.review(ids[1], "confirm_reject", "dr", "x" * 4000)
        except StorageError:
            break
    else:
        pytest.skip("SQLite never ran out of space on this filesystem")
    store.delete(ids[2], "it-admin")  # the user frees space from the app
    with pytest.raises(KeyError):
        store.get(ids[2])
    assert not list(store.images_dir.rglob(f"{ids[2]}*"))
    _assert_consistent(store)
    store.close()
