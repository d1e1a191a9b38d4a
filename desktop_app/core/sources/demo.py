"""The built-in demo feed: generated skin (:mod:`desktop_app.core.demo_scene`) seen by a shaky
hand-held virtual camera."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from desktop_app.core.sources.base import Frame, FrameSourceError, Pacer, SourceKind

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
        self._pacer = Pacer(fps)
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
        self._pacer = Pacer(self.fps)
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
