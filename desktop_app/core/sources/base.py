"""Where pictures come from: webcams/UVC devices, video or image-folder replay, a tethered camera's
hot folder, and the built-in demo feed. No Qt here.

Every source follows :class:`FrameSource`: ``open()``, then ``read()`` repeatedly from one thread
(it paces itself like a camera: it blocks until the next frame is due), then ``close()``. Failures
are :class:`FrameSourceError` with a message written for the person at the camera.
:class:`ResilientSource` wraps any source and turns a lost device into a status message plus
automatic re-open attempts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import cv2
import numpy as np

from desktop_app.core.image_io import ColourOrder as ColourOrder  # re-exported by sources

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
    #: For a capture: something staff must be told with it (a hot-folder file that replaced an
    #: earlier one of the same name), "" if nothing.
    notice: str = ""
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
class ReportsProblems(Protocol):
    """A source that reports files it could not read while it goes on (the hot folder): whoever
    runs it sets ``on_problem`` to show the plain-words message."""

    on_problem: Callable[[str], None]


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


class Pacer:
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
