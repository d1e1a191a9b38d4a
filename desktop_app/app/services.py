"""What the windows need besides widgets, built once at start-up (no Qt here).

Problems are messages, never exceptions: a window shows them and the live view still works.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

from desktop_app.core.inference import resolve_model_path as resolve_core_model_path
from desktop_app.core.instance_lock import AnotherInstanceError, acquire_data_home_lock
from desktop_app.core.settings import AppSettings, load_settings
from desktop_app.core.sources import (
    DemoSource,
    FrameSource,
    FrameSourceError,
    list_cameras,
    source_from_spec,
)
from desktop_app.core.store import CaptureStore, StorageError, default_store_root
from desktop_app.core.submission import SubmissionQueue, make_target

logger = logging.getLogger(__name__)


@dataclass
class AppServices:
    """What a window needs besides widgets; problems are messages, never exceptions."""

    settings: AppSettings
    store: CaptureStore | None
    queue: SubmissionQueue | None
    model_path: Path | None
    source: FrameSource
    store_error: str = ""
    queue_error: str = ""
    source_note: str = ""
    notes: list[str] = field(default_factory=list)

    def replace_queue(self, settings: AppSettings) -> SubmissionQueue | None:
        """A new submission queue for ``settings.submission`` (None, and ``queue_error`` set,
        when the target is not usable); nothing is replaced without a store."""
        if self.store is None:
            return self.queue
        try:
            queue: SubmissionQueue | None = SubmissionQueue(
                self.store, make_target(settings.submission)
            )
            self.queue_error = ""
        except ValueError as exc:
            queue = None
            self.queue_error = str(exc)
        self.queue = queue
        return queue


def resolve_model_path(explicit: Path | None, settings: AppSettings) -> Path | None:
    """``--model`` first, then the model chosen in Settings, then the bundled default
    (``core.inference.resolve_model_path``, the one rule)."""
    return resolve_core_model_path(explicit, settings.model_path)


def choose_source(spec: str | None, settings: AppSettings) -> tuple[FrameSource, str]:
    """(source, note): ``--source``, else Settings' camera, else the first camera, else demo."""
    names = {c.index: c.name for c in list_cameras()} if sys.platform.startswith("linux") else {}
    chosen = spec or settings.camera
    if chosen:
        try:
            return source_from_spec(chosen, settings.resolution, names), ""
        except FrameSourceError as exc:
            return DemoSource(), f"{exc} Showing the demo feed instead."
    cameras = list_cameras(probe=1)
    if cameras:
        first = cameras[0]
        return source_from_spec(
            str(first.index), settings.resolution, {first.index: first.name}
        ), ""
    return DemoSource(), "No camera found: showing the built-in demo feed."


def lock_data_home(root: Path | None = None) -> str:
    """Take the data-home lock for the life of the process: "" when held, else why not (another
    copy of the app uses the same data home)."""
    try:
        acquire_data_home_lock(root or default_store_root())
    except AnotherInstanceError as exc:
        return str(exc)
    return ""


def build_services(
    kiosk: bool,
    model: Path | None,
    source_spec: str | None,
    settings: AppSettings | None = None,
    store_root: Path | None = None,
) -> AppServices:
    """Settings, store (behind the data-home lock), queue, source and model path."""
    settings = settings or load_settings()
    store: CaptureStore | None = None
    store_error = ""
    root = store_root or default_store_root()
    try:
        acquire_data_home_lock(root)  # held for the life of the process
        store = CaptureStore(root)
    except AnotherInstanceError as exc:
        store_error = str(exc)
        logger.error("data home in use: %s", exc)
    except StorageError as exc:
        store_error = str(exc)
        logger.error("capture store unavailable: %s", exc)
    queue: SubmissionQueue | None = None
    queue_error = ""
    if store is not None:
        try:
            queue = SubmissionQueue(store, make_target(settings.submission))
            queue.release_stale_claims()  # this process alone holds the data home
        except ValueError as exc:
            queue_error = str(exc)
        except StorageError as exc:
            queue_error = str(exc)
    source, note = choose_source(source_spec, settings)
    return AppServices(
        settings=settings,
        store=store,
        queue=queue,
        model_path=resolve_model_path(model, settings),
        source=source,
        store_error=store_error,
        queue_error=queue_error,
        source_note=note,
    )
