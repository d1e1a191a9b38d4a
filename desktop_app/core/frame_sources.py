"""Where pictures come from: webcams/UVC devices, video or image-folder replay, a tethered camera's
hot folder, and the built-in demo feed. No Qt here.

Every source follows :class:`FrameSource`: ``open()``, then ``read()`` repeatedly from one thread
(it paces itself like a camera: it blocks until the next frame is due), then ``close()``. Failures
are :class:`FrameSourceError` with a message written for the person at the camera.
:class:`ResilientSource` wraps any source and turns a lost device into a status message plus
automatic re-open attempts.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import cv2
import numpy as np

from desktop_app.core.image_io import IMAGE_SUFFIXES, ColourOrder, ImageLoadError, load_rgb

if TYPE_CHECKING:
    from desktop_app.core.hotfolder import HotFolderWatcher

logger = logging.getLogger(__name__)

SourceKind = Literal["camera", "replay", "hotfolder", "demo"]

# Resolutions offered in Settings (width, height); None means "whatever the camera starts with".
COMMON_RESOLUTIONS: tuple[tuple[int, int], ...] = (
    (640, 480),
    (1280, 720),
    (1920, 1080),
    (2592, 1944),
    (3840, 2160),
)
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})


class FrameSourceError(RuntimeError):
    """A source cannot deliver pictures; the message says why in plain words."""


class SourceLostError(FrameSourceError):
    """A source that was working stopped (camera unplugged, folder removed)."""


@dataclass(frozen=True)
class Frame:
    """One picture from a source.

    ``image`` is uint8 ``[H, W, 3]`` with channels in ``colour_order``. ``is_capture`` marks a
    picture that is a capture in its own right (a tethered camera's file), not a live frame;
    ``encoded`` then holds the file's original bytes and ``label`` its name.
    """

    image: np.ndarray
    colour_order: ColourOrder
    index: int
    timestamp: float
    source_name: str
    is_capture: bool = False
    encoded: bytes | None = None
    label: str = ""
    #: For a capture: call once it is durably stored (a hot-folder file is then marked done;
    #: until then a restart offers it again). Any thread.
    on_stored: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    def rgb(self) -> np.ndarray:
        """The picture as uint8 RGB ``[H, W, 3]`` (a view when already RGB)."""
        if self.colour_order == "RGB":
            return self.image
        converted: np.ndarray = cv2.cvtColor(self.image, cv2.COLOR_BGR2RGB)
        return converted


@runtime_checkable
class FrameSource(Protocol):
    """The interface every picture source follows (one reading thread per source)."""

    @property
    def name(self) -> str:
        """Human-readable name ("Integrated Camera", "Demo feed (no camera)")."""

    @property
    def kind(self) -> SourceKind:
        """``camera`` | ``replay`` | ``hotfolder`` | ``demo``."""

    def open(self) -> None:
        """Start delivering; raises :class:`FrameSourceError`."""

    def read(self) -> Frame | None:
        """Block until the next frame is due and return it; None when there is nothing new yet.

        Raises :class:`SourceLostError` when a working source stops, :class:`FrameSourceError`
        for other failures.
        """

    def close(self) -> None:
        """Release the device or files; safe to call twice."""

    @property
    def resolution(self) -> tuple[int, int] | None:
        """(width, height) actually obtained, once known."""


class _Pacer:
    """Sleeps so that successive ``wait()`` calls are ``1 / fps`` apart (a camera's rhythm)."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / max(1.0, fps)
        self._next = time.monotonic()

    def wait(self) -> None:
        now = time.monotonic()
        if self._next > now:
            time.sleep(self._next - now)
            self._next += self.period
        else:
            # Behind schedule (slow decode, busy CPU): do not try to catch up in a burst.
            self._next = now + self.period


# ---- webcams and UVC devices ----------------------------------------------------------------


@dataclass(frozen=True)
class CameraInfo:
    """A capture device the picker can offer: OpenCV index, human name, device path if any."""

    index: int
    name: str
    path: str = ""

    @property
    def label(self) -> str:
        return f"{self.index}: {self.name}"


def list_cameras(
    sysfs_root: Path = Path("/sys/class/video4linux"), probe: int = 4
) -> list[CameraInfo]:
    """Capture devices with names where the OS gives them.

    On Linux the names come from ``/sys/class/video4linux/video*/name``; nodes whose ``index`` is
    not 0 (a UVC camera's metadata node) are skipped. Elsewhere, indices ``0..probe-1`` are opened
    briefly and the ones that answer are listed as "Camera N".
    """
    if sys.platform.startswith("linux"):
        cameras: list[CameraInfo] = []
        if not sysfs_root.is_dir():
            return cameras
        for node in sorted(sysfs_root.glob("video*"), key=lambda p: _trailing_int(p.name)):
            number = _trailing_int(node.name)
            if number < 0:
                continue
            try:
                if (node / "index").is_file() and (node / "index").read_text().strip() != "0":
                    continue
                name = (node / "name").read_text(errors="replace").strip() or f"Camera {number}"
            except OSError:
                name = f"Camera {number}"
            cameras.append(CameraInfo(number, name, f"/dev/{node.name}"))
        return cameras
    found = []
    for index in range(probe):
        cap = cv2.VideoCapture(index)
        try:
            if cap.isOpened():
                found.append(CameraInfo(index, f"Camera {index}"))
        finally:
            cap.release()
    return found


def _trailing_int(text: str) -> int:
    digits = ""
    for ch in reversed(text):
        if not ch.isdigit():
            break
        digits = ch + digits
    return int(digits) if digits else -1


class OpenCVCamera:
    """A webcam or UVC capture device through OpenCV (V4L2 on Linux).

    ``resolution`` is requested with ``CAP_PROP_FRAME_WIDTH/HEIGHT``; the resolution actually
    obtained (read from the first frame, which cannot lie) is in :attr:`resolution`. Frames are
    BGR. ``failures_before_lost`` consecutive failed reads mean the device is gone.
    """

    kind: SourceKind = "camera"

    def __init__(
        self,
        index: int,
        requested_resolution: tuple[int, int] | None = None,
        name: str | None = None,
        failures_before_lost: int = 8,
    ) -> None:
        self.index = index
        self.requested_resolution = requested_resolution
        self.name = name or f"Camera {index}"
        self.failures_before_lost = failures_before_lost
        self._cap: cv2.VideoCapture | None = None
        self._resolution: tuple[int, int] | None = None
        self._failures = 0
        self._count = 0

    @property
    def resolution(self) -> tuple[int, int] | None:
        return self._resolution

    def open(self) -> None:
        backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
        cap = cv2.VideoCapture(self.index, backend)
        if not cap.isOpened():
            cap.release()
            raise FrameSourceError(
                f"{self.name} could not be opened. Check that it is plugged in and not in use "
                "by another program (video call, camera app)."
            )
        if self.requested_resolution is not None:
            width, height = self.requested_resolution
            # MJPG lets USB 2 cameras deliver high resolutions at a usable frame rate.
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG"))
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, float(width))
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, float(height))
        ok, image = False, None
        for _ in range(10):  # some devices return a few empty frames while starting
            ok, image = cap.read()
            if ok and image is not None:
                break
            time.sleep(0.05)
        if not ok or image is None:
            cap.release()
            raise FrameSourceError(f"{self.name} opened but sends no pictures.")
        self._cap = cap
        self._resolution = (int(image.shape[1]), int(image.shape[0]))
        self._failures = 0
        if self.requested_resolution and self._resolution != self.requested_resolution:
            logger.info(
                "%s: asked for %dx%d, the camera gives %dx%d",
                self.name,
                *self.requested_resolution,
                *self._resolution,
            )

    def read(self) -> Frame | None:
        if self._cap is None:
            raise FrameSourceError(f"{self.name} is not open.")
        ok, image = self._cap.read()
        if not ok or image is None or image.ndim != 3:
            self._failures += 1
            if self._failures >= self.failures_before_lost:
                raise SourceLostError(
                    f"{self.name} stopped sending pictures. Is it still plugged in?"
                )
            time.sleep(0.02)
            return None
        self._failures = 0
        self._count += 1
        return Frame(image, "BGR", self._count, time.monotonic(), self.name)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


