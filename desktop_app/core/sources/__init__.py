"""Where pictures come from: webcams/UVC devices, video or image-folder replay, a tethered camera's
hot folder, and the built-in demo feed. No Qt here.

Public names are re-exported here (``from desktop_app.core.sources import FrameSource``); the
modules are :mod:`~.base` (:class:`Frame`, the :class:`FrameSource` protocol, errors),
:mod:`~.camera`, :mod:`~.replay`, :mod:`~.hotfolder` (the folder watcher and its source),
:mod:`~.demo`, :mod:`~.resilient` (re-open after a lost device) and :mod:`~.spec` (choosing a
source, naming it in a record).
"""

from desktop_app.core.sources.base import (
    COMMON_RESOLUTIONS,
    VIDEO_SUFFIXES,
    ColourOrder,
    Frame,
    FrameSource,
    FrameSourceError,
    ReportsProblems,
    SourceKind,
    SourceLostError,
)
from desktop_app.core.sources.camera import CameraInfo, OpenCVCamera, list_cameras
from desktop_app.core.sources.demo import DEFAULT_DEMO_SCHEDULE, DemoMoment, DemoSource
from desktop_app.core.sources.hotfolder import (
    MAX_FILE_BYTES,
    HotFolderEvent,
    HotFolderSource,
    HotFolderWatcher,
)
from desktop_app.core.sources.replay import ReplaySource
from desktop_app.core.sources.resilient import ResilientSource, StatusCallback
from desktop_app.core.sources.spec import source_from_spec, source_label

__all__ = [
    "COMMON_RESOLUTIONS",
    "DEFAULT_DEMO_SCHEDULE",
    "MAX_FILE_BYTES",
    "VIDEO_SUFFIXES",
    "CameraInfo",
    "ColourOrder",
    "DemoMoment",
    "DemoSource",
    "Frame",
    "FrameSource",
    "FrameSourceError",
    "HotFolderEvent",
    "HotFolderSource",
    "HotFolderWatcher",
    "OpenCVCamera",
    "ReplaySource",
    "ReportsProblems",
    "ResilientSource",
    "SourceKind",
    "SourceLostError",
    "StatusCallback",
    "list_cameras",
    "source_from_spec",
    "source_label",
]
