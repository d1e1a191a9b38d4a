"""Replay: a video file, an image folder or a single image, played in a loop."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np

from desktop_app.core.image_io import IMAGE_SUFFIXES, ImageLoadError, load_rgb
from desktop_app.core.sources.base import (
    VIDEO_SUFFIXES,
    Frame,
    FrameSourceError,
    Pacer,
    SourceKind,
    SourceLostError,
)

logger = logging.getLogger(__name__)


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
        self._pacer = Pacer(fps)
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
                self._pacer = Pacer(file_fps)
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
