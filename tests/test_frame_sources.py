"""Frame sources: replay (folder, video), demo feed, camera listing, loss and recovery."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from desktop_app.core.sources import (
    DemoSource,
    FrameSource,
    FrameSourceError,
    OpenCVCamera,
    ReplaySource,
    ResilientSource,
    SourceLostError,
    list_cameras,
    source_from_spec,
)


def _sharpness(rgb: np.ndarray) -> float:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _write_images(folder: Path, count: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        path = folder / f"img{i}.png"
        cv2.imwrite(str(path), img)
        paths.append(path)
    return paths


def test_replay_folder_loops_and_skips_unreadable(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    _write_images(folder, 2)
    (folder / "broken.jpg").write_bytes(b"not an image")
    source = ReplaySource(folder, fps=200)
    assert isinstance(source, FrameSource)
    source.open()
    labels = []
    for _ in range(6):
        frame = source.read()
        labels.append(frame.label if frame else None)
    source.close()
    assert labels == [None, "img0.png", "img1.png", None, "img0.png", "img1.png"]
    assert source.resolution == (64, 48)


def test_replay_frame_is_rgb_of_the_file(tmp_path: Path) -> None:
    img = np.zeros((20, 30, 3), np.uint8)
    img[..., 2] = 200  # red in BGR
    cv2.imwrite(str(tmp_path / "red.png"), img)
    source = ReplaySource(tmp_path / "red.png", fps=200)
    source.open()
    frame = source.read()
    assert frame is not None and frame.colour_order == "RGB"
    assert frame.rgb()[0, 0].tolist() == [200, 0, 0]


def test_replay_video_loops(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 60 * i, np.uint8))
    writer.release()
    source = ReplaySource(path)
    source.open()
    frames = [source.read() for _ in range(5)]
    source.close()
    assert all(f is not None and f.colour_order == "BGR" for f in frames)
    means = [round(float(f.image.mean()) / 60) for f in frames if f is not None]
    assert means == [0, 1, 2, 0, 1]


def test_replay_missing_or_empty_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FrameSourceError, match="does not exist"):
        ReplaySource(tmp_path / "nope").open()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FrameSourceError, match="No images"):
        ReplaySource(tmp_path / "empty").open()


def test_replay_folder_removed_while_playing_is_lost(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    _write_images(folder, 2)
    source = ReplaySource(folder, fps=200)
    source.open()
    assert source.read() is not None
    shutil.rmtree(folder)
    with pytest.raises(SourceLostError, match="no longer there"):
        source.read()


def test_resilient_source_reports_loss_and_recovers(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    _write_images(folder, 1)
    statuses: list[tuple[str, bool]] = []
    source = ResilientSource(
        ReplaySource(folder, fps=200),
        on_status=lambda m, ok: statuses.append((m, ok)),
        retry_interval_s=0.05,
    )
    source.open()
    assert source.connected and statuses[-1][1] is True
    assert source.read() is not None
    moved = tmp_path / "unplugged"
    folder.rename(moved)
    assert source.read() is None
    assert not source.connected
    assert statuses[-1][1] is False and "no longer there" in statuses[-1][0]
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and source.read() is None:
        pass
    assert not source.connected  # still gone: it keeps trying, without raising
    moved.rename(folder)
    deadline = time.monotonic() + 2.0
    frame = None
    while time.monotonic() < deadline and frame is None:
        frame = source.read()
    assert frame is not None and source.connected
    assert statuses[-1] == ("Replay: frames is back (64x48).", True)
    source.close()


def test_resilient_source_first_open_failure_is_reported_not_raised(tmp_path: Path) -> None:
    statuses: list[tuple[str, bool]] = []
    source = ResilientSource(
        ReplaySource(tmp_path / "later", fps=200),
        on_status=lambda m, ok: statuses.append((m, ok)),
        retry_interval_s=0.05,
    )
    source.open()
    assert not source.connected
    assert "does not exist" in statuses[-1][0] and "Trying again" in statuses[-1][0]
    _write_images(tmp_path / "later", 1)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and not source.connected:
        source.read()
    assert source.connected


def test_camera_that_is_not_there_gives_readable_error() -> None:
    camera = OpenCVCamera(63, (1280, 720), name="Test camera 63")
    with pytest.raises(FrameSourceError, match="Test camera 63 could not be opened"):
        camera.open()
    camera.close()
    with pytest.raises(FrameSourceError, match="not open"):
        camera.read()


def test_list_cameras_reads_linux_names_and_skips_metadata_nodes(tmp_path: Path) -> None:
    for node, name, index in (
        ("video0", "Integrated Camera: Integrated C", "0"),
        ("video1", "Integrated Camera: Integrated C", "1"),
        ("video2", "Dermlite UVC", "0"),
        ("video10", "", "0"),
    ):
        (tmp_path / node).mkdir()
        (tmp_path / node / "name").write_text(name + "\n")
        (tmp_path / node / "index").write_text(index + "\n")
    if not __import__("sys").platform.startswith("linux"):
        pytest.skip("sysfs names are Linux only")
    cameras = list_cameras(tmp_path)
    assert [(c.index, c.name) for c in cameras] == [
        (0, "Integrated Camera: Integrated C"),
        (2, "Dermlite UVC"),
        (10, "Camera 10"),
    ]
    assert cameras[1].path == "/dev/video2" and cameras[1].label == "2: Dermlite UVC"
    assert list_cameras(tmp_path / "absent") == []


def test_source_from_spec(tmp_path: Path) -> None:
    assert isinstance(source_from_spec("demo"), DemoSource)
    camera = source_from_spec("2", (1920, 1080), {2: "Dermlite"})
    assert isinstance(camera, OpenCVCamera) and camera.name == "Dermlite"
    assert camera.requested_resolution == (1920, 1080)
    _write_images(tmp_path / "f", 1)
    assert isinstance(source_from_spec(str(tmp_path / "f")), ReplaySource)
    with pytest.raises(FrameSourceError, match="Unknown source"):
        source_from_spec(str(tmp_path / "missing"))


@pytest.fixture(scope="module")
def demo() -> DemoSource:
    source = DemoSource(resolution=(640, 360), fps=1000)
    source.open()
    assert source.wait_until_rendered(30.0)
    return source


def test_demo_schedule_cycles_through_good_and_poor_moments(demo: DemoSource) -> None:
    seen = {demo.moment_at(t * 0.5) for t in range(int(demo.cycle_seconds * 2))}
    assert seen == {"good", "motion", "defocus", "dark", "glare", "off_centre", "far"}
    assert demo.moment_at(0.0) == "good"
    assert demo.moment_at(demo.cycle_seconds + 0.1) == "good"


def test_demo_frames_are_rgb_at_resolution(demo: DemoSource) -> None:
    frame = demo.read()
    assert frame is not None
    assert frame.image.shape == (360, 640, 3) and frame.image.dtype == np.uint8
    assert frame.colour_order == "RGB" and frame.label == "good"


def test_demo_poor_moments_are_measurably_poor(demo: DemoSource) -> None:
    good = demo.render_moment("good", 1.0)
    assert _sharpness(demo.render_moment("motion", 1.0)) < 0.5 * _sharpness(good)
    assert _sharpness(demo.render_moment("defocus", 1.0)) < 0.3 * _sharpness(good)
    assert demo.render_moment("dark", 1.0).mean() < 0.4 * good.mean()
    glare = demo.render_moment("glare", 1.0)
    assert (glare.min(axis=2) >= 250).mean() > 0.05 > (good.min(axis=2) >= 250).mean()


def _lesion_centre(rgb: np.ndarray) -> tuple[float, float]:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    dark = grey < np.percentile(grey, 3)
    ys, xs = np.nonzero(dark)
    return float(xs.mean()) / rgb.shape[1], float(ys.mean()) / rgb.shape[0]


def test_demo_lesion_is_centred_then_off_centre_then_small(demo: DemoSource) -> None:
    cx, cy = _lesion_centre(demo.render_moment("good", 1.0))
    assert abs(cx - 0.5) < 0.1 and abs(cy - 0.5) < 0.1
    ox, oy = _lesion_centre(demo.render_moment("off_centre", 1.0))
    assert ox < 0.25 and oy < 0.3

    def lesion_area(rgb: np.ndarray) -> float:
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        return float((hsv[..., 2] < 150).mean())

    assert lesion_area(demo.render_moment("far", 1.0)) < 0.25 * lesion_area(
        demo.render_moment("good", 1.0)
    )


def test_demo_looks_like_skin_not_a_flat_fill(demo: DemoSource) -> None:
    good = demo.render_moment("good", 1.0).astype(np.float32)
    r, g, b = good[..., 0].mean(), good[..., 1].mean(), good[..., 2].mean()
    assert r > g > b  # skin: red over green over blue
    # texture at pore scale everywhere, not only at the lesion
    corner = good[:80, :80].mean(axis=2)
    assert float(np.std(corner - cv2.GaussianBlur(corner, (0, 0), 3))) > 1.0


def test_hot_folder_files_arrive_as_captures_with_original_bytes(tmp_path: Path) -> None:
    from desktop_app.core.sources import HotFolderSource

    folder = tmp_path / "tether"
    folder.mkdir()
    problems: list[str] = []
    source = HotFolderSource(
        folder,
        poll_interval_s=0.01,
        settle_s=0.0,
        state_path=tmp_path / "seen.json",
        on_problem=problems.append,
    )
    assert isinstance(source_from_spec(f"hotfolder:{folder}"), HotFolderSource)
    source.open()
    assert source.read() is None
    _ok, jpeg = cv2.imencode(".jpg", np.full((30, 40, 3), 90, np.uint8))
    (folder / "IMG_0001.JPG").write_bytes(jpeg.tobytes())
    (folder / "IMG_0002.JPG").write_bytes(b"half a file")
    frame = None
    deadline = time.monotonic() + 2.0
    while frame is None and time.monotonic() < deadline:
        frame = source.read()
    assert frame is not None and frame.is_capture and frame.label == "IMG_0001.JPG"
    assert frame.encoded == jpeg.tobytes() and frame.image.shape == (30, 40, 3)
    assert problems and "IMG_0002.JPG" in problems[0]
    assert source.read() is None  # each file once
    shutil.rmtree(folder)
    with pytest.raises(SourceLostError, match="no longer reachable"):
        source.read()
    source.close()
    with pytest.raises(FrameSourceError, match="does not exist"):
        HotFolderSource(folder).open()