# ---- replay: a video file or a folder of images ----------------------------------------------


class ReplaySource:
    """Plays a video file, an image folder or a single image in a loop at ``fps``.

    Unreadable images in a folder are skipped with a warning; a folder or file that disappears
    while playing raises :class:`SourceLostError` (so the app shows it and tries again).
    """

    kind: SourceKind = "replay"

    def __init__(self, path: str | Path, fps: float = 30.0, max_cached_images: int = 64) -> None:
        self.path = Path(path)
        self.name = f"Replay: {self.path.name}"
        self.fps = fps
        self.max_cached_images = max_cached_images
        self._pacer = _Pacer(fps)
        self._video: cv2.VideoCapture | None = None
        self._files: list[Path] = []
        self._position = 0
        self._count = 0
        self._resolution: tuple[int, int] | None = None
        self._cache: dict[Path, tuple[float, np.ndarray]] = {}

    @property
    def resolution(self) -> tuple[int, int] | None:
        return self._resolution

    @property
    def is_video(self) -> bool:
        return self.path.is_file() and self.path.suffix.lower() in VIDEO_SUFFIXES

    def open(self) -> None:
        if not self.path.exists():
            raise FrameSourceError(f"Replay source {self.path} does not exist.")
        self._position = 0
        if self.is_video:
            video = cv2.VideoCapture(str(self.path))
            if not video.isOpened():
                video.release()
                raise FrameSourceError(f"The video {self.path.name} cannot be read.")
            file_fps = float(video.get(cv2.CAP_PROP_FPS) or 0.0)
            if 1.0 <= file_fps <= 120.0:
                self._pacer = _Pacer(file_fps)
            self._video = video
            return
        self._files = self._list_images()
        if not self._files:
            raise FrameSourceError(f"No images found in {self.path}.")

    def _list_images(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        return sorted(
            p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )

    def read(self) -> Frame | None:
        self._pacer.wait()
        if self._video is not None:
            return self._read_video()
        return self._read_image()

    def _read_video(self) -> Frame | None:
        assert self._video is not None
        if not self.path.exists():
            raise SourceLostError(f"The video {self.path} is no longer there.")
        ok, image = self._video.read()
        if not ok or image is None:
            self._video.set(cv2.CAP_PROP_POS_FRAMES, 0)  # loop
            ok, image = self._video.read()
            if not ok or image is None:
                raise SourceLostError(f"The video {self.path.name} stopped playing.")
        self._count += 1
        self._resolution = (int(image.shape[1]), int(image.shape[0]))
        return Frame(image, "BGR", self._count, time.monotonic(), self.name)

    def _read_image(self) -> Frame | None:
        if not self.path.exists():
            raise SourceLostError(f"The replay folder {self.path} is no longer there.")
        if self._position >= len(self._files):
            self._position = 0
            self._files = self._list_images()  # pick up added/removed files on every loop
            if not self._files:
                raise SourceLostError(f"No images left in {self.path}.")
        path = self._files[self._position]
        self._position += 1
        image = self._load(path)
        if image is None:
            return None
        self._count += 1
        self._resolution = (int(image.shape[1]), int(image.shape[0]))
        return Frame(image, "RGB", self._count, time.monotonic(), self.name, label=path.name)

    def _load(self, path: Path) -> np.ndarray | None:
        try:
            mtime = path.stat().st_mtime
        except OSError as exc:
            if not self.path.exists():
                raise SourceLostError(f"The replay folder {self.path} is no longer there.") from exc
            return None
        cached = self._cache.get(path)
        if cached is not None and cached[0] == mtime:
            return cached[1]
        try:
            image = load_rgb(path)
        except ImageLoadError as exc:
            logger.warning("Replay skips %s", exc)
            return None
        if len(self._cache) >= self.max_cached_images:
            self._cache.pop(next(iter(self._cache)))
        self._cache[path] = (mtime, image)
        return image

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None
        self._cache.clear()


# ---- a tethered camera's hot folder ---------------------------------------------------------


class HotFolderSource:
    """A tethered camera: its vendor software writes each shot into ``folder``.

    Every new file becomes a :class:`Frame` with ``is_capture=True`` (evaluated as a capture, not
    a live frame) carrying the file's original bytes. A file counts as done only when the
    frame's ``on_stored`` is called (after ``CaptureStore.add`` returned): a crash before that
    offers it again at the next start, never skips it. Files that cannot be read, and entries
    that are not regular files, are reported through ``on_problem`` (they stay in the folder;
    nothing is deleted). A folder that vanishes (network share dropped, card removed) raises
    :class:`SourceLostError`.
    """

    kind: SourceKind = "hotfolder"

    def __init__(
        self,
        folder: Path,
        poll_interval_s: float = 0.5,
        settle_s: float = 0.5,
        state_path: Path | None = None,
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.name = f"Hot folder: {self.folder}"
        self.settle_s = settle_s
        self.state_path = state_path
        self.on_problem = on_problem or (lambda message: logger.warning("%s", message))
        self._pacer = _Pacer(1.0 / max(0.01, poll_interval_s))
        self._watcher: HotFolderWatcher | None = None
        self._ready: deque[Frame] = deque()
        self._count = 0
        self._resolution: tuple[int, int] | None = None

    @property
    def resolution(self) -> tuple[int, int] | None:
        return self._resolution

    def open(self) -> None:
        from desktop_app.core.hotfolder import HotFolderWatcher

        if not self.folder.is_dir():
            raise FrameSourceError(
                f"The hot folder {self.folder} does not exist. Check the tether software's "
                "download folder (and that the drive or share is connected)."
            )
        self._watcher = HotFolderWatcher(
            self.folder, self.settle_s, self.state_path, auto_acknowledge=False
        )
        self._ready.clear()

    def read(self) -> Frame | None:
        if self._watcher is None:
            raise FrameSourceError("The hot folder is not open.")
        if self._ready:
            return self._ready.popleft()
        self._pacer.wait()
        if not self.folder.is_dir():
            raise SourceLostError(f"The hot folder {self.folder} is no longer reachable.")
        watcher = self._watcher
        for event in watcher.poll():
            if event.ok and event.image_rgb is not None:
                self._count += 1
                image = event.image_rgb
                self._resolution = (int(image.shape[1]), int(image.shape[0]))
                self._ready.append(
                    Frame(
                        image,
                        "RGB",
                        self._count,
                        time.monotonic(),
                        self.name,
                        is_capture=True,
                        encoded=event.encoded,
                        label=event.path.name,
                        on_stored=functools.partial(watcher.acknowledge, event),
                    )
                )
            elif event.error:
                self.on_problem(event.error)
        return self._ready.popleft() if self._ready else None

    def close(self) -> None:
        self._watcher = None
        self._ready.clear()


# ---- the demo feed --------------------------------------------------------------------------

DemoMoment = Literal["good", "motion", "defocus", "dark", "glare", "off_centre", "far"]

DEFAULT_DEMO_SCHEDULE: tuple[tuple[DemoMoment, float], ...] = (
    ("good", 5.0),
    ("motion", 3.0),
    ("good", 4.0),
    ("dark", 3.5),
    ("good", 4.0),
    ("glare", 3.5),
    ("defocus", 3.0),
    ("good", 4.0),
    ("off_centre", 3.5),
    ("far", 3.5),
)


@dataclass
class _DemoWorlds:
    """Rendered skin for the demo's virtual camera (uint8 RGB), filled in as renders finish."""

    near: np.ndarray
    variants: dict[str, np.ndarray] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class DemoSource:
    """The built-in demo feed: a generated skin close-up seen by a slightly shaky hand-held camera,
    cycling through good and poor moments (see :data:`DEFAULT_DEMO_SCHEDULE`).

    Frames are RGB at ``resolution``. The sharp close-up is rendered in ``open()`` (about half a
    second at 1280x720); the other views are rendered in a background thread and until they are
    ready their moments show the close-up.
    """

    kind: SourceKind = "demo"
    MARGIN = 48  # pixels of skin around the frame for the hand-shake

    def __init__(
        self,
        resolution: tuple[int, int] = (1280, 720),
        fps: float = 30.0,
        schedule: tuple[tuple[DemoMoment, float], ...] = DEFAULT_DEMO_SCHEDULE,
        seed: int = 7,
    ) -> None:
        self.name = "Demo feed (no camera)"
        self.width, self.height = resolution
        self.fps = fps
        self.schedule = schedule
        self.seed = seed
        self._pacer = _Pacer(fps)
        self._worlds: _DemoWorlds | None = None
        self._start = 0.0
        self._count = 0
        self._noise: list[tuple[np.ndarray, np.ndarray]] = []
        self._background: threading.Thread | None = None
        self._cancel = threading.Event()

    @property
    def resolution(self) -> tuple[int, int] | None:
        return (self.width, self.height)

    @property
    def cycle_seconds(self) -> float:
        return float(sum(d for _, d in self.schedule))

    def moment_at(self, elapsed_s: float) -> DemoMoment:
        """Which moment of the schedule is showing ``elapsed_s`` seconds after ``open()``."""
        t = elapsed_s % self.cycle_seconds
        for moment, duration in self.schedule:
            if t < duration:
                return moment
            t -= duration
        return self.schedule[-1][0]

    def open(self) -> None:
        from desktop_app.core.demo_scene import render_skin

        m = self.MARGIN
        near = render_skin(self.height + 2 * m, self.width + 2 * m, seed=self.seed)
        self._worlds = _DemoWorlds(near=near)
        rng = np.random.default_rng(self.seed + 1)
        self._noise = []
        for _ in range(4):
            luma = rng.normal(0.0, 7.0, (self.height, self.width, 1))
            noise = np.repeat(luma, 3, axis=2) + rng.normal(0.0, 3.0, (self.height, self.width, 3))
            self._noise.append(
                (
                    np.clip(noise, 0, 255).astype(np.uint8),
                    np.clip(-noise, 0, 255).astype(np.uint8),
                )
            )
        self._start = time.monotonic()
        self._pacer = _Pacer(self.fps)
        needed = {moment for moment, _ in self.schedule} - {"good", "motion", "dark"}
        self._cancel.clear()
        if needed:
            self._background = threading.Thread(
                target=self._render_variants, args=(needed,), name="demo-render", daemon=True
            )
            self._background.start()

    def wait_until_rendered(self, timeout_s: float = 30.0) -> bool:
        """Block until the background renders of the poor moments are done (True) or timeout."""
        thread = self._background
        if thread is not None:
            thread.join(timeout_s)
            return not thread.is_alive()
        return True

    def _render_variants(self, needed: set[str]) -> None:
        from desktop_app.core.demo_scene import SkinLook, render_skin

        worlds = self._worlds
        if worlds is None:
            return
        near = worlds.near
        m = self.MARGIN
        h, w = self.height + 2 * m, self.width + 2 * m
        far_look = SkinLook(lesion_radius_px=34.0, pore_spacing_px=9.0, furrow_scale_px=14.0)
        renders: dict[str, Callable[[], np.ndarray]] = {
            "defocus": lambda: cv2.GaussianBlur(near, (0, 0), 7.0),
            "glare": lambda: _add_glare(near, np.random.default_rng(self.seed + 2)),
            "off_centre": lambda: render_skin(
                h, w, seed=self.seed, lesion_centre=(w * 0.12, h * 0.16)
            ),
            "far": lambda: render_skin(h, w, seed=self.seed + 3, look=far_look),
        }
        for moment, render in renders.items():
            # checked between renders: close() must not leave native code running at exit
            if moment not in needed or self._cancel.is_set():
                continue
            image = render()
            with worlds.lock:
                worlds.variants[moment] = image

    def read(self) -> Frame | None:
        if self._worlds is None:
            raise FrameSourceError("The demo feed is not open.")
        self._pacer.wait()
        elapsed = time.monotonic() - self._start
        moment = self.moment_at(elapsed)
        image = self.render_moment(moment, elapsed)
        self._count += 1
        return Frame(image, "RGB", self._count, time.monotonic(), self.name, label=moment)

    def render_moment(self, moment: DemoMoment, elapsed_s: float) -> np.ndarray:
        """The frame the virtual camera sees in ``moment`` at time ``elapsed_s``: uint8 RGB."""
        assert self._worlds is not None
        with self._worlds.lock:
            world = self._worlds.variants.get(moment, self._worlds.near)
        shake = 2.0
        if moment == "motion":
            shake = 26.0
        dx, dy = _hand_shake(elapsed_s, shake, self.MARGIN)
        m = self.MARGIN
        y0, x0 = m + dy, m + dx
        crop = world[y0 : y0 + self.height, x0 : x0 + self.width]
        if moment == "motion":
            length = 41
            vertical = int(elapsed_s * 1.5) % 2 == 1
            crop = cv2.blur(crop, (1, length) if vertical else (length, 1))
        elif moment == "dark":
            crop = cv2.LUT(crop, _DARK_LUT)
            pos, neg = self._noise[self._count % len(self._noise)]
            crop = cv2.subtract(cv2.add(crop, pos), neg)
        else:
            crop = np.ascontiguousarray(crop)
        return crop

    def close(self) -> None:
        self._cancel.set()
        if self._background is not None:
            self._background.join(timeout=10.0)
            self._background = None
        self._worlds = None


def _hand_shake(t: float, amplitude: float, limit: int) -> tuple[int, int]:
    """A smooth pseudo-random hand tremor (pixels), bounded by ``limit``."""
    dx = amplitude * (0.6 * np.sin(2.1 * t) + 0.3 * np.sin(5.3 * t + 1.0) + 0.1 * np.sin(11.0 * t))
    dy = amplitude * (0.6 * np.sin(1.7 * t + 2.0) + 0.3 * np.sin(4.1 * t) + 0.1 * np.sin(9.0 * t))
    return (int(np.clip(dx, -limit, limit)), int(np.clip(dy, -limit, limit)))


# Under-exposure: a quarter of the light, then the camera's gamma.
_DARK_LUT = np.clip(((np.arange(256) / 255.0) ** 1.25 * 0.22) * 255.0, 0, 255).astype(np.uint8)


def _add_glare(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Over-exposure with specular flash reflections (clipped white patches): uint8 RGB."""
    h, w = image.shape[:2]
    out = image.astype(np.float32) * 1.28 + 18.0
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(3):
        cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.25, 0.7) * h
        sx, sy = rng.uniform(0.05, 0.12) * w, rng.uniform(0.04, 0.10) * h
        blob = np.exp(-(((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))
        out += (blob * 260.0)[..., None]
    clipped: np.ndarray = np.clip(out, 0, 255).astype(np.uint8)
    return clipped


def source_label(source: FrameSource) -> str:
    """What a capture's record says about where it came from: ``demo``, ``camera:0``,
    ``replay:/path`` or ``hotfolder:/path`` (wrappers such as :class:`ResilientSource` are looked
    through)."""
    inner = getattr(source, "source", source)
    if isinstance(inner, OpenCVCamera):
        return f"camera:{inner.index}"
    if isinstance(inner, ReplaySource):
        return f"replay:{inner.path}"
    if isinstance(inner, HotFolderSource):
        return f"hotfolder:{inner.folder}"
    return str(inner.kind)


# ---- choosing a source from the command line / settings -------------------------------------


def source_from_spec(
    spec: str,
    camera_resolution: tuple[int, int] | None = None,
    camera_names: dict[int, str] | None = None,
) -> FrameSource:
    """``demo`` | camera index | ``hotfolder:PATH`` | video file | image folder or file.

    Raises :class:`FrameSourceError` for a spec that names nothing usable.
    """
    text = spec.strip()
    if text.lower() == "demo":
        return DemoSource()
    if text.isdigit():
        index = int(text)
        name = (camera_names or {}).get(index)
        return OpenCVCamera(index, camera_resolution, name=name)
    if text.lower().startswith("hotfolder:"):
        return HotFolderSource(Path(text.split(":", 1)[1]).expanduser())
    path = Path(text).expanduser()
    if path.exists():
        return ReplaySource(path)
    raise FrameSourceError(
        f"Unknown source '{spec}': use 'demo', a camera number, a video file, an image folder "
        "or 'hotfolder:/path/to/folder'."
    )


# ---- resilience -----------------------------------------------------------------------------

StatusCallback = Callable[[str, bool], None]


class ResilientSource:
    """Wraps a source: a lost device becomes a message and re-open attempts every
    ``retry_interval_s`` until it comes back (or the wrapper is closed).

    ``on_status(message, ok)`` is called from the reading thread when the state changes.
    """

    def __init__(
        self,
        source: FrameSource,
        on_status: StatusCallback | None = None,
        retry_interval_s: float = 1.0,
    ) -> None:
        self.source = source
        self.on_status = on_status or (lambda message, ok: None)
        self.retry_interval_s = retry_interval_s
        self.connected = False
        self.last_error = ""
        self._next_retry = 0.0
        self._stop = threading.Event()

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def kind(self) -> SourceKind:
        return self.source.kind

    @property
    def resolution(self) -> tuple[int, int] | None:
        return self.source.resolution

    def open(self) -> None:
        """Try once; on failure report it and leave the retries to :meth:`read`."""
        self._try_open(first=True)

    def _try_open(self, first: bool = False) -> None:
        try:
            self.source.open()
        except FrameSourceError as exc:
            self._fail(str(exc), first)
            return
        self.connected = True
        self.last_error = ""
        res = self.source.resolution
        suffix = f" ({res[0]}x{res[1]})" if res else ""
        if first:
            self.on_status(f"{self.source.name}{suffix}", True)
        else:
            self.on_status(f"{self.source.name} is back{suffix}.", True)

    def _fail(self, message: str, first: bool) -> None:
        self.connected = False
        self.last_error = message
        self._next_retry = time.monotonic() + self.retry_interval_s
        retry = f" Trying again every {self.retry_interval_s:g} s."
        logger.warning("%s", message)
        self.on_status(message + retry, False)

    def read(self) -> Frame | None:
        """A frame, or None while disconnected (waits up to one retry interval)."""
        if not self.connected:
            delay = self._next_retry - time.monotonic()
            if delay > 0 and self._stop.wait(min(delay, 0.25)):
                return None
            if time.monotonic() >= self._next_retry:
                _close_quietly(self.source)
                self._try_open()
            return None
        try:
            return self.source.read()
        except FrameSourceError as exc:
            _close_quietly(self.source)
            self._fail(str(exc), first=False)
            return None

    def interrupt(self) -> None:
        """Cut short a wait between re-open attempts (any thread); ``read`` then returns None."""
        self._stop.set()

    def close(self) -> None:
        self._stop.set()
        self.connected = False
        self.source.close()


def _close_quietly(source: FrameSource) -> None:
    """Close a source, logging (never raising) whatever closing a broken device throws."""
    try:
        source.close()
    except Exception:
        logger.exception("closing %s failed", source.name)
