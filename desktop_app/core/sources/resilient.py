"""Resilience: a lost device becomes a status message plus automatic re-open attempts."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from desktop_app.core.sources.base import Frame, FrameSource, FrameSourceError, SourceKind

logger = logging.getLogger(__name__)

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
