"""Fuzzing the image loaders, JPEG metadata stripping and hot-folder ingestion (hypothesis).

Inputs: valid JPEG (baseline, progressive, with EXIF), PNG (RGB, RGBA, palette, 16-bit grey),
TIFF (raw, LZW, with EXIF), WebP (lossy, lossless), BMP and GIF files, then truncated, bit-flipped,
byte-spliced, chunk-duplicated, or replaced by random bytes behind a real header, plus pure random
bytes. Contract: a loader returns uint8 ``[H, W, 3]`` or raises ``ImageLoadError``; nothing else.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from store_helpers import make_info, smooth_image

from desktop_app.core.image_io import ImageLoadError, decode_rgb, load_rgb
from desktop_app.core.sources import HotFolderWatcher
from desktop_app.core.store import CaptureStore, prepare_image_bytes, strip_jpeg_metadata

# More examples for a longer campaign: SKIN_CAPTURE_FUZZ_EXAMPLES=5000 python -m pytest ...
FUZZ_EXAMPLES = int(os.environ.get("SKIN_CAPTURE_FUZZ_EXAMPLES", "250"))
FUZZ_SETTINGS = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _save(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _seed_files() -> dict[str, bytes]:
    rgb = Image.fromarray(smooth_image(24, 32, seed=5), "RGB")
    exif = Image.Exif()
    exif[0x0112] = 8
    exif[0x8825] = {1: "N", 2: (1.0, 2.0, 3.0)}
    exif.get_ifd(0x8769)[0xA431] = "SN-1"
    grey16 = Image.fromarray((np.arange(24 * 32).reshape(24, 32) * 60).astype(np.uint16))
    return {
        "jpeg": _save(rgb, "JPEG", quality=90),
        "jpeg-progressive": _save(rgb, "JPEG", quality=80, progressive=True),
        "jpeg-exif": _save(rgb, "JPEG", exif=exif.tobytes(), comment=b"hello"),
        "png": _save(rgb, "PNG"),
        "png-rgba": _save(rgb.convert("RGBA"), "PNG"),
        "png-palette": _save(rgb.convert("P"), "PNG"),
        "png-grey16": _save(grey16, "PNG"),
        "tiff": _save(rgb, "TIFF"),
        "tiff-lzw": _save(rgb, "TIFF", compression="tiff_lzw"),
        "tiff-exif": _save(rgb, "TIFF", exif=exif.tobytes()),
        "webp": _save(rgb, "WEBP", quality=70),
        "webp-lossless": _save(rgb, "WEBP", lossless=True),
        "bmp": _save(rgb, "BMP"),
        "gif": _save(rgb.convert("P"), "GIF"),
    }


SEEDS = _seed_files()


@st.composite
def malformed_images(draw: st.DrawFn) -> bytes:
    """A real image file, damaged in one of several ways (or pure random bytes)."""
    kind = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[kind])
    how = draw(
        st.sampled_from(["truncate", "flip", "splice", "duplicate", "header", "random", "intact"])
    )
    n = len(data)
    if how == "truncate":
        return bytes(data[: draw(st.integers(0, n - 1))])
    if how == "flip":
        for _ in range(draw(st.integers(1, 16))):
            pos = draw(st.integers(0, n - 1))
            data[pos] ^= 1 << draw(st.integers(0, 7))
        return bytes(data)
    if how == "splice":
        pos = draw(st.integers(0, n))
        cut = draw(st.integers(0, min(64, n - pos)))
        return bytes(data[:pos] + draw(st.binary(max_size=64)) + data[pos + cut :])
    if how == "duplicate":
        start = draw(st.integers(0, n - 1))
        end = draw(st.integers(start, min(n, start + 256)))
        return bytes(data[:end] + data[start:end] + data[end:])
    if how == "header":
        keep = draw(st.integers(2, 64))
        return bytes(data[:keep]) + draw(st.binary(min_size=0, max_size=2048))
    if how == "random":
        return draw(st.binary(min_size=0, max_size=4096))
    return bytes(data)


def _check_decoded(image: np.ndarray) -> None:
    assert isinstance(image, np.ndarray)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] >= 1 and image.shape[1] >= 1


@FUZZ_SETTINGS
@given(data=malformed_images())
def test_decode_rgb_returns_rgb_or_image_load_error(data: bytes) -> None:
    try:
        image = decode_rgb(data, "fuzz")
    except ImageLoadError as exc:
        assert str(exc).startswith("fuzz")
        return
    _check_decoded(image)


@FUZZ_SETTINGS
@given(data=malformed_images())
def test_load_rgb_from_file_returns_rgb_or_image_load_error(
    data: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("fuzzfile") / "photo.jpg"
    path.write_bytes(data)
    with contextlib.suppress(ImageLoadError):
        _check_decoded(load_rgb(path))


@settings(max_examples=150, deadline=None)
@given(name=st.text(max_size=40))
@example(name="\x00")  # found by fuzzing: ValueError escaped load_rgb
def test_load_rgb_odd_paths_raise_image_load_error(name: str) -> None:
    with contextlib.suppress(ImageLoadError):
        _check_decoded(load_rgb(Path("/nonexistent-dir-for-fuzz") / name))


@FUZZ_SETTINGS
@given(data=malformed_images())
def test_jpeg_stripping_and_store_preparation_never_fail_unexpectedly(data: bytes) -> None:
    try:
        stripped = strip_jpeg_metadata(data)
    except ValueError:
        stripped = None
    if stripped is not None:
        assert stripped.startswith(b"\xff\xd8") and stripped.endswith(b"\xff\xd9")
    try:
        image = decode_rgb(data)
    except ImageLoadError:
        return
    stored, suffix = prepare_image_bytes(image, data)
    assert suffix in (".jpg", ".png")
    assert decode_rgb(stored).shape == image.shape


@settings(
    max_examples=max(30, FUZZ_EXAMPLES // 8),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(files=st.lists(malformed_images(), min_size=1, max_size=6))
def test_hot_folder_ingestion_of_malformed_files(
    files: list[bytes], tmp_path_factory: pytest.TempPathFactory
) -> None:
    base = tmp_path_factory.mktemp("hotfuzz")
    folder = base / "hot"
    folder.mkdir()
    suffixes = [".jpg", ".png", ".tif", ".webp", ".bmp", ".gif", ".jpeg", ".dat"]
    for i, data in enumerate(files):
        (folder / f"file{i}{suffixes[i % len(suffixes)]}").write_bytes(data)
    watcher = HotFolderWatcher(folder, settle_s=0, state_path=base / "seen.json")
    events = watcher.poll()
    assert sorted(e.path.name for e in events) == sorted(p.name for p in folder.iterdir())
    store = CaptureStore(base / "store")
    try:
        for event in events:
            if event.ok:
                assert event.image_rgb is not None and event.encoded is not None
                _check_decoded(event.image_rgb)
                record = store.add(
                    event.image_rgb, make_info(source=event.source), encoded=event.encoded
                )
                assert store.load_image(record.id).shape == event.image_rgb.shape
            else:
                assert isinstance(event.error, str) and event.error
                assert event.image_rgb is None
        assert watcher.poll() == []
    finally:
        store.close()
        shutil.rmtree(base, ignore_errors=True)


def test_regression_damaged_exif_in_a_decodable_jpeg_is_stored(tmp_path: Path) -> None:
    """Found by fuzzing: Pillow's Exif parser raised SyntaxError from inside store.add()."""
    data = SEEDS["jpeg-exif"]
    start = data.index(b"Exif\x00\x00") + 6
    damaged = data[:start] + b"LM" + data[start + 2 :]  # byte-order mark destroyed
    image = decode_rgb(damaged)
    with CaptureStore(tmp_path) as store:
        record = store.add(image, make_info(), encoded=damaged)
        stored = record.image_path.read_bytes()
        assert b"SN-1" not in stored and b"Exif" not in stored  # re-encoded, no metadata
        assert store.load_image(record.id).shape == image.shape


def _png_header_only(width: int, height: int) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("width", "height", "message"),
    [
        # 110 MP is allowed (not a "bomb"); this file just has no pixel data
        (11000, 10000, r"damaged or truncated \((?!DecompressionBomb)"),
        (12000, 12000, "larger than supported"),  # 144 MP: over our 120 MP limit
        (30000, 30000, "larger than supported"),  # 900 MP: Pillow's own bomb error
    ],
)
def test_huge_declared_sizes_are_reported_plainly(width: int, height: int, message: str) -> None:
    """Found by fuzzing: Pillow's 89 MP bomb warning called a 99-120 MP header "damaged"."""
    with pytest.raises(ImageLoadError, match=message):
        decode_rgb(_png_header_only(width, height))
