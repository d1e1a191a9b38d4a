"""Hot folder ingestion: photos dropped by a tethered camera or a phone-sync tool, and
:class:`HotFolderSource`, the frame source that reads them.

:meth:`HotFolderWatcher.poll` reports each new file once, after its size and modification time
have stayed the same for ``settle_s`` seconds (so half-copied files are not read). Files are
never modified or deleted. Which files were already reported is persisted, so a restart does not
report them again; a file replaced by a different one (new size or time) is reported again,
marked ``replaced`` (the earlier photo stays in the store; staff are told).

By default a file counts as done once ``poll`` returned it. With ``auto_acknowledge=False`` it
is only persisted as done when the caller calls :meth:`HotFolderWatcher.acknowledge` (after
``CaptureStore.add`` returned), so a crash in between offers the file again after the restart.
The app's :class:`~HotFolderSource` works that way (a file is
re-imported after a crash, never skipped; the store recognises the same photo and does not keep
it twice).

Entries that are not regular files (symbolic links, named pipes, sockets, devices) are never
read; ``poll`` reports them once, by count (names are not logged: they may name a patient).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from desktop_app.core.image_io import ImageLoadError, decode_rgb
from desktop_app.core.sources.base import (
    Frame,
    FrameSourceError,
    Pacer,
    SourceKind,
    SourceLostError,
)
from desktop_app.core.store import atomic_write_bytes, default_store_root, ensure_private_dir

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 200 * 1024 * 1024
# Files that are still being written by common tools, or are OS clutter.
_IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".download", ".filepart", "~")
_IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", "icon\r"})


@dataclass(frozen=True)
class HotFolderEvent:
    """One new file: either decoded pixels + the original bytes, or an error message."""

    path: Path
    image_rgb: np.ndarray | None = field(default=None, repr=False)  # uint8 [H, W, 3]
    encoded: bytes | None = field(default=None, repr=False)
    error: str | None = None
    #: A file of this name was done before (acknowledged as stored; with ``auto_acknowledge``:
    #: reported) and now has other contents: a newer file replaced it.
    replaced: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.image_rgb is not None

    @property
    def source(self) -> str:
        """The ``CaptureInfo.source`` string for this file."""
        return f"hotfolder:{self.path}"


class HotFolderWatcher:
    """Polls one folder (not recursive). ``poll`` never raises."""

    def __init__(
        self,
        folder: Path,
        settle_s: float = 0.5,
        state_path: Path | None = None,
        max_file_bytes: int = MAX_FILE_BYTES,
        auto_acknowledge: bool = True,
    ) -> None:
        self.folder = Path(folder)
        self.auto_acknowledge = auto_acknowledge
        self.settle_s = float(settle_s)
        self.max_file_bytes = int(max_file_bytes)
        if state_path is None:
            key = hashlib.sha256(str(self.folder.resolve()).encode()).hexdigest()[:16]
            state_path = default_store_root().parent / "hotfolder" / f"seen-{key}.json"
        self.state_path = Path(state_path)
        self._seen: dict[str, tuple[int, int]] = self._load_seen()  # persisted
        self._offered: dict[str, tuple[int, int]] = {}  # returned, not yet acknowledged
        self._pending: dict[str, tuple[int, int, float]] = {}
        self._folder_problem_reported = False
        self._not_regular: set[str] = set()  # names already reported as not regular files
        #: The last "Skipped N files that are not regular files" message ("" if none).
        self.skipped_message = ""
        # poll() runs in the reading thread, acknowledge() where the capture was stored
        self._lock = threading.RLock()

    # ---- persistence -------------------------------------------------------------------------

    def _load_seen(self) -> dict[str, tuple[int, int]]:
        try:
            raw = json.loads(self.state_path.read_text("utf-8"))
            return {str(k): (int(v[0]), int(v[1])) for k, v in raw["seen"].items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            logger.warning(
                "hot folder state %s unreadable (%s); files present now are reported again",
                self.state_path,
                exc,
            )
            return {}

    def _save_seen(self) -> None:
        data = json.dumps(
            {"folder": str(self.folder), "seen": {k: list(v) for k, v in self._seen.items()}}
        ).encode("utf-8")
        try:
            ensure_private_dir(self.state_path.parent)
            atomic_write_bytes(self.state_path, data)
        except OSError as exc:
            logger.error("cannot save hot folder state %s: %s", self.state_path, exc)

    def forget(self, path: Path) -> None:
        """Report this file again at the next poll (e.g. after a failed save)."""
        name = Path(path).name
        with self._lock:
            self._offered.pop(name, None)
            if self._seen.pop(name, None) is not None:
                self._save_seen()

    def acknowledge(self, event: HotFolderEvent) -> None:
        """Persist that this event's file is done (needed only with ``auto_acknowledge=False``).
        Thread-safe: may be called from another thread than :meth:`poll`."""
        with self._lock:
            signature = self._offered.pop(event.path.name, None)
            if signature is not None:
                self._seen[event.path.name] = signature
                self._save_seen()

    # ---- polling -----------------------------------------------------------------------------

    def poll(self) -> list[HotFolderEvent]:
        """New, size-stable files since the last poll, each reported once."""
        try:
            with self._lock:
                return self._poll()
        except Exception as exc:  # the watcher must never take the app down
            logger.exception("hot folder poll failed")
            return [HotFolderEvent(self.folder, error=f"Reading the hot folder failed: {exc}")]

    def _poll(self) -> list[HotFolderEvent]:
        try:
            entries = list(os.scandir(self.folder))
        except OSError as exc:
            if self._folder_problem_reported:
                return []
            self._folder_problem_reported = True
            reason = "does not exist" if isinstance(exc, FileNotFoundError) else exc.strerror
            return [HotFolderEvent(self.folder, error=f"The hot folder {self.folder} {reason}.")]
        self._folder_problem_reported = False
        now = time.monotonic()
        events: list[HotFolderEvent] = []
        present: set[str] = set()
        not_regular: set[str] = set()
        for entry in sorted(entries, key=lambda e: e.name):
            name = entry.name
            if _ignored(name):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                if not stat.S_ISDIR(st.st_mode):  # a link, pipe, socket or device: never read
                    not_regular.add(name)
                continue
            present.add(name)
            signature = (int(st.st_size), int(st.st_mtime_ns))
            if self._seen.get(name) == signature or self._offered.get(name) == signature:
                continue
            pending = self._pending.get(name)
            if pending is None or pending[:2] != signature:
                self._pending[name] = (*signature, now)
                if self.settle_s > 0:
                    continue
            elif now - pending[2] < self.settle_s:
                continue
            event = self._read(Path(entry.path), signature)
            if event is None:  # still changing
                self._pending.pop(name, None)
                continue
            if name in self._seen and event.ok:
                event = dataclasses.replace(event, replaced=True)
            events.append(event)
            if self.auto_acknowledge:
                self._seen[name] = signature
            else:
                self._offered[name] = signature
            self._pending.pop(name, None)
        for gone in set(self._pending) - present:
            del self._pending[gone]
        new_not_regular = not_regular - self._not_regular
        self._not_regular = not_regular
        if new_not_regular:
            self.skipped_message = _skipped_message(len(new_not_regular))
            logger.warning(
                "hot folder: %d new entr%s that %s not a regular file (link, pipe or device) "
                "skipped",
                len(new_not_regular),
                "y" if len(new_not_regular) == 1 else "ies",
                "is" if len(new_not_regular) == 1 else "are",
            )
            events.append(HotFolderEvent(self.folder, error=self.skipped_message))
        if events and self.auto_acknowledge:
            self._save_seen()
        return events

    def _read(self, path: Path, signature: tuple[int, int]) -> HotFolderEvent | None:
        size = signature[0]
        if size == 0:
            return HotFolderEvent(path, error=f"{path.name}: the file is empty (0 bytes)")
        if size > self.max_file_bytes:
            return HotFolderEvent(
                path,
                error=f"{path.name}: {size / 1e6:.0f} MB is too large for a photo (not imported)",
            )
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return HotFolderEvent(path, error=f"{path.name}: cannot be read ({exc.strerror})")
        if len(data) != size:
            return None
        try:
            image = decode_rgb(data, path.name)
        except ImageLoadError as exc:
            return HotFolderEvent(path, error=str(exc))
        return HotFolderEvent(path, image_rgb=image, encoded=data)


def replaced_notice(name: str) -> str:
    """What staff are told when ``name`` in the hot folder was replaced by a newer file."""
    return (
        f"{name} was replaced by a newer file with the same name: the new photo is checked "
        "here; the earlier one is kept in Review."
    )


def _skipped_message(count: int) -> str:
    files = "1 file that is" if count == 1 else f"{count} files that are"
    return (
        f"Skipped {files} not a regular file (a link, pipe or device) in the hot folder: "
        "copy the photo itself into the folder to import it."
    )


def _ignored(name: str) -> bool:
    lower = name.lower()
    return (
        name.startswith(".")
        or lower in _IGNORED_NAMES
        or lower.endswith(_IN_PROGRESS_SUFFIXES)
        or lower.startswith("~$")
    )


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
        self._pacer = Pacer(1.0 / max(0.01, poll_interval_s))
        self._watcher: HotFolderWatcher | None = None
        self._ready: deque[Frame] = deque()
        self._count = 0
        self._resolution: tuple[int, int] | None = None

    @property
    def resolution(self) -> tuple[int, int] | None:
        return self._resolution

    def open(self) -> None:
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
                        notice=replaced_notice(event.path.name) if event.replaced else "",
                        on_stored=functools.partial(watcher.acknowledge, event),
                    )
                )
            elif event.error:
                self.on_problem(event.error)
        return self._ready.popleft() if self._ready else None

    def close(self) -> None:
        self._watcher = None
        self._ready.clear()
