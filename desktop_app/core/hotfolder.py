"""Hot folder ingestion: photos dropped by a tethered camera or a phone-sync tool.

:meth:`HotFolderWatcher.poll` reports each new file once, after its size and modification time
have stayed the same for ``settle_s`` seconds (so half-copied files are not read). Files are
never modified or deleted. Which files were already reported is persisted, so a restart does not
report them again; a file replaced by a different one (new size or time) is reported again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from desktop_app.core.image_io import ImageLoadError, decode_rgb
from desktop_app.core.storage import atomic_write_bytes, default_store_root, ensure_private_dir

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
    ) -> None:
        self.folder = Path(folder)
        self.settle_s = float(settle_s)
        self.max_file_bytes = int(max_file_bytes)
        if state_path is None:
            key = hashlib.sha256(str(self.folder.resolve()).encode()).hexdigest()[:16]
            state_path = default_store_root().parent / "hotfolder" / f"seen-{key}.json"
        self.state_path = Path(state_path)
        self._seen: dict[str, tuple[int, int]] = self._load_seen()
        self._pending: dict[str, tuple[int, int, float]] = {}
        self._folder_problem_reported = False

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
        if self._seen.pop(Path(path).name, None) is not None:
            self._save_seen()

    # ---- polling -----------------------------------------------------------------------------

    def poll(self) -> list[HotFolderEvent]:
        """New, size-stable files since the last poll, each reported once."""
        try:
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
        for entry in sorted(entries, key=lambda e: e.name):
            name = entry.name
            if _ignored(name):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            present.add(name)
            signature = (int(st.st_size), int(st.st_mtime_ns))
            if self._seen.get(name) == signature:
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
            events.append(event)
            self._seen[name] = signature
            self._pending.pop(name, None)
        for gone in set(self._pending) - present:
            del self._pending[gone]
        if events:
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


def _ignored(name: str) -> bool:
    lower = name.lower()
    return (
        name.startswith(".")
        or lower in _IGNORED_NAMES
        or lower.endswith(_IN_PROGRESS_SUFFIXES)
        or lower.startswith("~$")
    )
