"""Webcams and UVC devices (OpenCV), and listing the cameras present."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2

from desktop_app.core.sources.base import Frame, FrameSourceError, SourceKind, SourceLostError

logger = logging.getLogger(__name__)


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
